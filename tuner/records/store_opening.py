"""The sweep's MLflow store, opened in a process forked as the sweep begins.

Why: opened in a driver thread beside Ray's start, the store (importing MLflow and SQLAlchemy,
copying the empty store, creating the experiment) took 5.6-6.9 s on H200 nodes, in Python that
holds the GIL the driver's Ray join and lane start need; once the join no longer searched the
machine's processes (tuner.execution.local_ray.join_node) it was the start's longest wait
(docs/benchmarks.md, "A shorter start"). A forked child does it on a core of its own. The driver
needs only what the opening yields: the store's URI, the experiment's id and the commit; the
sweep's writes go through writer processes that open their own Trackers
(tuner.records.remote_tracker).
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass


@dataclass(frozen=True)
class OpenedStore:
    """What the driver keeps of an opened store (Tracker's fields that RemoteTracker reads)."""
    uri: str
    experiment_id: str
    commit: str
    took_s: float  # from the opening's start to the store ready


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


class StoreOpening:
    """The store of `uri` for `experiment`, being opened in a forked process (fork=False: in a
    thread, for a driver that has Ray's threads already)."""

    def __init__(self, uri: str, experiment: str, fork: bool = True):
        from kernelevolve.tuner.execution.forked import fork_pool

        self.pool = fork_pool(1) if fork else ThreadPoolExecutor(max_workers=1)
        self.future: Future = self.pool.submit(_open, uri, experiment, time.time())

    def result(self) -> OpenedStore:
        """The opened store (waits for it); raises what the opening raised."""
        try:
            return self.future.result()
        finally:
            self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
