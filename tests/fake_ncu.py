#!/usr/bin/env python3
"""A stand-in for Nsight Compute's `ncu`, for CPU tests of tuner.profile's plumbing.

Profiling (`--export BASE ... python -m kernelevolve.tuner.profile.target REQUESTS REPLIES`): runs the
real target process in the Triton interpreter (so the requests, the evaluator's `profile` op and
the replies file are the real ones), then writes, as BASE.ncu-rep, the raw page a real ncu would
export: for each request that reached its profiled launches (its reply `ok`), in order, the rows
of a recorded H100 page (the files of $FAKE_NCU_CSV, separated by os.pathsep, one per request in
turn), renumbered, with the NVTX column `--nvtx` adds naming the request's range (left out with
$FAKE_NCU_NO_NVTX: an ncu that records none). No request ran: no report, as ncu writes none
without a profiled kernel. The log has a `==PROF== Profiling ... - N passes` line per launch.
`--import REPORT`: prints that page. `--version`: a version line. No counter here is measured.
$FAKE_NCU_CALLS: a file that gets one line per profiling run (how many ncu runs a test caused).
"""
import csv
import io
import json
import os
import subprocess
import sys

NVTX = "thread Domain:Push/Pop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg"
PASSES = 9

args = sys.argv[1:]
if "--version" in args:
    print("NVIDIA (R) Nsight Compute Command Line Profiler\nVersion 2025.3.1.0 (fake, tests/fake_ncu.py)")
    sys.exit(0)
if "--import" in args:
    with open(args[args.index("--import") + 1], encoding="utf-8") as fh:
        sys.stdout.write(fh.read())
    sys.exit(0)
base, log = args[args.index("--export") + 1], args[args.index("--log-file") + 1]
if os.environ.get("FAKE_NCU_CALLS"):
    with open(os.environ["FAKE_NCU_CALLS"], "a", encoding="utf-8") as fh:
        fh.write(" ".join(args) + "\n")
if os.environ.get("FAKE_NCU_FAIL"):  # ncu refusing before the target runs (e.g. no counter access)
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(os.environ["FAKE_NCU_FAIL"] + "\n")
    sys.exit(1)
at = args.index("kernelevolve.tuner.profile.target")
program = args[at - 2:]  # python -m kernelevolve.tuner.profile.target REQUESTS REPLIES
env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
code = subprocess.run(program, env=env).returncode


def _load(path):
    with open(path, encoding="utf-8") as fh:
        got = json.load(fh)
    return got if isinstance(got, list) else [got]


requests = _load(args[at + 1])
replies = _load(args[at + 2]) if os.path.exists(args[at + 2]) else []
fixtures = os.environ["FAKE_NCU_CSV"].split(os.pathsep)
nvtx = "--nvtx" in args and not os.environ.get("FAKE_NCU_NO_NVTX")
header, units, rows, lines = None, None, [], ["==PROF== Connected to process (fake)"]
for k, (request, reply) in enumerate(zip(requests, replies)):
    if reply.get("status") != "ok":
        continue
    with open(fixtures[k % len(fixtures)], encoding="utf-8") as fh:
        head, unit_row, *body = list(csv.reader(fh))
    at_name = head.index("Kernel Name")  # ncu puts its NVTX columns before the kernel's name
    if nvtx:
        head, unit_row = head[:at_name] + [NVTX] + head[at_name:], unit_row[:at_name] + [""] + unit_row[at_name:]
        rng = f'1  "<default domain>:{request.get("nvtx", "")}:none:none:none:none:none:none"'
        body = [row[:at_name] + [rng] + row[at_name:] for row in body]
    header, units = head, unit_row
    for row in body:
        row[0] = str(len(rows))
        rows.append(row)
        lines.append(f'==PROF== Profiling "{row[head.index("Kernel Name")]}" - {row[0]}: 0%....50%....100% - '
                     f"{PASSES} passes")
lines.append(f"==PROF== target exited {code}")
with open(log, "w", encoding="utf-8") as fh:
    fh.write("\n".join(lines) + "\n")
if rows:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([header, units, *rows])
    with open(base + ".ncu-rep", "w", encoding="utf-8") as fh:
        fh.write(out.getvalue())
else:
    print("==WARNING== No kernels were profiled.")
sys.exit(code)
