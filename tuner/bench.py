"""Timing: GPU timing with L2 flushed and the timed section serialised per GPU; interpreter wall time.

GPU: `triton.testing.do_bench` times with CUDA events, excludes its warm-up, and flushes L2 before
every repetition (it zeroes a 256 MB buffer); we ask it for the 20th, 50th and 80th percentiles.
Several candidates may share a GPU (fractional Ray GPUs) so that compilation overlaps; their timed
sections must not overlap, so each holds an exclusive file lock named after the GPU's UUID. The
lock is a file lock because the contenders are separate processes, possibly of separate actors.

Interpreter: kernels run on the CPU in TRITON_INTERPRET mode; wall time over a few runs is all
there is, and every such number is tagged timing=interpreter.
"""
from __future__ import annotations

import fcntl
import os
import statistics
import tempfile
import time
from contextlib import contextmanager

LOCK_DIR = os.path.join(tempfile.gettempdir(), "kernelevolve-gpu-locks")


@contextmanager
def device_lock(device_key: str):
    """Exclusive use of one GPU for timing, across processes on this node."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = os.path.join(LOCK_DIR, f"{device_key.replace('/', '_')}.lock")
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def time_gpu(fn, warmup_ms: float = 25, rep_ms: float = 100) -> tuple[float, float, float]:
    """(p20, p50, p80) in ms of fn on the current GPU, L2 flushed before each repetition."""
    import triton.testing

    q = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.2, 0.5, 0.8])
    return float(q[0]), float(q[1]), float(q[2])


def time_wall(fn, reps: int = 3) -> tuple[float, float, float]:
    """(p20, p50, p80) in ms of wall time (the interpreter's only clock); one run is warm-up."""
    fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    qs = statistics.quantiles(samples, n=10, method="inclusive") if len(samples) > 1 else samples * 9
    return qs[1], statistics.median(samples), qs[7]
