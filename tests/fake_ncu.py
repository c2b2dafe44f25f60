#!/usr/bin/env python3
"""A stand-in for Nsight Compute's `ncu`, for CPU tests of tuner.profile's plumbing.

Profiling (`--export BASE ... python -m kernelevolve.tuner.profile.target REQ REPLY`): runs the real target
process in the Triton interpreter (so the request, the evaluator's `profile` op and the reply
file are the real ones), writes a placeholder BASE.ncu-rep and a log. `--import`: prints the
fixture CSV named by $FAKE_NCU_CSV. `--version`: a version line. No counter here is measured.
"""
import os
import subprocess
import sys

args = sys.argv[1:]
if "--version" in args:
    print("NVIDIA (R) Nsight Compute Command Line Profiler\nVersion 2025.3.1.0 (fake, tests/fake_ncu.py)")
    sys.exit(0)
if "--import" in args:
    with open(os.environ["FAKE_NCU_CSV"], encoding="utf-8") as fh:
        sys.stdout.write(fh.read())
    sys.exit(0)
base, log = args[args.index("--export") + 1], args[args.index("--log-file") + 1]
if os.environ.get("FAKE_NCU_FAIL"):  # ncu refusing before the target runs (e.g. no counter access)
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(os.environ["FAKE_NCU_FAIL"] + "\n")
    sys.exit(1)
program = args[args.index("kernelevolve.tuner.profile.target") - 2:]  # python -m kernelevolve.tuner.profile.target REQ REPLY
env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
code = subprocess.run(program, env=env).returncode
with open(log, "w", encoding="utf-8") as fh:
    fh.write(f"==PROF== Connected to process (fake)\n==PROF== target exited {code}\n")
with open(base + ".ncu-rep", "wb") as fh:
    fh.write(b"placeholder: not a report")
sys.exit(code)
