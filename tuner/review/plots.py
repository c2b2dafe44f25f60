"""A study's review plots, drawn from its candidate records: PNG bytes, one figure per question.

- convergence: did the search keep finding faster configs (best-so-far latency per candidate)?
- param_importance: which parameters mattered (Optuna's importance on a study rebuilt from the
  records; a figure saying why not when there are too few correct candidates)?
- latency_by_status: how the candidates ended, and how the correct ones' latencies spread?
- roofline: where the correct candidates sit against the GPU's ceilings (skipped, with the
  reason, for interpreter timings: CPU wall time says nothing about a GPU).

Every figure names its study and its timing (`timing=interpreter` or `timing=gpu`), so a plot
copied out of its context still says what was measured. Figures are drawn on a bare
`matplotlib.figure.Figure` (Agg canvas, no pyplot): no global backend state, safe off the main thread.
"""
from __future__ import annotations

import io
import math
import random
from collections import Counter

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kernelevolve.tuner.experiment import hardware
from kernelevolve.tuner.records.schema import is_vendor_record

STATUSES = ("ok", "invalid", "compile_error", "out_of_resources", "incorrect", "runtime_error", "timeout")
STATUS_COLORS = {"ok": "#2a9d4b", "invalid": "#9e9e9e", "compile_error": "#e76f51",
                 "out_of_resources": "#f4a261", "incorrect": "#c1121f", "runtime_error": "#6a4c93",
                 "timeout": "#1d3557"}
# Fewer correct candidates than this and an importance is noise dressed as a number.
MIN_OK_FOR_IMPORTANCE = 4
INTERPRETER_NOTE = "timing=interpreter: CPU wall time in Triton's interpreter, not GPU performance"
INTERPRETER_SKIP = ("skipped: interpreter timings are CPU wall time, not GPU performance; "
                    "a roofline of a GPU's ceilings would be meaningless")


def timing_label(timing: str, hw_name: str) -> str:
    return INTERPRETER_NOTE if timing == "interpreter" else f"timing=gpu ({hw_name})"


def _figure(study: str, label: str, size=(8.0, 4.6)) -> Figure:
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{study}\n{label}", fontsize=9)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _ok(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "ok" and _pos(r.get("latency_ms"))]


def _pos(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def convergence(records: list[dict], study: str, label: str) -> bytes:
    """Best-so-far latency over the evaluated candidates, numbered as the progress display counts
    them: constraint rejects (`invalid`) cost nothing, are not numbered, and are only counted."""
    fig = _figure(study, label)
    ax = fig.add_subplot()
    evaluated = [r for r in records if r.get("status") != "invalid"]
    xs, ys, best, best_xs, best_ys = [], [], math.inf, [], []
    for i, r in enumerate(evaluated, start=1):
        if r.get("status") == "ok" and _pos(r.get("latency_ms")):
            xs.append(i)
            ys.append(r["latency_ms"])
            best = min(best, r["latency_ms"])
        if best < math.inf:
            best_xs.append(i)
            best_ys.append(best)
    ax.scatter(xs, ys, s=18, color=STATUS_COLORS["ok"], alpha=0.6, label="ok candidate (p50)")
    if best_xs:
        ax.step(best_xs, best_ys, where="post", color="black", lw=1.6, label="best so far")
    # Failures have no latency: a rug of markers along the bottom shows when they happened.
    for status in STATUSES[2:]:
        fx = [i for i, r in enumerate(evaluated, start=1) if r.get("status") == status]
        if fx:
            ax.scatter(fx, [0.03] * len(fx), transform=ax.get_xaxis_transform(), marker="x",
                       s=24, color=STATUS_COLORS[status], label=f"{status} ({len(fx)})")
    rejected = len(records) - len(evaluated)
    if rejected:  # an invisible handle: the count belongs in the legend
        ax.plot([], [], " ", label=f"invalid, not evaluated: {rejected}")
    if ys and max(ys) / min(ys) > 10:
        ax.set_yscale("log")
    ax.set_xlim(0.5, max(len(evaluated), 1) + 0.5)  # the rug's transform does not autoscale x
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("evaluated candidate number (journal order)")
    ax.set_ylabel("latency p50 (ms)")
    ax.grid(alpha=0.3)
    if not ys:
        ax.text(0.5, 0.5, "no correct candidate: nothing to converge on", ha="center",
                transform=ax.transAxes)
    ax.legend(fontsize=7, loc="best")  # "best": never over the points it explains
    return _png(fig)


def _rebuilt_study(ok: list[dict]):
    """An Optuna study holding the correct candidates (value = latency), with distributions
    inferred from the values seen: integers as ordered ranges, anything else as categories.
    Parameters that never varied are left out (their importance is undefined)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    names = sorted({k for r in ok for k in r.get("config", {})})
    dists = {}
    for name in names:
        vals = [r["config"].get(name) for r in ok]
        distinct = sorted(set(vals), key=repr)
        if len(distinct) < 2 or any(v is None for v in vals):
            continue
        if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            dists[name] = IntDistribution(min(vals), max(vals))
        else:
            dists[name] = CategoricalDistribution(tuple(distinct))
    study = optuna.create_study(direction="minimize")
    study.add_trials([optuna.trial.create_trial(
        params={k: r["config"][k] for k in dists}, distributions=dists, value=float(r["latency_ms"]))
        for r in ok])
    return study, dists


def param_importances(records: list[dict]) -> tuple[dict[str, float] | None, str]:
    """(importances, "") or (None, why not)."""
    import optuna

    # the Triton candidates' parameters: a GEMM's vendor path has none of them
    ok = [r for r in _ok(records) if not is_vendor_record(r)]
    if len(ok) < MIN_OK_FOR_IMPORTANCE:
        return None, (f"needs at least {MIN_OK_FOR_IMPORTANCE} correct candidates; "
                      f"this study has {len(ok)}")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a "study created" line per plot
    try:
        study, dists = _rebuilt_study(ok)
        if not dists:
            return None, "no parameter took two different values among the correct candidates"
        evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=16, seed=0)  # seeded: reproducible; 16 trees (not 64): a study's plots are drawn while the sweep runs
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator)), ""
    except Exception as exc:  # e.g. every latency equal (no variance to split), unhashable values
        return None, f"Optuna could not compute importances ({type(exc).__name__}: {exc})"
    finally:
        optuna.logging.set_verbosity(verbosity)  # the driver's own Optuna logging is left as it was


def importance_figure(imps: dict[str, float] | None, why: str, study: str, label: str) -> bytes:
    fig = _figure(study, label, size=(8.0, 4.0))
    ax = fig.add_subplot()
    if imps is None:
        ax.axis("off")
        ax.text(0.5, 0.5, f"parameter importance not computed:\n{why}", ha="center", va="center",
                wrap=True)
        return _png(fig)
    names = list(imps)[::-1]  # most important on top
    ax.barh(names, [imps[n] for n in names], color="#457b9d")
    ax.set_xlabel("importance of latency p50 (Optuna fANOVA, correct candidates only; sums to 1)")
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def latency_by_status(records: list[dict], study: str, label: str) -> bytes:
    fig = _figure(study, label, size=(9.0, 4.2))
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.6))
    counts = Counter(r.get("status", "?") for r in records)
    names = [s for s in STATUSES if counts.get(s)] + sorted(set(counts) - set(STATUSES))
    bars = left.bar(range(len(names)), [counts[s] for s in names],
                    color=[STATUS_COLORS.get(s, "#555") for s in names])
    left.bar_label(bars, fontsize=8)
    left.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    left.set_ylabel("candidates")
    left.set_title("how candidates ended", fontsize=9)
    # Latency exists only where a candidate was timed (in practice: ok); p20-p80 as error bars.
    timed = [s for s in names if any(_pos(r.get("latency_ms")) for r in records if r.get("status") == s)]
    rng = random.Random(0)  # jitter, seeded: the same records draw the same figure
    for x, s in enumerate(timed):
        rs = [r for r in records if r.get("status") == s and _pos(r.get("latency_ms"))]
        ys = [r["latency_ms"] for r in rs]
        lo = [y - (r.get("latency_p20_ms") or y) for y, r in zip(ys, rs)]
        hi = [(r.get("latency_p80_ms") or y) - y for y, r in zip(ys, rs)]
        xs = [x + rng.uniform(-0.18, 0.18) for _ in ys]
        right.errorbar(xs, ys, yerr=[lo, hi], fmt="o", ms=4, alpha=0.7, elinewidth=0.8,
                       color=STATUS_COLORS.get(s, "#555"))
        right.boxplot([ys], positions=[x], widths=0.5, showfliers=False)
    right.set_xticks(range(len(timed)), timed)
    right.set_ylabel("latency p50 (ms), bars p20-p80")
    right.set_title("latency of timed candidates", fontsize=9)
    right.grid(axis="y", alpha=0.3)
    if not timed:
        right.text(0.5, 0.5, "no candidate was timed", ha="center", transform=right.transAxes)
    return _png(fig)


def draw_roofs(ax, xs: list[float], bw, peak, dtype) -> None:
    """The roofline's two roofs (bandwidth slope, compute ceiling) over a log grid spanning the
    points' intensities `xs` and the ridge; bw and peak are hardware ceilings or None."""
    lo, hi = min(xs) / 8, max(xs) * 8
    if bw is not None and peak is not None:
        ridge = peak.value / bw.value
        lo, hi = min(lo, ridge / 8), max(hi, ridge * 8)
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    if bw is not None:
        ax.plot(grid, [bw.value * x / 1e12 for x in grid], "--", color="#1d3557",
                label=f"bandwidth {bw.value / 1e12:.2f} TB/s ({bw.source})")
    if peak is not None:
        ax.plot(grid, [peak.value / 1e12] * len(grid), "-", color="#c1121f",
                label=f"{dtype} {peak.value / 1e12:.0f} TFLOP/s ({peak.source})")


def roofline(records: list[dict], study: str, hw: hardware.Hardware,
             dtype: str | None) -> tuple[bytes | None, str]:
    """(png, "") or (None, why it was skipped). Arithmetic intensity comes from each record's
    own figures (TFLOP/s over GB/s = the kernel's flops over its bytes moved)."""
    if hw.interpreter:
        return None, INTERPRETER_SKIP
    bw = hardware.ceiling_for(hw, "copy_bytes")
    peak = hardware.ceiling_for(hw, f"{dtype}_flops") if dtype else None
    pts = [(r["tflops"] * 1e3 / r["gbps"], r["tflops"]) for r in _ok(records)
           if _pos(r.get("tflops")) and _pos(r.get("gbps"))]
    if not pts:
        return None, "skipped: no correct candidate reported TFLOP/s and GB/s"
    if bw is None and peak is None:
        return None, f"skipped: hardware profile '{hw.name}' has no measured ceilings"
    fig = _figure(study, timing_label("gpu", hw.name), size=(8.0, 5.0))
    ax = fig.add_subplot()
    xs = [p[0] for p in pts]
    draw_roofs(ax, xs, bw, peak, dtype)
    ax.scatter(xs, [p[1] for p in pts], s=20, color=STATUS_COLORS["ok"], zorder=3,
               label=f"ok candidates ({len(pts)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (flop / byte moved)")
    ax.set_ylabel("TFLOP/s")
    if peak is None:
        ax.set_title(f"no {dtype} compute ceiling in profile '{hw.name}': bandwidth roof only", fontsize=8)
    ax.grid(which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig), ""


def render_study(records: list[dict], study: str, hw_name: str, timing: str,
                 dtype: str | None = None) -> tuple[dict[str, bytes], dict[str, str]]:
    """Every plot of a study: ({file name: PNG bytes}, {file name: why it is missing or a note})."""
    label = timing_label(timing, hw_name)
    imps, why = param_importances(records)
    pngs = {"convergence.png": convergence(records, study, label),
            "param_importance.png": importance_figure(imps, why, study, label),
            "latency_by_status.png": latency_by_status(records, study, label)}
    notes = {} if imps is not None else {"param_importance.png": f"drawn as a note: {why}"}
    hw = hardware.PROFILES.get(hw_name)
    if timing == "interpreter":  # the record's own label wins over the profile
        notes["roofline.png"] = INTERPRETER_SKIP
    elif hw is None:
        notes["roofline.png"] = f"skipped: unknown hardware profile '{hw_name}'"
    else:
        png, why = roofline(records, study, hw, dtype)
        if png is None:
            notes["roofline.png"] = why
        else:
            pngs["roofline.png"] = png
    return pngs, notes


def warm_up() -> None:
    """What a process pays once before its first study's plots: Optuna's importance module, and
    matplotlib's first figure (its font cache and text layout): ~1.3 s on the CPU box where a
    warm process draws a study's four plots in ~0.4 s (tuner/review/plotter.py)."""
    import importlib

    importlib.import_module("optuna.importance")  # for its import's cost, paid here

    fig = _figure("warm-up", "warm-up", size=(2.0, 1.5))
    fig.add_subplot().plot([0, 1], [1, 0])
    _png(fig)


def render_safely(records: list[dict], study: str, hardware: str, timing: str, dtype) -> tuple[dict, dict]:
    """render_study, with a failure to draw turned into a note instead of an exception."""
    try:
        return render_study(records, study, hardware, timing, dtype)
    except Exception as exc:
        return {}, {"error": f"plots failed to draw: {type(exc).__name__}: {exc}"}
