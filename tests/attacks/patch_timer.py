"""Computes its output right and swaps the clocks' timers, so that its latency is half what it is:
the interpreter's wall clock (`time.perf_counter`) and, on a GPU, Triton's `do_bench` and the
events' `elapsed_time`. Caught by the harness's seal, which holds the timers' identities from
before any candidate code ran (tuner/measure/seal.py TIMER_NAMES): the timed calls' check
carries its word; the process is replaced."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import double, vec_tunable  # noqa: E402


def _swap_timers() -> None:
    real_counter = time.perf_counter
    time.perf_counter = lambda: real_counter() / 2  # every interval it measures halved
    try:
        import torch
        import triton.testing

        real_bench = triton.testing.do_bench
        triton.testing.do_bench = lambda *a, **k: [v / 2 for v in real_bench(*a, **k)]
        real_elapsed = torch.cuda.Event.elapsed_time
        torch.cuda.Event.elapsed_time = lambda self, end: real_elapsed(self, end) / 2
    except ImportError:
        pass


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg["cheat"] and not getattr(time.perf_counter, "__name__", "") == "<lambda>":
        _swap_timers()
    return double(x, out)


KERNEL = vec_tunable("patch_timer", launch)
