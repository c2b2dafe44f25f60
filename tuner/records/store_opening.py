"""The sweep's MLflow store, opened beside the sweep's start rather than in the driver.

Why: opened in a driver thread beside Ray's start, the store (importing MLflow and SQLAlchemy,
copying the empty store, creating the experiment) took 5.6-6.9 s on H200 nodes, in Python that
holds the GIL the driver's Ray join and lane start need; once the join no longer searched the
machine's processes (tuner.execution.local_ray.join_node) it was the start's longest wait, and
opened in a forked child as the sweep began it still took 5.4-5.8 s (MLflow's imports, after the
experiment's load: docs/benchmarks.md, "The start, shortened"). So `kernelevolve run` starts an opener
process as the command begins (start_early), which imports MLflow beside the engine's imports and
then waits; the sweep sends it the store's URI and the experiment's name once the experiment is
loaded, and it opens the store. Nothing is written before that request: a command that fails
earlier (a bad experiment file) leaves no store behind; the opener ends when the command does.
Without an early opener (the Python API), the store opens in a process forked as the sweep begins.

The driver needs only what the opening yields: the store's URI, the experiment's id and the
commit; the sweep's writes go through writer processes that open their own Trackers
(tuner.records.remote_tracker).
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

OPEN_TIMEOUT_S = 600.0  # an opener that has not answered by then: the store cannot be reached


@dataclass(frozen=True)
class OpenedStore:
    """What the driver keeps of an opened store (Tracker's fields that RemoteTracker reads)."""
    uri: str
    experiment_id: str
    commit: str
    took_s: float  # from the opening's start (or the request, for an early opener) to the store ready


def _open(uri: str, experiment: str, began: float) -> OpenedStore:
    from kernelevolve.tuner.records.tracking import Tracker, TrackingUnavailable

    try:
        tracker = Tracker(uri, experiment)
    except TrackingUnavailable:
        raise  # pickled back to the driver, said there as a user error
    except Exception as exc:  # noqa: BLE001 - one message for the user, whatever broke (not all pickle)
        raise TrackingUnavailable(f"the MLflow tracking store {uri} cannot be opened "
                                  f"({type(exc).__name__}: {exc})") from None
    return OpenedStore(tracker.uri, tracker.experiment_id, tracker.commit, time.time() - began)


_EARLY: subprocess.Popen | None = None


def start_early() -> None:
    """Start the opener process now, as the command begins (before the engine's imports)."""
    global _EARLY
    if _EARLY is None:
        _EARLY = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, start_new_session=True)


def _take_early() -> subprocess.Popen | None:
    global _EARLY
    proc, _EARLY = _EARLY, None
    return proc if proc is not None and proc.poll() is None else None


class StoreOpening:
    """The store of `uri` for `experiment`, being opened by the early opener where one was
    started, else in a forked process (fork=False: in a thread, for a driver that has Ray's
    threads already)."""

    def __init__(self, uri: str, experiment: str, fork: bool = True):
        from kernelevolve.tuner.records.tracking import resolve_uri

        self.pool, self.future, self.proc = None, None, _take_early()
        uri = resolve_uri(uri)  # this process's cwd: the opener's may be another
        if self.proc is not None:
            try:
                self.proc.stdin.write(json.dumps({"uri": uri, "experiment": experiment}) + "\n")
                self.proc.stdin.flush()
                return
            except OSError:  # it died: opened here instead
                self.proc = None
        from kernelevolve.tuner.execution.forked import fork_pool

        self.pool = fork_pool(1) if fork else ThreadPoolExecutor(max_workers=1)
        self.future: Future = self.pool.submit(_open, uri, experiment, time.time())

    def result(self) -> OpenedStore:
        """The opened store (waits for it); raises what the opening raised."""
        from kernelevolve.tuner.records.tracking import TrackingUnavailable

        try:
            if self.proc is None:
                return self.future.result()
            ready, _, _ = select.select([self.proc.stdout], [], [], OPEN_TIMEOUT_S)
            line = self.proc.stdout.readline() if ready else ""
            answer = json.loads(line) if line.strip() else {"error": "the store's opener ended without an answer"}
            if "error" in answer:
                raise TrackingUnavailable(answer["error"])
            return OpenedStore(**answer)
        finally:
            self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        if self.proc is not None:
            self.proc.stdin.close()  # the opener ends with its stdin
            # reaped beside the sweep, not waited for: its answer is all the sweep needs, and its
            # exit (an interpreter holding MLflow and SQLAlchemy) kept a 2 x H200 sweep's start
            # waiting ~1 s (the driver's stack samples, docs/benchmarks.md)
            threading.Thread(target=_reap, args=(self.proc,), daemon=True, name="store-opener-reaper").start()
            self.proc = None


def _reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _serve() -> None:
    """The early opener: MLflow's imports and the cached empty store now, then one request."""
    from mlflow.tracking import MlflowClient  # noqa: F401 - imported now, used by the Tracker later

    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - the SQLite store's classes

    from kernelevolve.tuner.records.sqlite_store import template

    try:
        template()  # the machine's empty store, copied from for a new one (once per machine)
    except Exception:  # noqa: BLE001 - the opening makes it, or lets MLflow migrate, as without this
        pass
    line = sys.stdin.readline()  # EOF: the command ended first, nothing is opened
    if not line.strip():
        return
    ask = json.loads(line)
    try:
        answer = _open(ask["uri"], ask["experiment"], time.time()).__dict__
    except Exception as exc:  # noqa: BLE001 - TrackingUnavailable's message, said by the driver
        answer = {"error": str(exc)}
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _serve()
