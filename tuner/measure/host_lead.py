"""Keeping the host ahead of the GPU while CUDA events time a call (the `clean` and `do_bench` clocks).

Events time the GPU's timeline: wherever the GPU waits for the host to launch the next call, the
wait is inside that call's time. A clock's repetitions hand the GPU an L2 flush each (85 us on the
H100 for do_bench's zeroing, four read passes for `clean`), which keeps a light launch ahead; a
heavy one did not (a staged GEMM's copies, allocations and descriptors: 250 us a call and more,
more still while other processes load the CPU), and its times came out 1.2-3.3x its GPU time and
unsteady (1 x H200, docs/benchmarks.md, "When the host is slower than the GPU").

So a clock's timed loop starts behind a GPU wait: host_probe enqueues a few repetitions behind a
short wait and takes the host's time for them (the events of those repetitions, enqueued while
the GPU waited, time the GPU alone); lead_s turns the host's deficit over all the loop's
repetitions into the wait, and gpu_wait enqueues it. The host then enqueues while the GPU waits,
and the GPU runs the repetitions back to back. (Or the launch queue fills first: then the host
blocks on the GPU, which is busy, and still never starves it.)
"""
from __future__ import annotations

import time

HOST_PROBE_REPS = 3
HOST_PROBE_WAIT_S = 0.02  # longer than three repetitions take the slowest host seen (< 1 ms each)
LEAD_MARGIN_S = 0.002  # a scheduler hiccup of the host's, absorbed
LEAD_SAFETY = 1.5  # the deficit is estimated from three repetitions: room for a slower stretch
MAX_LEAD_S = 2.0  # past it, a host that slow is past saving: its repetitions show unsteady

_cycles_per_s: dict = {}
_pass_s: dict = {}


def lead_s(host_rep_s: float, gpu_rep_s: float, reps: int) -> float:
    """How long the GPU should wait before `reps` timed repetitions so that the host, taking
    host_rep_s to enqueue each, never falls behind a GPU that takes at least gpu_rep_s to run
    each: the host's deficit over all of them (LEAD_SAFETY times it), and a margin; no wait where
    the host keeps up."""
    deficit = reps * (host_rep_s - gpu_rep_s)
    return 0.0 if deficit <= 0 else min(MAX_LEAD_S, LEAD_SAFETY * deficit + LEAD_MARGIN_S)


def gpu_wait(seconds: float) -> None:
    """Enqueue a kernel that keeps the GPU busy for about `seconds` (torch.cuda._sleep spins a
    number of clock cycles, calibrated once per device by events), returning at once."""
    import torch

    if seconds <= 0:
        return
    dev = torch.cuda.current_device()
    if dev not in _cycles_per_s:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1_000_000)  # the first call loads the kernel
        start.record()
        torch.cuda._sleep(10_000_000)
        end.record()
        torch.cuda.synchronize()
        _cycles_per_s[dev] = 10_000_000 / (start.elapsed_time(end) / 1e3)
    torch.cuda._sleep(int(seconds * _cycles_per_s[dev]))


def host_probe(rep, events: list) -> float | None:
    """The host's seconds for one `rep(*ev)` (a clock's repetition, recording the CUDA events it
    is given), over one call per entry of `events`, all enqueued while the GPU waits
    HOST_PROBE_WAIT_S. None where the host outlasted the wait: a repetition that waits on the
    GPU itself (a synchronising launcher) drains the queue each time, and no lead keeps it ahead."""
    import torch

    gpu_wait(HOST_PROBE_WAIT_S)
    t0 = time.perf_counter()
    for ev in events:
        rep(*ev)
    host_s = time.perf_counter() - t0
    torch.cuda.synchronize()
    return None if host_s >= HOST_PROBE_WAIT_S else host_s / len(events)


def median_elapsed_s(pairs) -> float:
    """The median seconds between the two events of each (start, end) pair (recorded, synchronised)."""
    times = sorted(s.elapsed_time(e) for s, e in pairs)
    return times[len(times) // 2] / 1e3


def pass_s(name: str, gpu_pass) -> float:
    """One GPU pass's seconds (a clock's L2 flush: `gpu_pass()` enqueues it), the median of five,
    measured once per device and name."""
    import torch

    key = (torch.cuda.current_device(), name)
    if key not in _pass_s:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(6)]
        for start, end in events:
            start.record()
            gpu_pass()
            end.record()
        torch.cuda.synchronize()
        _pass_s[key] = median_elapsed_s(events[1:])
    return _pass_s[key]
