"""A candidate-evaluation process, owned by one Ray trial actor, replaced when a candidate breaks it.

Why a separate process: a candidate may hang the GPU (an endless loop), crash the process (a
segfault) or leave its CUDA context unusable (an illegal memory access). Ray Tune has no per-trial
time limit and a dead actor loses the record. Here a candidate that overruns its timeout is
SIGKILLed and recorded as `timeout`; a dead process is recorded as `runtime_error` with its exit
signal and last stderr lines; either way the next candidate gets a fresh process. The process is
kept between candidates otherwise, so torch's import and the CUDA context are paid once per worker.

Protocol: length-prefixed pickles over the child's stdin/stdout. The child moves its own stdout to
stderr first, so kernels that print cannot corrupt the channel.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time

_HEADER = struct.Struct("<Q")


def send(fh, obj) -> None:
    data = pickle.dumps(obj)
    fh.write(_HEADER.pack(len(data)) + data)
    fh.flush()


def recv(fh):
    head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("worker channel closed")
    (n,) = _HEADER.unpack(head)
    data = fh.read(n)
    if len(data) < n:
        raise EOFError("worker channel closed mid-message")
    return pickle.loads(data)


def make_request(op: str, kernel_ref: str, problem: dict, hardware: str, bench: dict, **fields) -> dict:
    """The one shape of a request to an evaluation process (tuner.measure.evaluate reads it):
    `evaluate` (fields: config, seed; compiled when a compile request came first), `compile`
    (config), `retime` (configs, rounds). The sweep's trials, its end-of-study re-timing and
    `kernelevolve reproduce` all build theirs here."""
    return {"op": op, "kernel_ref": kernel_ref, "problem": dict(problem), "hardware": hardware,
            "bench": dict(bench), **fields}


class CandidateWorker:
    """Runs requests in a child `python -m kernelevolve.tuner.measure.evaluate`, with a timeout per request."""

    def __init__(self, env: dict | None = None, cwd: str | None = None, startup_timeout_s: float = 300):
        self.env = dict(os.environ, **(env or {}))
        self.startup_timeout_s = startup_timeout_s
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.stderr_path = ""
        self.starts = 0

    def _start(self) -> None:
        fd, self.stderr_path = tempfile.mkstemp(prefix="kernelevolve-worker-", suffix=".log")
        self._stderr = os.fdopen(fd, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kernelevolve.tuner.measure.evaluate"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, env=self.env, cwd=self.cwd,
            start_new_session=True)  # its own process group: a kill takes its children too
        self.starts += 1
        # The child says "ready" once torch, Triton and the device are up; that start-up is not
        # part of any candidate's timeout.
        ready, _, _ = select.select([self.proc.stdout], [], [], self.startup_timeout_s)
        hello = recv(self.proc.stdout) if ready else None
        if not (isinstance(hello, dict) and hello.get("ready")):
            self.kill()
            raise EOFError(f"worker did not start within {self.startup_timeout_s:g} s")

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-lines:]).strip()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.proc = None

    def request(self, payload: dict, timeout_s: float) -> dict:
        """Send one request; return the child's reply or a failure record of our own."""
        t0 = time.monotonic()
        try:
            if not self.alive():
                self._start()
            send(self.proc.stdin, payload)
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
            if not ready:
                self.kill()
                return {"status": "timeout",
                        "error": f"no result within the {timeout_s:g} s per-candidate timeout; "
                                 "the worker process was killed and replaced",
                        "wall_s": time.monotonic() - t0}
            reply = recv(self.proc.stdout)
        except (EOFError, BrokenPipeError, OSError) as exc:
            code = self.proc.wait() if self.proc else None
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            tail = self.stderr_tail()
            self.proc = None
            return {"status": "runtime_error", "worker_died": True,
                    "error": f"worker process died ({how}; {type(exc).__name__}: {exc}). Last stderr:\n{tail}",
                    "wall_s": time.monotonic() - t0}
        if reply.pop("worker_unusable", False):
            # e.g. an illegal memory access: this CUDA context must not run another candidate.
            self.kill()
            reply["worker_replaced"] = True
        return reply

    def close(self) -> None:
        if self.alive():
            try:
                send(self.proc.stdin, {"op": "exit"})
                self.proc.wait(timeout=10)
            except Exception:
                self.kill()
        self.proc = None
