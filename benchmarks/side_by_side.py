"""How the GEMM suite times a shape's rows: ours and every peer, by the shape's clock, in rounds.

Each callable is made, verified and tuned first (a Pending row); then all of a shape's are timed
together in ROUNDS interleaved rounds, each round every callable once by the row's clock with a
ROUNDS-th of the repetitions, the order rotated round to round; a row's p20, p50 and p80 are the
medians of its rounds'. Timed one after another instead, the same cuBLAS call measured 0.4499,
0.4599 and 0.4679 ms as max-autotune's choice, our dispatched path and the cuBLAS peer of one shape
(62112x3312x768 bf16, 1 x H200, docs/benchmarks.md): whatever changes over a shape's half minute
of peers (the GPU's clocks and temperature, the host's other work) met each row at one moment.
Interleaved, every row meets each stretch of it alike, as the engine's end-of-study re-timing
meets its finalists (tuner/measure/retime.py).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from kernelevolve.tuner.measure.clocks import host_us, measure

WARMUP_MS, REP_MS = 25, 100  # per row: warm-up before each round's timing, repetitions over all rounds
ROUNDS = 3


@dataclass
class Pending:
    """A row whose callable is made and verified, waiting to be timed with its shape's others:
    `fields` are the arguments of the suite's row() but its times and clocks."""

    fn: object
    fields: dict


def timed(fn, clock: str, rep_ms: float = REP_MS) -> tuple[tuple, str]:
    """(p20, p50, p80) by the named clock; do_bench if that clock fails (a peer running its own
    CUDA graphs cannot be captured in another)."""
    if clock == "wall":
        return measure(fn, "wall", wall_reps=3), "wall"
    try:
        return measure(fn, clock, WARMUP_MS, rep_ms), clock
    except Exception as exc:  # noqa: BLE001
        print(f"{clock} timing failed ({type(exc).__name__}); do_bench instead", flush=True)
        return measure(fn, "do_bench", WARMUP_MS, rep_ms), "do_bench"


def failed_clock(clock: str, used: str) -> dict:
    """The row's field naming the shape's clock where it could not time this row (`timed` fell
    back to do_bench): the row then says so beside the clock that did."""
    return {"clock_failed": clock} if used != clock else {}


def other_clocks(fn, clock: str) -> dict:
    """Beside the row's clock: a graph-timed row gets what an eager Python caller sees (event-timed
    p50, host us per call); an event-timed row of another clock do_bench's p50."""
    if clock == "cudagraph":
        return {"events_ms": measure(fn, "do_bench", WARMUP_MS, REP_MS)[1], "host_us": host_us(fn)}
    return {"do_bench_ms": measure(fn, "do_bench", WARMUP_MS, REP_MS)[1]} if clock in ("clean",) else {}


def time_together(items: list, clock: str, make_row) -> list[dict]:
    """The rows of `items` (rows already made, or Pending ones), in their order: the Pending ones
    timed together in ROUNDS interleaved rounds (module docstring), each then made a row by
    make_row(times=..., clock=..., **fields) with the clocks beside its own (other_clocks); one
    whose timing fails is a row with the error and no times (a failure is a result)."""
    pending = [i for i, it in enumerate(items) if isinstance(it, Pending)]
    rounds: dict = {i: [] for i in pending}
    used: dict = {}
    failed: dict = {}
    for r in range(ROUNDS if pending else 0):
        for i in pending[r % len(pending):] + pending[:r % len(pending)]:
            if i in failed:
                continue
            try:
                times, used[i] = timed(items[i].fn, clock, REP_MS / ROUNDS)
            except Exception as exc:  # noqa: BLE001
                failed[i] = f"{type(exc).__name__}: {exc}"[:500]
                continue
            rounds[i].append(times)
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, Pending):
            out.append(it)
        elif i in failed:
            out.append(make_row(**{**it.fields, "error": failed[i]}))
        else:
            times = tuple(statistics.median(q[k] for q in rounds[i]) for k in range(3))
            try:
                beside = other_clocks(it.fn, used[i])
            except Exception as exc:  # noqa: BLE001 - the row's own clock timed it: keep it
                beside = {"other_clocks_error": f"{type(exc).__name__}: {exc}"[:200]}
            out.append(make_row(times=times, clock=used[i], **failed_clock(clock, used[i]), **beside, **it.fields))
    return out
