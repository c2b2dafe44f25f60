"""A study's profiled candidates, for review: a table (CSV) and a roofline drawn from their counters.

The roofline places each profiled candidate by what Nsight Compute measured, not by its latency
alone (tuner.review.plots.roofline does that for every candidate): x = the kernel's flops over
the DRAM bytes the counters saw (an L2 that serves re-reads moves the point right), y = the
flops over the kernels' GPU time. Where the L2's bytes were read, each candidate has a second,
hollow point at its flops per L2 byte under the L2's roof (the hierarchical roofline,
tuner.profile.bottleneck): the lower of its roofs is the one that binds it. Each point is coloured by its bottleneck label, so a label that
disagrees with the point's side of the ridge shows at a glance (the table's `roofline_agrees`).
"""
from __future__ import annotations

import csv
import io
import json

from kernelevolve.tuner.profile import bottleneck
from kernelevolve.tuner.review.plots import _figure, _png, draw_roofs, timing_label

COLUMNS = ("candidate_id", "run_id", "bottleneck", "roofline_agrees", "profile_latency_ms", "ncu_duration_ms",
           "ncu_kernel_share", "ncu_sm_pct", "ncu_memory_pct", "ncu_dram_pct", "ncu_tensor_pct",
           "ncu_occupancy_pct", "ncu_l2_hit_pct", "ncu_dram_gbps", "ncu_tflops", "ncu_intensity",
           "ncu_dram_bw_pct", "ncu_l2_bw_pct", "ncu_l1_bw_pct", "ncu_l2_intensity", "ncu_instructions", "ncu_registers", "ncu_top_stalls", "bottleneck_reason", "config")
# the report's table of a study's profiled candidates: the label and what it rests on
REPORT_COLUMNS = ("candidate_id", "bottleneck", "roofline_agrees", "profile_latency_ms", "ncu_sm_pct",
                  "ncu_memory_pct", "ncu_dram_pct", "ncu_tensor_pct", "ncu_occupancy_pct", "ncu_l2_hit_pct",
                  "ncu_top_stalls")
LABEL_COLORS = {"memory-bound": "#1d3557", "compute-bound": "#c1121f", "latency-bound": "#f4a261",
                "launch-bound": "#6a4c93", bottleneck.UNKNOWN: "#9e9e9e"}


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return "" if v is None else str(v)


def with_agreement(rows: list[dict], hw, dtype: str | None) -> list[dict]:
    """Each row with `roofline_agrees` (None where the position or the hardware is unknown)."""
    return [{**r, "roofline_agrees": bottleneck.agrees_with_roofline(r.get("bottleneck", ""), r, hw, dtype)
             if hw is not None else None} for r in rows]


def for_report(client, run) -> tuple[list[dict], bytes | None]:
    """A study run's profiled candidates as report rows (REPORT_COLUMNS, values formatted) and
    its counter roofline; ([], None) for a study with none profiled."""
    from kernelevolve.tuner.experiment import hardware
    from kernelevolve.tuner.records.profile_log import profiled_rows

    rows = profiled_rows(client, run.info.run_id)
    if not rows:
        return [], None
    hw = hardware.PROFILES.get(run.data.tags.get("hardware", ""))
    dtype = run.data.params.get("problem.dtype")
    png, _ = counter_roofline(rows, run.data.tags.get("kernelevolve.study", ""), hw, dtype)
    return [{c: _cell(r.get(c)) for c in REPORT_COLUMNS} for r in with_agreement(rows, hw, dtype)], png


def table_csv(rows: list[dict], hw, dtype: str | None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for r in with_agreement(rows, hw, dtype):
        writer.writerow([_cell(r.get(c)) for c in COLUMNS])
    return buf.getvalue()


def counter_roofline(rows: list[dict], study: str, hw, dtype: str | None) -> tuple[bytes | None, str]:
    """(png, "") or (None, why it was skipped)."""
    from kernelevolve.tuner.experiment.hardware import ceiling_for

    if hw is None or hw.interpreter:
        return None, "skipped: counters come from a GPU; this study has no GPU hardware profile"
    pts = [r for r in rows if r.get("ncu_intensity") and r.get("ncu_tflops")]
    if not pts:
        return None, "skipped: no profiled candidate has measured DRAM bytes and GPU time"
    bw = ceiling_for(hw, "copy_bytes")
    peak = ceiling_for(hw, f"{dtype}_flops") if dtype else None
    fig = _figure(study, timing_label("gpu", hw.name) + ", points from Nsight Compute counters", size=(8.0, 5.0))
    ax = fig.add_subplot()
    xs = [r["ncu_intensity"] for r in pts]
    l2 = [r for r in pts if r.get("ncu_l2_intensity") and r.get("ncu_l2_peak_gbps")]
    draw_roofs(ax, xs + [r["ncu_l2_intensity"] for r in l2], bw, peak, dtype)
    if l2:  # the L2's roof at its peak of the run's clocks (the mean over the candidates)
        l2_bw = sum(r["ncu_l2_peak_gbps"] for r in l2) / len(l2) * 1e9
        lo, hi = min(xs + [r["ncu_l2_intensity"] for r in l2]) / 2, max(xs) * 2
        ax.plot([lo, hi], [l2_bw * lo / 1e12, l2_bw * hi / 1e12], ":", color="#2a9d8f",
                label=f"L2 {l2_bw / 1e12:.1f} TB/s (Nsight Compute's peak at the run's clocks)")
    for name in sorted({r.get("bottleneck", bottleneck.UNKNOWN) for r in pts}):
        mine = [r for r in pts if r.get("bottleneck", bottleneck.UNKNOWN) == name]
        ax.scatter([r["ncu_intensity"] for r in mine], [r["ncu_tflops"] for r in mine], s=30, zorder=3,
                   color=LABEL_COLORS.get(name, "#555"), label=f"{name} ({len(mine)})")
        hier = [r for r in mine if r in l2]
        if hier:
            ax.scatter([r["ncu_l2_intensity"] for r in hier], [r["ncu_tflops"] for r in hier], s=30, zorder=3,
                       facecolors="none", edgecolors=LABEL_COLORS.get(name, "#555"))
        for r in mine:
            ax.annotate(str(r.get("candidate_id", ""))[-6:], (r["ncu_intensity"], r["ncu_tflops"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("flop / byte measured: DRAM (filled, ncu dram__bytes.sum), L2 (hollow, lts__t_bytes.sum)")
    ax.set_ylabel("TFLOP/s over the kernels' GPU time (ncu gpu__time_duration.sum)")
    ax.grid(which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig), ""
