"""Clocks, by name: the one home of how a candidate, a finalist or a peer is timed.

An experiment picks one with `timing.clock` (CLOCKS below, or `auto`); benchmarks call
`measure(fn, clock, ...)` with the same names, so a figure in docs/ and a sweep's record are taken
by the same code.
  do_bench   triton.testing.do_bench: CUDA events, L2 flushed by zeroing 256 MB before each call
  clean      events after a read-only L2 flush, each call charged its own write-back (time_gpu_clean)
  cudagraph  replays inside a CUDA graph (no host launch cost; L2 not flushed): kernels of a few us
  wall       CPU wall time (the Triton interpreter's only clock; never a performance result)
  auto       not a clock but a rule (choose_clock): one of the above per study, fixed before its
             search starts from the study's roofline, so that the winner is chosen on the clock it
             is reported on

GPU: `triton.testing.do_bench` times with CUDA events, excludes its warm-up, and flushes L2 before
every repetition (it zeroes a 256 MB buffer); we ask it for the 20th, 50th and 80th percentiles.
With an experiment's `timing.clock: clean`, time_gpu_clean instead: the L2 is emptied by reading,
and each call is charged the write-back of its own dirty lines (its docstring says why).
Both event clocks start their timed loop behind a GPU wait where a call costs the host more to
launch than a repetition runs on the GPU (tuner/measure/host_lead.py), so that the events time the
GPU's work and not the GPU waiting for Python.
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
from dataclasses import dataclass

from kernelevolve.tuner.experiment.hardware import least_time_s
from kernelevolve.tuner.measure import host_lead

LOCK_DIR = os.path.join(tempfile.gettempdir(), "kernelevolve-gpu-locks")


@contextmanager
def device_lock(device_key: str, on_wait=None):
    """Exclusive use of one GPU for timing, across processes on this node. `on_wait()` is called
    if another process holds it, before waiting for it."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = os.path.join(LOCK_DIR, f"{device_key.replace('/', '_')}.lock")
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


GPU_CLOCKS = ("do_bench", "clean", "cudagraph")
CLOCKS = GPU_CLOCKS + ("wall",)

# `timing.clock: auto`: each study's clock by choose_clock. Below SHORT_KERNEL_US of estimated peer
# time a study is timed in CUDA graphs: a Python launch (40-200 us per Triton launch on the H100
# host) is then as long as the kernel, and events would time the host, not the kernel. Above it,
# with `timing.long_clock` (one of LONG_CLOCKS): events with the L2 flushed between calls, as a long
# kernel meets it in a model (cudagraph does not flush).
AUTO = "auto"
TIMING_CLOCKS = GPU_CLOCKS + (AUTO,)  # what `timing.clock` may name
LONG_CLOCKS = ("do_bench", "clean")
SHORT_KERNEL_US = 50.0


@dataclass(frozen=True)
class ClockChoice:
    """The clock a study is timed with, and why (logged on its parent run, carried by its summary)."""
    clock: str  # a name of CLOCKS
    estimate_us: float | None  # the peer time auto compared with SHORT_KERNEL_US; None: no rule ran
    rule: str  # how it was chosen, in a few words


def choose_clock(clock: str, long_clock: str, spec, problem, hw) -> ClockChoice:
    """The clock of one study (kernel spec, problem, hardware profile), fixed before its search:
    every candidate, the re-timing of its finalists and its peer are timed with it.

    `auto`'s rule: the peer's time is estimated by the roofline (hardware.least_time_s of the
    spec's flops and bytes_moved at the profile's ceilings), not measured, so that the same file on
    the same target always resolves to the same clock, whatever a timing run would have jittered.
    Under SHORT_KERNEL_US: `cudagraph`; else `long_clock`. The roofline is a lower bound: a shape
    whose library peer measures a little over SHORT_KERNEL_US may still be estimated under it.
    A named clock is taken as named; the interpreter has only `wall`."""
    if hw.interpreter:
        return ClockChoice("wall", None, "interpreter")
    if clock != AUTO:
        return ClockChoice(clock, None, "timing.clock")
    seconds = least_time_s(hw, spec.flops(problem), spec.bytes_moved(problem), getattr(problem, "dtype", None))
    if seconds is None:
        return ClockChoice(long_clock, None, f"auto: {hw.name} lists no ceiling to estimate with")
    us = seconds * 1e6
    if us < SHORT_KERNEL_US:
        return ClockChoice("cudagraph", us, f"auto: roofline {us:.3g} us < {SHORT_KERNEL_US:g} us")
    return ClockChoice(long_clock, us, f"auto: roofline {us:.3g} us >= {SHORT_KERNEL_US:g} us")


def measure(fn, clock: str = "do_bench", warmup_ms: float = 25, rep_ms: float = 100,
            wall_reps: int = 3, before=None) -> tuple[float, float, float]:
    """(p20, p50, p80) in ms of fn by the named clock (CLOCKS).

    `before`, if given, runs before each timed call, outside the timed region (not before warm-up
    or estimate calls): the evaluator poisons the next timed call's output buffer there
    (tuner/measure/timed_outputs.py). Under `cudagraph` nothing can run between the captured calls
    without being timed with them, so `before` is not called there (the graph's outputs are
    checked through their capture ring instead)."""
    if clock == "do_bench":
        return time_gpu(fn, warmup_ms, rep_ms, before)
    if clock == "clean":
        return time_gpu_clean(fn, *clean_counts(fn, warmup_ms, rep_ms), before=before)
    if clock == "cudagraph":
        return time_graph(fn, rep_ms)
    if clock == "wall":
        return time_wall(fn, wall_reps, before)
    raise ValueError(f"unknown clock {clock!r}: one of {', '.join(CLOCKS)}")


class _BeforeEachTimedCall:
    """do_bench's `grad_to_none` entries get `x.grad = None` before each timed call, ahead of the
    L2 flush and the start event (triton 3.6 to 3.9): the one place its loop lets us run work
    between timed calls without timing it, so that the clock stays Triton's own do_bench. The
    first one also enqueues the loop's lead (host_lead: a GPU wait the host gets ahead behind)."""

    def __init__(self, before, lead_s: float = 0.0):
        self._before, self._lead_s = before, lead_s

    @property
    def grad(self):
        return None

    @grad.setter
    def grad(self, _value):
        if self._lead_s:
            host_lead.gpu_wait(self._lead_s)
            self._lead_s = 0.0
        if self._before is not None:
            self._before()


def do_bench_lead_s(fn, rep_ms: float, before=None) -> float:
    """The GPU wait that keeps the host ahead of do_bench's timed loop (host_lead): the host's time
    for a repetition like the loop's (`before`, the L2 zeroed, fn between events), against the
    GPU's, over as many repetitions as do_bench can make of rep_ms (its own estimate of a call
    includes the zeroing, so at most rep_ms over the GPU's time for one)."""
    import torch
    import triton

    driver = triton.runtime.driver.active
    cache = driver.get_empty_cache_for_benchmark()

    def rep(start, end):
        if before is not None:
            before()
        driver.clear_cache(cache)
        start.record()
        fn()
        end.record()

    probe = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
             for _ in range(host_lead.HOST_PROBE_REPS)]
    host_rep_s = host_lead.host_probe(rep, probe)
    if host_rep_s is None:
        return 0.0
    gpu_rep_s = host_lead.median_elapsed_s(probe) + host_lead.pass_s("zero", lambda: driver.clear_cache(cache))
    return host_lead.lead_s(host_rep_s, gpu_rep_s, max(1, int(rep_ms / 1e3 / gpu_rep_s)))


def time_gpu(fn, warmup_ms: float = 25, rep_ms: float = 100, before=None) -> tuple[float, float, float]:
    """(p20, p50, p80) in ms of fn on the current GPU by do_bench (L2 zeroed before each call);
    `before` runs ahead of each timed call, outside its events; the timed loop starts behind the
    GPU wait that keeps a costly launch's host ahead (do_bench_lead_s)."""
    import triton.testing

    hooks = [_BeforeEachTimedCall(before, do_bench_lead_s(fn, rep_ms, before))]
    q = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, grad_to_none=hooks,
                                quantiles=[0.2, 0.5, 0.8])
    return float(q[0]), float(q[1]), float(q[2])


def time_graph(fn, rep_ms: float = 100) -> tuple[float, float, float]:
    """(p20, p50, p80) ms of fn replayed inside a CUDA graph (triton.testing.do_bench_cudagraph):
    GPU time without the host's launch cost. For kernels of a few tens of microseconds, where a
    Python launch (40-200 us per Triton launch on the H100 host) would otherwise be what event
    timing measures. L2 is not flushed between replays: time the peer with it too."""
    import triton.testing

    q = triton.testing.do_bench_cudagraph(fn, rep=rep_ms, quantiles=[0.2, 0.5, 0.8])
    return float(q[0]), float(q[1]), float(q[2])


def host_us(fn, calls: int = 100) -> float:
    """The host's cost of one call, in us: `calls` calls back to back with no synchronisation in
    between (the GPU queue absorbs them while they are shorter than the kernels), per call. What
    bounds an eagerly launched kernel or model when the GPU finishes faster than Python launches."""
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    us = (time.perf_counter() - t0) / calls * 1e6
    torch.cuda.synchronize()
    return us


FLUSH_BYTES = 256 * 1024 * 1024  # as do_bench's buffer: five times the H100's 50 MB L2
MAX_CLEAN_REPS = 1000
_flush_buffers: dict = {}


def time_gpu_clean(fn, warmup: int, reps: int, before=None) -> tuple[float, float, float]:
    """(p20, p50, p80) ms of fn with the L2 emptied by *reading* a 256 MB buffer before each of
    `reps` timed calls (after `warmup` untimed ones), and fn charged the write-back of what it
    leaves dirty.

    do_bench empties the L2 by writing zeros (cache.zero_()): the L2 is then full of dirty lines,
    and the timed kernel's misses evict them, so up to ~50 MB of write-back to HBM lands inside its
    measured time (8.6 us of a 70 us embedding-bag forward on the H100,
    docs/results/l2_flush_probe.json). A read pass leaves clean lines, dropped for free. But a
    kernel's own last writes (up to an L2's worth) would then still sit in the L2 when its end
    event fires, and be written back for free too, which flatters write-heavy kernels. So each
    repetition times fn followed by a second read pass, whose misses evict fn's dirty lines, and
    subtracts the median time of that read pass alone after a clean L2 (timed in the same loop):
    what is left is fn's time plus the write-back of everything it wrote, as in a model where the
    next kernel pays for it. The subtraction carries the read pass's jitter (about a microsecond on
    the H100): for kernels of a few microseconds, time in CUDA graphs instead (time_graph).

    Events time the GPU's timeline, so wherever the GPU waits for the host to launch fn, the wait
    is in fn's time. Each repetition hands the GPU four 85 us read passes, which keeps a host of
    light launches ahead; a heavy one (a staged GEMM's copies, allocations and descriptors: 250 us
    a call and more, and slower still while other processes load the CPU) was not, and its times
    came out 1.6-3.3x its GPU time, unsteady (1 x H200, docs/benchmarks.md). So the loop starts
    behind a GPU wait as long as the host's time for all repetitions exceeds the GPU's
    (tuner/measure/host_lead.py): the host enqueues while the GPU waits, and the GPU then runs
    them back to back."""
    import torch

    dev = torch.cuda.current_device()
    buf = _flush_buffers.get(dev)
    if buf is None:
        buf = _flush_buffers[dev] = torch.ones(FLUSH_BYTES // 4, dtype=torch.float32, device="cuda")
    sink = torch.empty((), dtype=torch.float32, device="cuda")

    def flush():
        torch.sum(buf, dim=0, out=sink)  # reads every line of the buffer, writes 4 bytes

    def rep(s, e, fs, fe):
        if before is not None:
            before()  # ahead of the flush: what it writes is evicted before the start event
        flush()
        s.record()
        fn()
        flush()
        e.record()
        flush()
        fs.record()
        flush()
        fe.record()

    for _ in range(warmup):
        fn()
    events = [[torch.cuda.Event(enable_timing=True) for _ in range(4)] for _ in range(reps)]
    # the host's time for a repetition, and the GPU's (fn and a read pass, then three more passes),
    # measured behind a GPU wait (host_lead); the probe's calls are made as timed ones (TimedOutputs
    # checks them alike), only not timed
    probe = [[torch.cuda.Event(enable_timing=True) for _ in range(4)] for _ in range(host_lead.HOST_PROBE_REPS)]
    host_rep_s = host_lead.host_probe(rep, probe)
    if host_rep_s is not None:
        gpu_rep_s = host_lead.median_elapsed_s([(s, e) for s, e, _, _ in probe]) + 3 * host_lead.pass_s("read", flush)
        host_lead.gpu_wait(host_lead.lead_s(host_rep_s, gpu_rep_s, reps))
    for ev in events:
        rep(*ev)
    torch.cuda.synchronize()
    alone = sorted(fs.elapsed_time(fe) for _, _, fs, fe in events)[reps // 2]
    times = sorted(s.elapsed_time(e) - alone for s, e, _, _ in events)
    q = [times[min(reps - 1, int(f * reps))] for f in (0.2, 0.5, 0.8)]
    return float(q[0]), float(q[1]), float(q[2])


def clean_counts(fn, warmup_ms: float, rep_ms: float) -> tuple[int, int]:
    """do_bench's millisecond budgets as call counts for time_gpu_clean: fn's time is estimated
    from 5 calls, as do_bench does; at least 10 and at most MAX_CLEAN_REPS timed calls (each also
    costs four read passes of the flush buffer)."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    start.record()
    for _ in range(5):
        fn()
    end.record()
    torch.cuda.synchronize()
    est = max(start.elapsed_time(end) / 5, 1e-3)
    return max(1, int(warmup_ms / est)), max(10, min(MAX_CLEAN_REPS, int(rep_ms / est)))


def time_wall(fn, reps: int = 3, before=None) -> tuple[float, float, float]:
    """(p20, p50, p80) in ms of wall time (the interpreter's only clock); one run is warm-up."""
    fn()
    samples = []
    for _ in range(reps):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    qs = statistics.quantiles(samples, n=10, method="inclusive") if len(samples) > 1 else samples * 9
    return qs[1], statistics.median(samples), qs[7]
