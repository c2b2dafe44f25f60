"""A bottleneck label per profiled candidate, from stated rules on its counters (tuner.profile.parse).

The rules, first match wins (docs/review.md, "Why is my kernel slow?"):

  1. launch-bound   the candidate's kernels ran under LAUNCH_SHARE of its measured latency: the rest
                    of each call is host-side launch cost or gaps between its kernels, which no
                    change inside a kernel recovers.
  2. memory-bound   the busiest memory unit (DRAM, L2 or L1: gpu__compute_memory_throughput) is at
                    or above SOL_BOUND_PCT of its peak, and at least as busy as the SM's busiest
                    unit and the tensor pipe (a GEMM whose tensor pipe runs at 97% is compute-bound
                    even with its shared memory at 94%).
  3. compute-bound  the SM's busiest unit or the tensor pipe is at or above SOL_BOUND_PCT of peak.
  4. latency-bound  neither reaches SOL_BOUND_PCT: the units wait on latency (memory latency,
                    dependencies, barriers) that too few warps in flight cannot hide; the reason
                    names achieved occupancy and the top stall reasons.

SOL_BOUND_PCT = 60 is Nsight Compute's own Speed-of-Light rule: "achieved compute throughput
and/or memory bandwidth below 60% of peak typically indicate latency issues".

The roofline check (`roofline_side`, `agrees_with_roofline`) places the candidate by its measured
counters (flops over measured DRAM bytes, flops over measured GPU time) against the hardware
profile's ceilings, and says whether the label agrees with that position.
"""
from __future__ import annotations

SOL_BOUND_PCT = 60.0
LAUNCH_SHARE = 0.5
LABELS = ("launch-bound", "memory-bound", "compute-bound", "latency-bound")
UNKNOWN = "unknown"


def _pct(v) -> str:
    return f"{v:.0f}%" if isinstance(v, (int, float)) else "n/a"


def label(counters: dict) -> tuple[str, str]:
    """(label, one-line reason) of a candidate's counters; ("unknown", why) when the counters the
    rules read are missing."""
    share = counters.get("ncu_kernel_share")
    mem, sm = counters.get("ncu_memory_pct"), counters.get("ncu_sm_pct")
    tensor, dram = counters.get("ncu_tensor_pct"), counters.get("ncu_dram_pct")
    if share is not None and share < LAUNCH_SHARE:
        return "launch-bound", (f"its kernels ran {counters['ncu_duration_ms']:.4g} ms of each "
                                f"{counters['ncu_duration_ms'] / share:.4g} ms call ({share:.0%}); "
                                "the rest is launch overhead and gaps")
    if mem is None or sm is None:
        missing = [n for n, v in (("ncu_memory_pct", mem), ("ncu_sm_pct", sm)) if v is None]
        return UNKNOWN, f"counters missing: {', '.join(missing)}"
    compute = max(sm, tensor or 0.0)
    if mem >= SOL_BOUND_PCT and mem >= compute:
        return "memory-bound", (f"memory at {_pct(mem)} of peak (DRAM {_pct(dram)}, L2 hit "
                                f"{_pct(counters.get('ncu_l2_hit_pct'))}), SM {_pct(sm)}")
    if compute >= SOL_BOUND_PCT:
        return "compute-bound", f"SM at {_pct(sm)} of peak, tensor pipe {_pct(tensor)}, memory {_pct(mem)}"
    stalls = counters.get("ncu_top_stalls") or "no stall breakdown"
    return "latency-bound", (f"memory {_pct(mem)} and SM {_pct(sm)} both under {SOL_BOUND_PCT:.0f}% of "
                             f"peak; occupancy {_pct(counters.get('ncu_occupancy_pct'))}; stalls: {stalls}")


def roofline_side(counters: dict, hw, dtype: str | None) -> str | None:
    """"memory" (left of the ridge), "compute" (right of it) by the measured arithmetic intensity,
    or None where the intensity or a ceiling is missing."""
    from kernelevolve.tuner.experiment.hardware import ceiling_for

    ai = counters.get("ncu_intensity")
    bw = ceiling_for(hw, "copy_bytes")
    peak = ceiling_for(hw, f"{dtype}_flops") if dtype else None
    if not ai or bw is None or peak is None:
        return None
    return "memory" if ai < peak.value / bw.value else "compute"


def roof_fraction(counters: dict, hw, dtype: str | None) -> float | None:
    """Achieved FLOP/s over the roof at the candidate's measured intensity (1.0 = on the roof)."""
    from kernelevolve.tuner.experiment.hardware import ceiling_for

    ai, tflops = counters.get("ncu_intensity"), counters.get("ncu_tflops")
    bw = ceiling_for(hw, "copy_bytes")
    peak = ceiling_for(hw, f"{dtype}_flops") if dtype else None
    if not ai or not tflops or bw is None or peak is None:
        return None
    return tflops * 1e12 / min(peak.value, bw.value * ai)


def agrees_with_roofline(name: str, counters: dict, hw, dtype: str | None) -> bool | None:
    """Whether a label agrees with the roofline position: memory-bound left of the ridge,
    compute-bound right of it, latency- and launch-bound under SOL_BOUND_PCT of the roof at
    their intensity. None where the position is unknown."""
    side = roofline_side(counters, hw, dtype)
    if side is None:
        return None
    if name == "memory-bound":
        return side == "memory"
    if name == "compute-bound":
        return side == "compute"
    frac = roof_fraction(counters, hw, dtype)
    return None if frac is None else frac < SOL_BOUND_PCT / 100
