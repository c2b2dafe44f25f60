"""Which hardware counters a profiled candidate gets, by Nsight Compute's own metric names (Hopper).

One home for the names: the `ncu --metrics` list, the parser and the bottleneck rules all read
COUNTERS and STALL_REASONS from here. Each counter has a short field name (what the candidate
record and MLflow call it, tuner.records.schema) and the ncu metric it is read from.

Why these metrics (Nsight Compute's "Kernel Profiling Guide", metric names as its sections use
them on sm_90; the GPU capture script benchmarks/ncu_capture.py checks each counter name against
`ncu --query-metrics` on the H100 before it profiles, launch__* names excepted: see
`in_query_metrics`):
  * `*.pct_of_peak_sustained_elapsed` throughputs are the Speed-of-Light section's: the busiest
    unit of the SM (sm__throughput) and of the memory system (gpu__compute_memory_throughput),
    and DRAM alone, each as % of that unit's peak over the kernel's elapsed cycles.
  * achieved occupancy is the Occupancy section's sm__warps_active ... pct_of_peak_sustained_active.
  * the tensor pipe (sm__pipe_tensor_cycles_active) covers mma.sync and Hopper's wgmma.
  * registers, grid size and waves are the Launch Statistics section's launch__* metrics.
  * the warp-stall breakdown is the WarpStateStats section's: cycles a warp spends stalled on
    each reason per issued instruction (smsp__average_warps_issue_stalled_<reason>_per_issue_active).
    They need no PC sampling pass, unlike the smsp__pcsamp_* family.
"""
from __future__ import annotations

# short field name -> (ncu metric, what it says). Units are converted to the ones named here.
COUNTERS: dict[str, tuple[str, str]] = {
    "ncu_duration_ms": ("gpu__time_duration.sum", "GPU time of the candidate's kernels, one call (ms)"),
    "ncu_sm_pct": ("sm__throughput.avg.pct_of_peak_sustained_elapsed",
                   "SM throughput: the busiest SM unit, % of its peak"),
    "ncu_memory_pct": ("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
                       "memory throughput: the busiest memory unit (DRAM, L2, L1), % of its peak"),
    "ncu_dram_pct": ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "DRAM throughput, % of peak"),
    "ncu_dram_bytes": ("dram__bytes.sum", "bytes read from and written to DRAM, one call"),
    "ncu_tensor_pct": ("sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
                       "tensor-core pipe active, % of peak"),
    "ncu_occupancy_pct": ("sm__warps_active.avg.pct_of_peak_sustained_active",
                          "achieved occupancy: active warps, % of the SM's maximum"),
    "ncu_l2_hit_pct": ("lts__t_sector_hit_rate.pct", "L2 hit rate of sector requests, %"),
    "ncu_instructions": ("smsp__inst_executed.sum", "warp instructions executed, one call"),
    "ncu_registers": ("launch__registers_per_thread", "registers per thread (as launched)"),
    "ncu_grid_size": ("launch__grid_size", "programs (thread blocks) launched"),
    "ncu_waves": ("launch__waves_per_multiprocessor", "waves of programs per SM"),
    "ncu_warp_latency": ("smsp__average_warp_latency_per_inst_issued.ratio",
                         "cycles between a warp's issued instructions (stalls included)"),
}

# The memory levels of the hierarchical roofline (Yang, Kurth and Williams, "Hierarchical Roofline
# Analysis for GPUs", 2020, as Nsight Compute's metrics name them): the bytes each level moved, its
# peak in bytes per cycle and its clock, so a level's peak bandwidth is the one of the run's own
# clocks. DRAM is the device memory; L2 is every byte through the L2 slices (reads, writes, fills);
# L1 is every byte through the L1/TEX cache's tag stage (global and local accesses: a TMA copy
# into shared memory bypasses it). Why bytes and not gpu__compute_memory_throughput: that one is
# the busiest of many memory sub-units, several of them port or pipeline activity (the L2-to-SM
# crossbar's busy cycles, the LSU data pipe's wavefronts); a roofline places bytes.
LEVELS: dict[str, tuple[str, str, str]] = {
    "dram": ("dram__bytes.sum", "dram__bytes.sum.peak_sustained", "dram__cycles_elapsed.avg.per_second"),
    "l2": ("lts__t_bytes.sum", "lts__t_bytes.sum.peak_sustained", "lts__cycles_elapsed.avg.per_second"),
    "l1": ("l1tex__t_bytes.sum", "l1tex__t_bytes.sum.peak_sustained", "l1tex__cycles_elapsed.avg.per_second"),
}

# The WarpStateStats reasons (sm_70 and later), each read as
# smsp__average_warps_issue_stalled_<reason>_per_issue_active.ratio.
STALL_REASONS = ("long_scoreboard", "short_scoreboard", "wait", "barrier", "membar", "mio_throttle",
                 "lg_throttle", "math_pipe_throttle", "tex_throttle", "not_selected", "selected",
                 "dispatch_stall", "drain", "imc_miss", "branch_resolving", "no_instruction",
                 "sleeping", "misc")

STALL_PREFIX = "smsp__average_warps_issue_stalled_"
STALL_SUFFIX = "_per_issue_active.ratio"
TOP_STALLS = 3  # stall reasons named per candidate (the tag `ncu_top_stalls`)


def stall_metric(reason: str) -> str:
    return f"{STALL_PREFIX}{reason}{STALL_SUFFIX}"


def stall_reason(metric: str) -> str | None:
    """The reason a stall metric names, or None for any other metric."""
    if metric.startswith(STALL_PREFIX) and metric.endswith(STALL_SUFFIX):
        return metric[len(STALL_PREFIX):-len(STALL_SUFFIX)]
    return None


def ncu_metrics() -> list[str]:
    """Every metric `ncu --metrics` is asked for, in a stable order."""
    names = [m for m, _ in COUNTERS.values()] + [m for level in LEVELS.values() for m in level]
    return list(dict.fromkeys(names)) + [stall_metric(r) for r in STALL_REASONS]


def base_name(metric: str) -> str:
    """The name `ncu --query-metrics` lists: the metric without its rollup/suffix
    (sm__throughput.avg.pct_of_peak_sustained_elapsed -> sm__throughput)."""
    return metric.split(".", 1)[0]


LAUNCH_PREFIX = "launch__"


def in_query_metrics(metric: str) -> bool:
    """Whether `ncu --query-metrics` lists the metric, so that its absence there means this ncu
    does not know it.

    launch__* metrics (launch__registers_per_thread, launch__grid_size,
    launch__waves_per_multiprocessor) are launch attributes that ncu records from the kernel launch
    itself (the Launch Statistics section), not hardware counters, and `--query-metrics` lists
    only counters: Nsight Compute 2025.3.1 on the H100 lists none of them, yet accepts them in
    `--metrics` and its raw page carries them with values (tests/data/ncu/). Whether a launch__
    metric is known is read from the raw page (tuner.profile.parse.missing_metrics) instead."""
    return not metric.startswith(LAUNCH_PREFIX)
