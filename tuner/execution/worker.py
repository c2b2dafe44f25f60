"""A candidate-evaluation process, owned by one Ray trial actor, replaced when a candidate breaks it.

Why a separate process: a candidate may hang the GPU (an endless loop), crash the process (a
segfault) or leave its CUDA context unusable (an illegal memory access). Ray Tune has no per-trial
time limit and a dead actor loses the record. Here a candidate that overruns its timeout is
SIGKILLed and recorded as `timeout`; a dead process is recorded as `runtime_error` with its exit
signal and last stderr lines; either way the next candidate gets a fresh process. The process is
kept between candidates otherwise, so torch's import and the CUDA context are paid once per worker.

Verdicts are not the evaluation process's to give: beside it runs a judge (tuner/measure/judge.py),
a process in which no candidate code ever runs. The evaluator hands the judge its evidence over a
pipe pair made here; the judge's verdict comes back here over a channel of its own, and this parent
records it (`_judged`): an evaluator's `ok` stands only if the judge agrees. A judge that saw its
evidence tampered with (a harness bypassed or patched, a cached reference overwritten) has both
processes replaced, so nothing a candidate left behind judges the candidates after it. The judge
starts with the first request that needs it (a compile-only process never starts one).

The one exemption from a check is decided here too: the judge fails a candidate that launched no
Triton kernel, except the declared vendor config of a built-in kernel (torch.mm / torch.addmm for
the GEMM family, timed beside the Triton candidates). This parent decides that from its own
request (tuner/measure/vendor.py), tells the judge in the `begin` message, and tags the reply's
`impl` (triton or vendor); neither the evaluator nor the candidate's code has a say.

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


def recv_bytes(fh) -> bytes:
    """One length-prefixed message's bytes, undecoded (the judge decodes them as plain data only)."""
    head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("channel closed")
    (n,) = _HEADER.unpack(head)
    data = fh.read(n)
    if len(data) < n:
        raise EOFError("channel closed mid-message")
    return data


def recv(fh):
    return pickle.loads(recv_bytes(fh))


# The longest a candidate waits for a busy device before it is ended as a timeout (every holder
# has its own timeout: a hung one is killed well before this).
DEVICE_WAIT_S = 3600.0
# a forked process's start (worker_child_start_s), in its parts: fork to set up (descriptors,
# environment, threads), set up to serving (its module run), serving to ready (the evaluator's start)
CHILD_START_PARTS = ("worker_child_setup_s", "worker_child_module_s", "worker_child_evaluator_s")


def make_request(op: str, kernel_ref: str, problem: dict, hardware: str, bench: dict, **fields) -> dict:
    """The one shape of a request to an evaluation process (tuner.measure.evaluate reads it):
    `evaluate` (fields: config, seed; compiled when a compile request came first), `compile`
    (config), `retime` (configs, rounds), `profile` (config, calls: the launches a profiler
    reads, tuner.profile), `prepare` (a study's input sets and references made ahead of its
    candidates, tuner.measure.prepare). The sweep's trials and lanes, its end-of-study re-timing,
    `kernelevolve reproduce` and `kernelevolve profile` all build theirs here."""
    return {"op": op, "kernel_ref": kernel_ref, "problem": dict(problem), "hardware": hardware,
            "bench": dict(bench), **fields}


class JudgeFailed(EOFError):
    """The judge died or did not answer: no verdict, so the candidate's result is a runtime_error."""


class CandidateWorker:
    """Runs requests in a child `python -m kernelevolve.tuner.measure.evaluate_process`, with a timeout per request."""

    def __init__(self, env: dict | None = None, cwd: str | None = None, startup_timeout_s: float = 300):
        self.env = dict(os.environ, **(env or {}))
        self.startup_timeout_s = startup_timeout_s
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.stderr_path = ""
        self.starts = 0
        self.judge: subprocess.Popen | None = None
        self._judge_fds: tuple = ()  # the judge's ends of the evidence pipes, until it starts
        self.start_split: dict = {}  # the last start's parts (_start), reported with worker_start_s

    def _launch(self, module: str, pass_fds: tuple, fd_env: dict):
        """`python -m module` in its own session: forked by the node's spawner
        (tuner.execution.spawner: torch and Triton already imported) where there is one, else
        started afresh. `fd_env`: env var -> indices into pass_fds, their numbers in the child."""
        from kernelevolve.tuner.execution import spawner

        proc = spawner.spawn(self.env.get(spawner.ENV, ""), module, self.env, self.cwd,
                             self._stderr.fileno(), pass_fds, fd_env)
        if proc is not None:
            return proc
        env = dict(self.env, **{var: ",".join(str(pass_fds[i]) for i in idx) for var, idx in fd_env.items()})
        return subprocess.Popen(
            [sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, env=env, cwd=self.cwd,
            start_new_session=True,  # its own process group: a kill takes its children too
            pass_fds=pass_fds)

    def _start(self, with_judge: bool = False) -> None:
        """The evaluation process and, `with_judge`, its judge: both started before either is
        waited for (each imports torch and makes a CUDA context: seconds, not to be paid twice
        in a row on a lane's start)."""
        asked = time.time()
        self.start_split = {}
        fd, self.stderr_path = tempfile.mkstemp(prefix="kernelevolve-worker-", suffix=".log")
        self._stderr = os.fdopen(fd, "w")
        # evidence: evaluator -> judge; outcomes: judge -> evaluator
        ev_r, ev_w = os.pipe()
        ack_r, ack_w = os.pipe()
        try:
            self.proc = self._launch("kernelevolve.tuner.measure.evaluate_process", (ev_w, ack_r),
                                     {"KERNELEVOLVE_EVIDENCE_FDS": [0, 1]})
        finally:
            os.close(ev_w)
            os.close(ack_r)
        self._judge_fds = (ev_r, ack_w)
        self.starts += 1
        if with_judge:
            self._launch_judge()
        # The child says "ready" once torch, Triton and the device are up; that start-up is not
        # part of any candidate's timeout.
        hello = self._hello(self.proc)
        if not hello:
            self.kill()
            raise EOFError(f"worker did not start within {self.startup_timeout_s:g} s")
        # a forked start, split: the wait for the node's fork server (its one loop forks the
        # requests of every slot in turn) and the forked process's own start to ready, and that
        # in turn: its set-up after the fork, its module's run to serving, the evaluator's start
        forked_at, ready_at = getattr(self.proc, "forked_at", None), hello.get("ready_at")
        if forked_at is not None and ready_at is not None:
            self.start_split = {"worker_fork_wait_s": max(0.0, forked_at - asked),
                                "worker_child_start_s": max(0.0, ready_at - forked_at)}
            marks = [forked_at, hello.get("child_set_up"), hello.get("serving_at"), ready_at]
            if None not in marks:
                for key, (a, b) in zip(CHILD_START_PARTS, zip(marks, marks[1:])):
                    self.start_split[key] = max(0.0, b - a)
        if with_judge and not self._hello(self.judge):
            raise EOFError(f"judge did not start within {self.startup_timeout_s:g} s")

    def _hello(self, proc) -> dict | None:
        """The process's "ready" message, or None (it did not say so in time)."""
        ready, _, _ = select.select([proc.stdout], [], [], self.startup_timeout_s)
        hello = recv(proc.stdout) if ready else None
        return hello if isinstance(hello, dict) and hello.get("ready") else None

    def _launch_judge(self) -> None:
        ev_r, ack_w = self._judge_fds
        try:
            self.judge = self._launch("kernelevolve.tuner.measure.judge_process", (ev_r, ack_w),
                                      {"KERNELEVOLVE_JUDGE_IN": [0], "KERNELEVOLVE_JUDGE_OUT": [1]})
        finally:
            os.close(ev_r)
            os.close(ack_w)
            self._judge_fds = ()

    def _start_judge(self) -> None:
        self._launch_judge()
        if not self._hello(self.judge):
            raise EOFError(f"judge did not start within {self.startup_timeout_s:g} s")

    def _ask_judge(self, msg: dict, timeout_s: float = 600) -> dict:
        try:
            send(self.judge.stdin, msg)
            ready, _, _ = select.select([self.judge.stdout], [], [], timeout_s)
            if not ready:
                raise EOFError(f"the judge gave no answer within {timeout_s:g} s")
            return recv(self.judge.stdout)
        except (EOFError, OSError) as exc:
            raise JudgeFailed(f"{type(exc).__name__}: {exc}") from exc

    def _judged(self, payload: dict, reply: dict) -> dict:
        """The evaluator's reply with the judge's verdict in force."""
        op = payload.get("op")
        t0 = time.monotonic()
        verdict = self._ask_judge({"op": "verdict", "request_op": op, "claimed": reply.get("status"),
                                   "rows": len(reply.get("rows") or [])})
        reply["judge_s"] = time.monotonic() - t0
        reply["judge_checks"] = verdict.get("checks", 0)
        if op == "evaluate" and verdict.get("status"):  # the judge's word over the evaluator's
            reply["status"], reply["error"] = verdict["status"], verdict.get("error") or reply.get("error")
        for row, why in (verdict.get("rows_incorrect") or {}).items():
            reply["rows"][row].update(status="incorrect", error=why)
        if verdict.get("tampered"):
            reply["tampered"] = verdict["tampered"]
            reply["worker_unusable"] = True
        return reply

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-lines:]).strip()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """End the evaluation process and its judge (a judge holds the fingerprints of what its
        evaluator cached, so the two are replaced together)."""
        for proc in (self.proc, self.judge):
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        for fd in self._judge_fds:
            os.close(fd)
        self.proc, self.judge, self._judge_fds = None, None, ()

    @staticmethod
    def judge_exemptions(payload: dict) -> tuple[bool, list]:
        """The judge's one exemption (no Triton launch, a library call), for a built-in's declared
        vendor config only, decided from the request before any of its code runs: (whether an
        evaluation's config is one, which rows of a re-timing are). Deciding it may import the
        kernel's module (torch, Triton: seconds, once a process): a lane decides it before it
        waits for its evaluator (lanes.Lane.request), so that import never holds the GPU."""
        from kernelevolve.tuner.measure.vendor import is_declared_vendor  # (here: the judge
        # imports this module for its framing and must import no kernel module)

        op, ref, problem = payload.get("op"), payload.get("kernel_ref", ""), payload.get("problem") or {}
        vendor = op in ("evaluate", "retime", "profile") and is_declared_vendor(ref, payload.get("config"), problem)
        # ... and of a re-timing (its finalists and the vendor paths beside them), which rows are
        rows = [i for i, c in enumerate(payload.get("configs") or []) if is_declared_vendor(ref, c, problem)] \
            if op == "retime" else []
        return vendor, rows

    def request(self, payload: dict, timeout_s: float, exemptions: tuple[bool, list] | None = None) -> dict:
        """Send one request; return the child's reply or a failure record of our own. An
        `evaluate` record says which implementation the candidate is (`impl`), as decided here.
        `exemptions`: judge_exemptions(payload), where the caller decided it already."""
        vendor, rows = self.judge_exemptions(payload) if exemptions is None else exemptions
        reply = self._request(payload, timeout_s, vendor, rows)
        if payload.get("op") == "evaluate":
            reply["impl"] = "vendor" if vendor else "triton"
        return reply

    def _request(self, payload: dict, timeout_s: float, vendor: bool, vendor_rows: list) -> dict:
        t0 = time.monotonic()
        try:
            judged = payload.get("op") in ("evaluate", "retime")
            # a profile request verifies its candidate first (through the judge, whose outcome it
            # reads itself: no verdict is asked), and a lane's warm-up starts its judge too
            checked = judged or payload.get("op") == "profile"
            started = None
            if not self.alive():
                started = time.monotonic()
                self._start(with_judge=bool(checked or payload.get("start_judge")))
                started = time.monotonic() - started
            if checked or payload.get("start_judge"):
                if self.judge is None or self.judge.poll() is not None:
                    if not self._judge_fds:  # a judge died: its evaluator's pipes went with it
                        self.kill()
                        self._start(with_judge=True)
                    else:
                        self._start_judge()
            begun = time.monotonic()
            if checked:
                self._ask_judge({"op": "begin", "vendor": vendor, "vendor_rows": vendor_rows}, timeout_s=60)
            begun = time.monotonic() - begun
            send(self.proc.stdin, payload)
            deadline = time.monotonic() + timeout_s
            while True:
                ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    self.kill()
                    return {"status": "timeout",
                            "error": f"no result within the {timeout_s:g} s per-candidate timeout; "
                                     "the worker process was killed and replaced",
                            "wall_s": time.monotonic() - t0}
                reply = recv(self.proc.stdout)
                if reply.get("progress") is None:
                    break
                # the device is busy (another process timing, a profiler reading a finalist's
                # counters): the wait is not this candidate's, bounded by DEVICE_WAIT_S; once it
                # holds the device, its own time counts again from there
                waiting = reply["progress"] == "device_wait"
                deadline = time.monotonic() + (DEVICE_WAIT_S if waiting else timeout_s)
            if checked:
                reply["judge_begin_s"] = begun
            if started is not None:
                reply["worker_start_s"] = started
                reply.update(self.start_split)
            if judged:
                reply = self._judged(payload, reply)
        except (EOFError, BrokenPipeError, OSError) as exc:
            if isinstance(exc, JudgeFailed):
                self.kill()
                return {"status": "runtime_error", "worker_died": True,
                        "error": f"the judge process failed ({type(exc).__name__}: {exc}); both "
                                 f"processes were replaced. Last stderr:\n{self.stderr_tail()}",
                        "wall_s": time.monotonic() - t0}
            code = self.proc.wait() if self.proc else None
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            tail = self.stderr_tail()
            self.kill()
            return {"status": "runtime_error", "worker_died": True,
                    "error": f"worker process died ({how}; {type(exc).__name__}: {exc}). Last stderr:\n{tail}",
                    "wall_s": time.monotonic() - t0}
        if reply.pop("worker_unusable", False):
            # e.g. an illegal memory access: this CUDA context must not run another candidate.
            self.kill()
            reply["worker_replaced"] = True
        return reply

    def close(self) -> None:
        for proc in (self.proc, self.judge):
            if proc is not None and proc.poll() is None:
                try:
                    send(proc.stdin, {"op": "exit"})
                    proc.wait(timeout=10)
                except Exception:
                    pass
        self.kill()
