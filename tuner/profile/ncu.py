"""Running Nsight Compute (`ncu`) on one candidate, in its own process, after its timing.

Two steps, each a subprocess:
  1. `ncu --profile-from-start off --target-processes all --metrics ... --export REPORT python -m
     tuner.profile.target REQUEST REPLY`: the target verifies the candidate, then launches it
     between cudaProfilerStart/Stop (tuner.measure.evaluate: `profile`), so only the candidate's
     kernels are profiled, never the reference, the verification or the torch peer.
  2. `ncu --import REPORT --page raw --csv`: the counters as CSV (tuner.profile.parse).
The report (REPORT.ncu-rep) is kept: it opens in the Nsight Compute GUI.

ncu options, and why: `--clock-control none` leaves the GPU's clocks as the timing saw them (ncu
otherwise locks them to base clocks; the device notes ask for none); `--cache-control all` flushes
caches between replay passes, as the timing's L2 flush does; `--replay-mode kernel` replays each
kernel for the passes its metrics need (memory saved and restored: the output stays correct).
Where ncu is: $KERNELEVOLVE_NCU, else `ncu` on the PATH, else the CUDA toolkit's and Nsight
Compute's install folders.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

from kernelevolve.tuner.profile.metrics import base_name, ncu_metrics

NCU_ENV = "KERNELEVOLVE_NCU"
_INSTALLS = ("/usr/local/cuda/bin/ncu", "/opt/nvidia/nsight-compute/*/ncu", "/usr/local/cuda-*/bin/ncu")
PROFILE_OPTIONS = ("--target-processes", "all", "--profile-from-start", "off", "--clock-control", "none",
                   "--cache-control", "all", "--replay-mode", "kernel", "--force-overwrite")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class NcuUnavailable(Exception):
    """No ncu on this machine: a user error (exit 2), said in one line."""


class NcuFailed(Exception):
    """ncu ran and produced no usable report (counters restricted, a timeout, a crashed target)."""


def find_ncu() -> str:
    given = os.environ.get(NCU_ENV)
    if given:
        if os.access(given, os.X_OK):
            return given
        raise NcuUnavailable(f"${NCU_ENV} is {given}, which is not an executable file")
    found = shutil.which("ncu")
    for pattern in _INSTALLS:
        found = found or next(iter(sorted(glob.glob(pattern), reverse=True)), None)
    if not found:
        raise NcuUnavailable("Nsight Compute (ncu) is not installed on this machine (not on the PATH, "
                             f"not in /usr/local/cuda/bin or /opt/nvidia/nsight-compute; set ${NCU_ENV} "
                             "to its path): profile on a GPU machine that has it")
    return found


def profile_command(ncu: str, report_base: str, log_path: str, request_path: str, reply_path: str,
                    metrics: list[str]) -> list[str]:
    return [ncu, *PROFILE_OPTIONS, "--metrics", ",".join(metrics), "--export", report_base,
            "--log-file", log_path, sys.executable, "-m", "kernelevolve.tuner.profile.target", request_path, reply_path]


def import_command(ncu: str, report: str, base_units: bool = True) -> list[str]:
    return [ncu, "--import", report, "--page", "raw", "--csv"] + (["--print-units", "base"] if base_units else [])


@dataclass
class NcuRun:
    csv: str  # the raw page
    reply: dict  # the target's reply (tuner.measure.evaluate `profile`)
    report: str  # path of the .ncu-rep
    log: str  # ncu's own messages
    command: list[str]
    dropped: list[str]  # metrics this ncu does not know, left out after a first refusal


def _run(cmd: list[str], timeout_s: float, env: dict, cwd: str) -> tuple[int, str]:
    """(exit code, stdout + stderr) of a command in its own process group, killed whole on timeout."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=cwd, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise NcuFailed(f"ncu did not finish within {timeout_s:g} s (killed)") from None
    return proc.returncode, out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def refused_metrics(log: str, metrics: list[str]) -> list[str]:
    """The metrics ncu's error lines name (a metric this ncu or chip does not have)."""
    errors = [line for line in log.splitlines() if "==ERROR==" in line and "metric" in line.lower()]
    return [m for m in metrics if any(base_name(m) in line for line in errors)]


def why_failed(log: str) -> str:
    if "ERR_NVGPUCTRPERM" in log:
        return ("the GPU's performance counters are restricted to administrators (ERR_NVGPUCTRPERM): "
                "profile as root, or load the driver with NVreg_RestrictProfilingToAdminUsers=0")
    errors = [line.strip() for line in log.splitlines() if "==ERROR==" in line]
    tail = errors[-3:] or [line.strip() for line in log.strip().splitlines()[-3:]]
    return " | ".join(tail)[:600] or "no message"


def run(request: dict, workdir: str, timeout_s: float = 900, env: dict | None = None,
        metrics: list[str] | None = None) -> NcuRun:
    """Profile one candidate request (tuner.execution.worker.make_request("profile", ...)) into
    `workdir`: profile.ncu-rep, profile.csv, ncu.log, request.json, reply.json."""
    ncu = find_ncu()
    os.makedirs(workdir, exist_ok=True)
    paths = {k: os.path.join(workdir, f) for k, f in (("request", "request.json"), ("reply", "reply.json"),
                                                      ("log", "ncu.log"), ("base", "profile"))}
    with open(paths["request"], "w", encoding="utf-8") as fh:
        json.dump(request, fh)
    # as tuner.execution.sweep sets them for every candidate; the repository importable from any cwd
    run_env = dict(os.environ, TRITON_DEFAULT_FP_FUSION="1", TRITON_INTERPRET="0", **(env or {}))
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, run_env.get("PYTHONPATH", "")) if p)
    wanted, dropped = list(metrics or ncu_metrics()), []
    for attempt in range(2):
        cmd = profile_command(ncu, paths["base"], paths["log"], paths["request"], paths["reply"], wanted)
        code, out = _run(cmd, timeout_s, run_env, workdir)
        log = _read(paths["log"]) + out
        report = paths["base"] + ".ncu-rep"
        if os.path.exists(report):
            break
        refused = refused_metrics(log, wanted) if attempt == 0 else []
        if not refused:
            reply = json.loads(_read(paths["reply"]) or "{}")
            if reply.get("status") not in (None, "ok"):  # the candidate itself failed: say why
                raise NcuFailed(f"the candidate did not run under ncu: {reply.get('status')}: "
                                f"{str(reply.get('error'))[:400]}")
            raise NcuFailed(f"ncu wrote no report (exit code {code}): {why_failed(log)}")
        dropped += refused
        wanted = [m for m in wanted if m not in refused]
    reply = json.loads(_read(paths["reply"]) or "{}")
    if reply.get("status") != "ok":  # a report of a candidate that failed to verify counts nothing
        raise NcuFailed(f"the candidate did not run under ncu: {reply.get('status', 'no reply')}: "
                        f"{str(reply.get('error') or why_failed(log))[:400]}")
    code, csv_text = _run(import_command(ncu, report), 300, run_env, workdir)
    if code != 0:  # an ncu without --print-units: its auto-scaled units parse too
        code, csv_text = _run(import_command(ncu, report, base_units=False), 300, run_env, workdir)
    if code != 0:
        raise NcuFailed(f"ncu could not export {report} as CSV: {why_failed(csv_text)}")
    with open(os.path.join(workdir, "profile.csv"), "w", encoding="utf-8") as fh:
        fh.write(csv_text)
    return NcuRun(csv_text, reply, report, log, cmd, dropped)


def version(ncu: str | None = None) -> str:
    try:
        out = subprocess.run([ncu or find_ncu(), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError, NcuUnavailable):
        return "unknown"
    found = re.search(r"Version\s+(\S+)", out)
    return found.group(1) if found else (out.strip().splitlines() or ["unknown"])[-1][:100]
