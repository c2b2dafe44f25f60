"""Every study's valid configs, enumerated in processes forked from the driver as the sweep starts.

Why not in the driver: walking a GEMM space (Space.valid_configs: 20k valid configs of 800k raw
points) and encoding its set for the searcher (ValidSet) take ~1 s of Python each study. In a
driver thread that held the driver's one GIL for 6.3 s of the 8-study suite's start on the H100
node (32 studies: ~25 s), while Ray Tune's loop, in the same process, was creating the first
trials' actors. Why forked: a space's rules are Python callables (lambdas among them) that do
not pickle, while a child forked from the driver holds every space already; only its result, the
configs, their encoding and their keys (~5 MB for 20k configs), comes back through the pool's pipe. Why not
Ray tasks: a Ray worker imports the kernels (torch, Triton) before it can build a space (~13 s on
the H100 node then). The pool is forked before Ray and the sweep's threads start (sweep.run),
from a driver that has started no CUDA.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, as_completed

from kernelevolve.tuner.execution.forked import fork_pool

_SPACES: dict = {}  # study key -> space, set before the fork: what the children walk


def _enumerate(key: str):
    from kernelevolve.tuner.search.constrained import ValidSet

    space = _SPACES[key]
    configs = space.valid_configs()
    return configs, ValidSet.vectors_of(space, configs), ValidSet.keys_of(configs)


class Enumerations:
    """The valid sets of `spaces` (study key -> Space) being enumerated by `workers` forked
    processes (default: half the machine's cores, at most one per study). fork=False: none is
    forked, and every key comes back unwalked (the caller walks it)."""

    def __init__(self, spaces: dict, workers: int | None = None, fork: bool = True):
        self.keys = [k for k, space in spaces.items() if space.enumerable()]
        self.futures: dict[str, Future] = {}
        self.pool = None
        if not self.keys or not fork:
            return
        _SPACES.clear()
        _SPACES.update({k: spaces[k] for k in self.keys})
        workers = workers or max(1, min(len(self.keys), (os.cpu_count() or 2) // 2))
        # fork: the children need the spaces' rules, which do not pickle (the docstring says why)
        self.pool = fork_pool(workers)
        # the longest walks first (GEMM spaces), so that the last set arrives soonest
        for key in sorted(self.keys, key=lambda k: -spaces[k].size()):
            self.futures[key] = self.pool.submit(_enumerate, key)

    def as_arrived(self, keys) -> "iter":
        """(key, parts or None, error or None) for each of `keys`, as each set arrives; parts:
        (configs, their encoding, their keys), what ValidSet takes. A key that was not enumerated
        here (a space too large, a broken pool, no fork) comes with parts None: the caller walks
        it itself or searches it by rejection."""
        mine = {self.futures[k]: k for k in keys if k in self.futures}
        for key in keys:
            if key not in self.futures:
                yield key, None, None
        for fut in as_completed(mine):
            try:
                yield mine[fut], fut.result(), None
            except Exception as exc:  # a child died or a rule raised: said by the caller
                yield mine[fut], None, exc

    def close(self) -> None:
        """Walks not started are dropped, running ones awaited (a second or two, and only where the
        sweep ends before its sets arrived: a user error): a pool shut down without waiting left
        its wake-up pipe closed under the exit handler of concurrent.futures (Python 3.11), which
        then printed a traceback after the sweep's one-line error."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        _SPACES.clear()
