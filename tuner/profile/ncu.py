"""Running Nsight Compute (`ncu`) on candidates, in a process of their own, after their timing.

Two steps, each a subprocess:
  1. `ncu --profile-from-start off --target-processes all --nvtx --metrics ... --export REPORT python -m
     tuner.profile.target REQUESTS REPLIES`: the target verifies each candidate, then launches it
     between cudaProfilerStart/Stop (tuner.profile.launches), so only the candidates' kernels are
     profiled, never a reference, a verification or the torch peer.
  2. `ncu --import REPORT --page raw --csv`: the counters as CSV (tuner.profile.parse).
The report (REPORT.ncu-rep) is kept: it opens in the Nsight Compute GUI.

Several candidates (a study's finalists) go to one ncu run: ncu, Python, torch, Triton and the
CUDA context start once, and the import runs once. Each request names its NVTX range
(tuner.profile.batch), which `--nvtx` has ncu record with every launch, so the raw page says
which launch is whose.

ncu options, and why: `--clock-control none` leaves the GPU's clocks as the timing saw them (ncu
otherwise locks them to base clocks; the device notes ask for none); `--cache-control all` flushes
caches between replay passes, as the timing's L2 flush does; `--replay-mode kernel` replays each
kernel for the passes its metrics need (memory saved and restored: the output stays correct);
`--nvtx` records the NVTX ranges (no filter: the profiled ranges are what cudaProfilerStart/Stop
delimit). Where ncu is: $KERNELEVOLVE_NCU, else `ncu` on the PATH, else the CUDA toolkit's and
Nsight Compute's install folders.
"""
from __future__ import annotations

import functools
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from kernelevolve.tuner.profile.metrics import base_name, ncu_metrics

NCU_ENV = "KERNELEVOLVE_NCU"
_INSTALLS = ("/usr/local/cuda/bin/ncu", "/opt/nvidia/nsight-compute/*/ncu", "/usr/local/cuda-*/bin/ncu")
PROFILE_OPTIONS = ("--target-processes", "all", "--profile-from-start", "off", "--clock-control", "none",
                   "--cache-control", "all", "--replay-mode", "kernel", "--nvtx", "--force-overwrite")
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
    csv: str  # the raw page ("" where no candidate reached its profiled launches: no report)
    replies: list[dict]  # the target's reply per request, in order (tuner.profile.launches)
    report: str | None  # path of the .ncu-rep
    log: str  # ncu's own messages
    command: list[str]
    dropped: list[str]  # metrics this ncu does not know, left out after a first refusal
    wall_s: float = 0.0  # the profiling step, start to report

    @property
    def reply(self) -> dict:
        """The reply of a run of one request."""
        return self.replies[0] if self.replies else {}

    @property
    def passes(self) -> int | None:
        """The most replay passes ncu made of one kernel (its log: `... 100% - 21 passes`): what
        the metric list costs per profiled launch."""
        found = [int(n) for n in re.findall(r"-\s*(\d+)\s+pass(?:es)?\b", self.log)]
        return max(found) if found else None


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


def _replies(path: str, requests: list[dict], why: str) -> list[dict]:
    """The target's replies, one per request; a request it did not answer (the process ended
    first) gets a reply saying so."""
    try:
        got = json.loads(_read(path) or "[]")
    except json.JSONDecodeError:
        got = []
    got = got if isinstance(got, list) else [got]
    return got + [{"status": "no_reply", "error": f"the target ended before this request: {why}"}
                  for _ in requests[len(got):]]


def run(requests: list[dict] | dict, workdir: str, timeout_s: float = 900, env: dict | None = None,
        metrics: list[str] | None = None) -> NcuRun:
    """Profile candidate requests (tuner.execution.worker.make_request("profile", ...), each with
    its NVTX range: tuner.profile.batch.tagged) in one ncu run into `workdir`: profile.ncu-rep,
    profile.csv, ncu.log, requests.json, replies.json. A run where no candidate reached its
    profiled launches has no report (csv ""): each reply says why. NcuFailed where ncu itself
    failed (counters restricted, killed at `timeout_s`, no report although a candidate ran)."""
    ncu = find_ncu()
    requests = requests if isinstance(requests, list) else [requests]
    os.makedirs(workdir, exist_ok=True)
    paths = {k: os.path.join(workdir, f) for k, f in (("request", "requests.json"), ("reply", "replies.json"),
                                                      ("log", "ncu.log"), ("base", "profile"))}
    with open(paths["request"], "w", encoding="utf-8") as fh:
        json.dump(requests, fh)
    # as tuner.execution.sweep sets them for every candidate; the repository importable from any cwd
    run_env = dict(os.environ, TRITON_DEFAULT_FP_FUSION="1", TRITON_INTERPRET="0", **(env or {}))
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, run_env.get("PYTHONPATH", "")) if p)
    wanted, dropped = list(metrics or ncu_metrics()), []
    report = paths["base"] + ".ncu-rep"
    t0 = time.monotonic()
    for attempt in range(2):
        for stale in (report, paths["reply"]):  # a refused first attempt's files say nothing
            if os.path.exists(stale):
                os.remove(stale)
        cmd = profile_command(ncu, paths["base"], paths["log"], paths["request"], paths["reply"], wanted)
        code, out = _run(cmd, timeout_s, run_env, workdir)
        log = _read(paths["log"]) + out
        if os.path.exists(report):
            break
        refused = refused_metrics(log, wanted) if attempt == 0 else []
        if not refused:
            answered = os.path.exists(paths["reply"])  # else ncu failed before the target ran
            replies = _replies(paths["reply"], requests, why_failed(log))
            if answered and not any(r.get("status") == "ok" for r in replies):  # none ran: each says why
                return NcuRun("", replies, None, log, cmd, dropped, time.monotonic() - t0)
            raise NcuFailed(f"ncu wrote no report (exit code {code}): {why_failed(log)}")
        dropped += refused
        wanted = [m for m in wanted if m not in refused]
    wall_s = time.monotonic() - t0
    replies = _replies(paths["reply"], requests, why_failed(log))
    code, csv_text = _run(import_command(ncu, report), 300, run_env, workdir)
    if code != 0:  # an ncu without --print-units: its auto-scaled units parse too
        code, csv_text = _run(import_command(ncu, report, base_units=False), 300, run_env, workdir)
    if code != 0:
        raise NcuFailed(f"ncu could not export {report} as CSV: {why_failed(csv_text)}")
    with open(os.path.join(workdir, "profile.csv"), "w", encoding="utf-8") as fh:
        fh.write(csv_text)
    return NcuRun(csv_text, replies, report, log, cmd, dropped, wall_s)


def version(ncu: str | None = None) -> str:
    try:
        return _version(ncu or find_ncu())
    except NcuUnavailable:
        return "unknown"


@functools.lru_cache(maxsize=8)  # asked once per profiled study: one `ncu --version` per process
def _version(ncu: str) -> str:
    try:
        out = subprocess.run([ncu, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    found = re.search(r"Version\s+(\S+)", out)
    return found.group(1) if found else (out.strip().splitlines() or ["unknown"])[-1][:100]
