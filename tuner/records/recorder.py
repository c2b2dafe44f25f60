"""A study's records on their way to MLflow: from the journal, off the trial loop, tolerant of outages.

The journal (tuner.records.journal) is written first, in the driver's trial loop. MLflow is written
from it by one background thread (Writer), in order, so the loop that starts candidates never
waits for a database; a tracking server that is away only delays MLflow (`kernelevolve sync`, or
the next write, catches up).
"""
from __future__ import annotations

import queue
import threading
import time

from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate
from kernelevolve.tuner.records.tracking import Tracker


class Writer:
    """One thread that runs the sweep's MLflow writes in the order they were submitted."""

    def __init__(self):
        self.jobs: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, name="kernelevolve-mlflow", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:  # a bug in a write must not stop the others
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def submit(self, job) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        """Wait for every submitted write."""
        self.jobs.put(None)
        self.thread.join()


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
