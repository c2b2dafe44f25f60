"""A bottleneck label per profiled candidate, from stated rules on its counters (tuner.profile.parse).

The rules, first match wins (docs/review.md, "Why is my kernel slow?"):

  1. launch-bound   the candidate's kernels ran under LAUNCH_SHARE of its measured latency: the rest
                    of each call is host-side launch cost or gaps between its kernels, which no
                    change inside a kernel recovers.
  2. memory-bound   a memory level moves bytes at or above SOL_BOUND_PCT of its peak bandwidth
                    (DRAM, L2 or L1: the hierarchical roofline's levels, tuner.profile.metrics
                    LEVELS), and at least as much of it as the SM's busiest unit and the tensor
                    pipe use of theirs (a GEMM whose tensor pipe runs at 97% is compute-bound even
                    with its L2 at 70%). A capture without the level counters (an older ncu run)
                    reads the busiest memory unit instead (gpu__compute_memory_throughput).
  3. compute-bound  the SM's busiest unit or the tensor pipe is at or above SOL_BOUND_PCT of peak.
  4. latency-bound  neither reaches SOL_BOUND_PCT: the units wait on latency (memory latency,
                    dependencies, barriers) that too few warps in flight cannot hide; the reason
                    names achieved occupancy and the top stall reasons.

SOL_BOUND_PCT = 60 is Nsight Compute's own Speed-of-Light rule: "achieved compute throughput
and/or memory bandwidth below 60% of peak typically indicate latency issues".

Why rule 2 reads bytes: gpu__compute_memory_throughput is the busiest of ~20 memory sub-units,
several of them activity rather than bandwidth (the L2-to-SM crossbar port's busy cycles, the LSU
data pipe's wavefronts). A persistent Triton GEMM with that port busy 81% moved 64% of the L2's
peak bytes while its tensor pipe ran at 76%: its time goes to the tensor pipe, not to moving
bytes. The busiest unit is still named in the reason.

The roofline check (`roofline_side`, `agrees_with_roofline`) places the candidate on the
hierarchical roofline: for each level, the time its bytes need at the level's peak, against the
time the kernel's flops need at the dtype's compute ceiling (tuner.experiment.hardware); the
longest names the side. The memory levels' peaks are all Nsight Compute's at the run's clocks
(L2 and L1 have no measured ceiling, and one scale for every level keeps them comparable); a
record without them (an older capture) uses the hardware profile's measured copy bandwidth for
DRAM, as the flat roofline did.
"""
from __future__ import annotations

from kernelevolve.tuner.profile.metrics import LEVELS

SOL_BOUND_PCT = 60.0
LAUNCH_SHARE = 0.5
LABELS = ("launch-bound", "memory-bound", "compute-bound", "latency-bound")
UNKNOWN = "unknown"


def _pct(v) -> str:
    return f"{v:.0f}%" if isinstance(v, (int, float)) else "n/a"


LEVEL_NAMES = {lv: lv.upper() for lv in LEVELS}  # "dram" -> "DRAM", as reasons and docs name them


def busiest_level(counters: dict) -> tuple[str, float] | None:
    """(level, % of its peak bandwidth) of the memory level that moved the most of its peak, or
    None where no level's counters were read."""
    used = [(counters[f"ncu_{lv}_bw_pct"], lv) for lv in LEVEL_NAMES if counters.get(f"ncu_{lv}_bw_pct") is not None]
    if not used:
        return None
    pct, lv = max(used)
    return lv, pct


def label(counters: dict) -> tuple[str, str]:
    """(label, one-line reason) of a candidate's counters; ("unknown", why) when the counters the
    rules read are missing."""
    share = counters.get("ncu_kernel_share")
    unit, sm = counters.get("ncu_memory_pct"), counters.get("ncu_sm_pct")
    tensor, dram = counters.get("ncu_tensor_pct"), counters.get("ncu_dram_pct")
    if share is not None and share < LAUNCH_SHARE:
        return "launch-bound", (f"its kernels ran {counters['ncu_duration_ms']:.4g} ms of each "
                                f"{counters['ncu_duration_ms'] / share:.4g} ms call ({share:.0%}); "
                                "the rest is launch overhead and gaps")
    level = busiest_level(counters)
    mem = level[1] if level else unit
    if mem is None or sm is None:
        missing = [n for n, v in (("ncu_memory_pct", mem), ("ncu_sm_pct", sm)) if v is None]
        return UNKNOWN, f"counters missing: {', '.join(missing)}"
    if level:
        levels = ", ".join(f"{LEVEL_NAMES[lv]} {_pct(counters.get(f'ncu_{lv}_bw_pct'))}" for lv in LEVEL_NAMES
                           if counters.get(f"ncu_{lv}_bw_pct") is not None)
        memory = f"bandwidth used: {levels}; busiest memory unit {_pct(unit)}"
    else:
        memory = f"memory at {_pct(mem)} of peak (DRAM {_pct(dram)}, L2 hit {_pct(counters.get('ncu_l2_hit_pct'))})"
    compute = max(sm, tensor or 0.0)
    if mem >= SOL_BOUND_PCT and mem >= compute:
        return "memory-bound", f"{memory}, SM {_pct(sm)}"
    if compute >= SOL_BOUND_PCT:
        return "compute-bound", f"SM at {_pct(sm)} of peak, tensor pipe {_pct(tensor)}, {memory}"
    stalls = counters.get("ncu_top_stalls") or "no stall breakdown"
    if level:
        return "latency-bound", (f"{memory} and SM {_pct(sm)}, tensor pipe {_pct(tensor)}: none at "
                                 f"{SOL_BOUND_PCT:.0f}% of peak; occupancy {_pct(counters.get('ncu_occupancy_pct'))}; "
                                 f"stalls: {stalls}")
    return "latency-bound", (f"memory {_pct(mem)} and SM {_pct(sm)} both under {SOL_BOUND_PCT:.0f}% of "
                             f"peak; occupancy {_pct(counters.get('ncu_occupancy_pct'))}; stalls: {stalls}")


def roof_times(counters: dict, hw, dtype: str | None) -> dict[str, float] | None:
    """Seconds per GFLOP of the kernel's work at each roof: "compute" (flops at the dtype's
    ceiling) and each memory level whose bytes were read (bytes at its peak); None where the
    flops, the DRAM intensity or a ceiling is missing. Per GFLOP, so that the DRAM intensity alone
    (an older record) places a candidate as it always did."""
    from kernelevolve.tuner.experiment.hardware import ceiling_for

    ai = counters.get("ncu_intensity")
    bw = ceiling_for(hw, "copy_bytes")
    peak = ceiling_for(hw, f"{dtype}_flops") if dtype else None
    if not ai or bw is None or peak is None:
        return None
    times = {"compute": 1e9 / peak.value, "dram": 1e9 / ai / bw.value}
    for lv in LEVEL_NAMES:
        lai = ai if lv == "dram" else counters.get(f"ncu_{lv}_intensity")
        lbw = counters.get(f"ncu_{lv}_peak_gbps")
        if lai and lbw:
            times[lv] = 1e9 / lai / (lbw * 1e9)
    return times


def no_flops(counters: dict) -> bool:
    """A kernel that does no arithmetic the cost model counts (a layout change: jagged to padded):
    it sits at intensity zero, under the bandwidth roof of its busiest memory level."""
    return "ncu_tflops" not in counters and "ncu_intensity" not in counters and busiest_level(counters) is not None


def binding_roof(counters: dict, hw, dtype: str | None) -> str | None:
    """The roof the hierarchical roofline puts the candidate under: "compute", "dram", "l2" or "l1"."""
    if no_flops(counters):
        return busiest_level(counters)[0]
    times = roof_times(counters, hw, dtype)
    return None if times is None else max(times, key=times.get)


def roofline_side(counters: dict, hw, dtype: str | None) -> str | None:
    """"memory" (a memory level's roof is the lowest: left of that level's ridge), "compute"
    (right of every ridge), or None where the intensity or a ceiling is missing."""
    roof = binding_roof(counters, hw, dtype)
    return None if roof is None else ("compute" if roof == "compute" else "memory")


def roof_fraction(counters: dict, hw, dtype: str | None) -> float | None:
    """Achieved FLOP/s over the lowest roof at the candidate's measured intensities (1.0 = on it);
    for a kernel without flops, its busiest level's bytes over that level's peak."""
    if no_flops(counters):
        return busiest_level(counters)[1] / 100
    times, tflops = roof_times(counters, hw, dtype), counters.get("ncu_tflops")
    if times is None or not tflops:
        return None
    return tflops * 1e12 * max(times.values()) / 1e9


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
