"""Process pools forked from the driver as a sweep begins, before Ray's threads exist.

Two jobs of a sweep's start run in such children (tuner.search.valid_sets: the studies' valid
configs; tuner.records.store_opening: the MLflow store): work of seconds of Python that, in a
driver thread, would hold the GIL Ray and Tune need, and that a fork can start at once without a
fresh interpreter's imports. Forked only while the driver has no thread of Ray's: a fork copies
the forking thread alone, and a lock another thread held would stay held in the child.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def _die_with_the_driver() -> None:
    """A pool worker's start (Linux): killed when the driver that forked it dies. Why: a driver
    killed with SIGKILL left its idle pool workers blocked on their task pipe for good (a fork
    holds both ends of the pool's pipes, so none ever saw the end), each holding every file the
    driver had open, the pipe of its early Ray head among them (tuner.execution.early_ray)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool ends with the sweep as before
        pass


def fork_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes forked from this one, each ended with it."""
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("fork"),
                               initializer=_die_with_the_driver)
