"""A study's records on their way to MLflow: from the journal, off the trial loop, tolerant of outages.

The journal (tuner.records.journal) is written first, in the driver's trial loop. MLflow is written
from it by background threads (Writer), each study's in order, so the loop that starts candidates never
waits for a database; a tracking server that is away only delays MLflow (`kernelevolve sync`, or
the next write, catches up).
"""
from __future__ import annotations

import queue
import threading
import time
import zlib

from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate
from kernelevolve.tuner.records.tracking import Tracker


# How many writers a sweep's MLflow writes are spread over (each a thread here and a process of
# its own: tuner.records.remote_tracker says why several), and which one a study's go to (stable
# across processes and runs, so that a study's writes keep their order).
WRITERS = 4


def writer_of(key: str, writers: int = WRITERS) -> int:
    return zlib.crc32(key.encode()) % writers


class Writer:
    """Threads that run the sweep's MLflow writes: a study's in the order they were submitted, on
    its writer's thread (writer_of its key); different studies' at once."""

    def __init__(self, writers: int = WRITERS):
        self.queues: list[queue.Queue] = [queue.Queue() for _ in range(max(1, writers))]
        self.errors: list[str] = []
        self.waiting: set[str] = set()  # studies with a sync queued and not yet begun
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(q,), name=f"kernelevolve-mlflow-{i}", daemon=True)
                        for i, q in enumerate(self.queues)]
        for t in self.threads:
            t.start()

    def _run(self, jobs: queue.Queue):
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:  # a bug in a write must not stop the others
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def submit(self, job, key: str = "") -> None:
        self.queues[writer_of(key, len(self.queues))].put(job)

    def submit_sync(self, key: str, sync) -> None:
        """A study's sync, unless one is already queued: that one reads every record when it runs
        (a trial's result queued a sync each; at 10 results a second most were of nothing new)."""
        with self.lock:
            if key in self.waiting:
                return
            self.waiting.add(key)

        def job():
            with self.lock:
                self.waiting.discard(key)
            sync()
        self.submit(job, key)

    def close(self) -> None:
        """Wait for every submitted write."""
        for jobs in self.queues:
            jobs.put(None)
        for t in self.threads:
            t.join()


class StudyRecorder:
    """Sends a study's journal to MLflow, tolerating a tracking server that is away."""

    def __init__(self, tracker: Tracker, state: SweepState, study, journal_name: str, log):
        self.tracker, self.state, self.study, self.log = tracker, state, study, log
        self.journal = state.journal(journal_name)
        self._records: list[dict] = []  # the journal so far, read incrementally
        self.tags = {"study": study.key, "target": study.target.name, "kernel": study.kernel_name}
        self.down_since = None

    @property
    def parent(self):
        return self.state.study(self.study.key).get("parent")

    def _guard(self, what, fn):
        try:
            out = fn()
        except Exception as exc:  # MLflow away: the journal keeps everything; say so once
            if self.down_since is None:
                self.down_since = time.time()
                self.log(f"  ! MLflow unreachable ({type(exc).__name__}) during {what}: records "
                         f"stay in {self.journal.path}; sent when it returns or by `kernelevolve sync`")
            return None
        if self.down_since is not None:
            self.log(f"  MLflow reachable again after {time.time() - self.down_since:.0f} s: catching up")
            self.down_since = None
        return out

    def records(self) -> list[dict]:
        """Every journaled candidate once, in order (new lines read since the last call only)."""
        self._records += self.journal.read_new()
        return unique_by_candidate(self._records)

    def sync(self) -> None:
        if self.parent:
            self._guard("sync", lambda: self.tracker.sync(self.parent, self.records(), self.tags))

    def finish(self, summary: dict, history: list, rendered: tuple | None = None) -> bool:
        def send():
            self.tracker.sync(self.parent, self.records(), self.tags)
            self.tracker.finish_study(self.parent, summary, history, records=self.records(),
                                      rendered=rendered)
            return True
        return bool(self._guard("finish", send))
