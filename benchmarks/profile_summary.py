"""What benchmarks/profile_suite.py reports, computed from records only (no GPU, no engine run):

  finalist_rows(runs)     every profiled finalist of an exported MLflow store (export_runs.py's
                          run dicts): study, config, latency, label, roofline position, whether the
                          two agree, and for a disagreement the counters that explain it
  agreement(rows)         how many labels agree with the roofline (the target of docs/benchmarks.md:
                          at least 90% of finalists)
  not_profiled(runs)      finalists the sweep could not profile, with the reason it logged
  steering_rows(...)      candidates until a config within 2% of the best latency either arm found,
                          steer off against steer on, per study and seed
  markdown(result)        the tables of docs/benchmarks.md's section

The label rules and the roofline check are the product's (tuner.profile.bottleneck), applied to
the counters as MLflow holds them, so the summary says what `kernelevolve report` would.
"""
from __future__ import annotations

import statistics

from kernelevolve.tuner.profile import bottleneck

AGREEMENT_TARGET = 0.90
# the counters a disagreement is read from: which unit was busy, how much of it reached DRAM, and
# what the SM was waiting on
EXPLAINING = ("ncu_memory_pct", "ncu_dram_bw_pct", "ncu_l2_bw_pct", "ncu_l1_bw_pct", "ncu_dram_pct",
              "ncu_l2_hit_pct", "ncu_sm_pct", "ncu_tensor_pct",
              "ncu_occupancy_pct", "ncu_kernel_share", "ncu_intensity", "ncu_tflops", "ncu_dram_gbps",
              "ncu_top_stalls")
WITHIN = 1.02  # "within 2% of the best"


def _counters(run: dict) -> dict:
    """A candidate run's profile fields, metrics and tags together, as the label rules read them."""
    return {**run.get("metrics", {}), **run.get("tags", {})}


def _hardware(parent: dict):
    from kernelevolve.tuner.experiment import hardware

    return hardware.PROFILES.get(parent.get("tags", {}).get("hardware", ""))


def ridge(hw, dtype: str | None) -> float | None:
    """flop per DRAM byte where the roofline's bandwidth and compute roofs meet."""
    from kernelevolve.tuner.experiment.hardware import ceiling_for

    if hw is None or not dtype:
        return None
    bw, peak = ceiling_for(hw, "copy_bytes"), ceiling_for(hw, f"{dtype}_flops")
    return peak.value / bw.value if bw and peak else None


def _pct(v) -> str:
    return f"{v:.0f}%" if isinstance(v, (int, float)) else "n/a"


def why_disagrees(label: str, c: dict, side: str, frac: float | None) -> str:
    """The reading of the counters that explains a label the roofline position contradicts. The
    roofline sees flops and each memory level's bytes; the rules see every unit's % of its nominal
    peak: each case names what one counts and the other does not."""
    sol = bottleneck.SOL_BOUND_PCT
    mem, dram, sm = c.get("ncu_memory_pct"), c.get("ncu_dram_pct"), c.get("ncu_sm_pct")
    level = bottleneck.busiest_level(c)
    if label == "memory-bound" and side == "compute":
        if level is None and dram is not None and dram < sol:
            return (f"the busy memory unit is on-chip (memory {_pct(mem)}, DRAM {_pct(dram)}, L2 hit "
                    f"{_pct(c.get('ncu_l2_hit_pct'))}) and this record has no L2/L1 bytes (captured "
                    "before the levels were read): a roofline of DRAM bytes does not count it")
        name = bottleneck.LEVEL_NAMES[level[0]] if level else "DRAM"
        return (f"{name} moved {_pct(level[1] if level else dram)} of its peak bandwidth, at least as much as "
                f"the SM's busiest unit used (SM {_pct(sm)}, tensor pipe {_pct(c.get('ncu_tensor_pct'))}), "
                "while the flops at the dtype's measured compute ceiling need longer than those bytes at "
                "the level's nominal peak: the two peaks are of different kinds")
    if label == "compute-bound" and side == "memory":
        compute = max(sm or 0.0, c.get("ncu_tensor_pct") or 0.0)
        if level and level[1] >= sol:
            return (f"at two roofs at once: {bottleneck.LEVEL_NAMES[level[0]]} moved {_pct(level[1])} of its "
                    f"peak bandwidth and the SM's busiest unit ran at {_pct(compute)} (SM {_pct(sm)}, tensor "
                    f"pipe {_pct(c.get('ncu_tensor_pct'))}): the rule names the busier unit, by "
                    f"{compute - level[1]:.1f} points; the roofline the lower roof, at the dtype's measured "
                    "compute ceiling")
        return (f"the SM is busy (SM {_pct(sm)}, tensor pipe {_pct(c.get('ncu_tensor_pct'))}) with work the "
                "roofline's flop count leaves out (address math, exp, reductions, data movement "
                "through registers): its position comes from the kernel's nominal flops only")
    if label == "launch-bound" and frac is not None:
        return (f"the kernels alone reach {frac:.0%} of the roof, but they ran only "
                f"{_pct(100 * c['ncu_kernel_share'] if 'ncu_kernel_share' in c else None)} of the measured "
                "call: the roofline point uses the kernels' GPU time, the label the whole call")
    if label == "latency-bound" and frac is not None:
        return (f"{frac:.0%} of the roof at its intensities while no unit reaches {sol:.0f}% of its own "
                f"nominal peak (memory levels {_pct(level[1] if level else mem)}, SM {_pct(sm)}, tensor pipe "
                f"{_pct(c.get('ncu_tensor_pct'))}): the compute roof is the dtype's measured ceiling "
                "(cuBLAS's best), under the tensor pipe's nominal peak")
    return "no reading of the counters explains it; open the .ncu-rep under profile/ of the run"


def finalist_rows(runs: list[dict]) -> list[dict]:
    """One row per profiled candidate run (tag `bottleneck`) of an exported store, in study order,
    fastest first within a study."""
    parents = {r["run_id"]: r for r in runs if r.get("tags", {}).get("kernelevolve.role") == "study"}
    rows = []
    for run in runs:
        parent = parents.get(run.get("parent_run_id"))
        label = run.get("tags", {}).get("bottleneck")
        if parent is None or not label:
            continue
        c = _counters(run)
        hw, dtype = _hardware(parent), parent.get("params", {}).get("problem.dtype")
        side = bottleneck.roofline_side(c, hw, dtype) if hw else None
        roof = bottleneck.binding_roof(c, hw, dtype) if hw else None
        frac = bottleneck.roof_fraction(c, hw, dtype) if hw else None
        agrees = bottleneck.agrees_with_roofline(label, c, hw, dtype) if hw else None
        rows.append({
            "experiment": run.get("experiment"), "study": parent["tags"].get("kernelevolve.study", parent["run_id"]),
            "parent_run_id": parent["run_id"], "run_id": run["run_id"],
            "candidate_id": run["tags"].get("candidate_id", ""), "impl": run["tags"].get("impl", "triton"),
            "config": run.get("params", {}),
            "latency_ms": c.get("profile_latency_ms") or c.get("latency_ms"),
            "label": label, "reason": run["tags"].get("bottleneck_reason", ""),
            "roofline_side": side, "roof": roof, "ridge": ridge(hw, dtype), "roof_fraction": frac, "agrees": agrees,
            "counters": {k: c[k] for k in EXPLAINING if k in c},
            "why": why_disagrees(label, c, side, frac) if agrees is False else "",
        })
    rows.sort(key=lambda r: (r["study"], r["latency_ms"] if r["latency_ms"] is not None else float("inf")))
    return rows


def not_profiled(runs: list[dict]) -> list[dict]:
    """Finalists the sweep could not profile, from each study run's `profile_notes` tag."""
    out = []
    for run in runs:
        tags = run.get("tags", {})
        if tags.get("kernelevolve.role") != "study" or not tags.get("profile_notes"):
            continue
        for note in tags["profile_notes"].split(" | "):
            if ": not profiled: " in note:
                cid, why = note.split(": not profiled: ", 1)
                out.append({"study": tags.get("kernelevolve.study", run["run_id"]), "candidate_id": cid,
                            "why": why})
    return out


def agreement(rows: list[dict]) -> dict:
    """Labels that agree with the roofline position: over the finalists that have one (the target's
    measure) and over all profiled finalists (a finalist without flops has no position)."""
    placed = [r for r in rows if r["agrees"] is not None]
    agree = sum(1 for r in placed if r["agrees"])
    pct = agree / len(placed) if placed else None
    return {"profiled": len(rows), "with_position": len(placed), "agree": agree,
            "disagree": len(placed) - agree, "no_position": len(rows) - len(placed),
            "pct_of_placed": pct, "pct_of_profiled": agree / len(rows) if rows else None,
            "target": AGREEMENT_TARGET, "met": pct is not None and pct >= AGREEMENT_TARGET,
            "labels": dict(sorted({r["label"]: sum(1 for x in rows if x["label"] == r["label"])
                                   for r in rows}.items()))}


# ---- steering: candidates to within 2% of the best -------------------------------------------------
def searched(records: list[dict]) -> list[dict]:
    """The records a sampler chose, in the order they were evaluated: the vendor path is evaluated
    first in every GEMM study, outside the search (search_spaces/matmul.py), and invalid configs
    never ran."""
    from kernelevolve.tuner.records.schema import is_vendor_record

    return [r for r in records if r.get("status") != "invalid" and not is_vendor_record(r)]


def pooled_latency(arms: list[dict]) -> dict:
    """config key -> the fastest correct latency any arm measured for it. Both arms of a seed
    propose the same configs until steering's first proposal; each config's screening latency
    varies by a few % between measurements, so read per arm it would make "within 2%" differ
    between identical searches. Pooled, the arms differ only by the configs they evaluated."""
    from kernelevolve.tuner.search.space import config_key

    best: dict = {}
    for arm in arms:
        for r in searched(arm["records"]):
            if r.get("status") == "ok":
                key = config_key(r["config"])
                best[key] = min(best.get(key, r["latency_ms"]), r["latency_ms"])
    return best


def candidates_to(records: list[dict], best_ms: float, latency: dict) -> int | None:
    """1-based position of the first searched candidate whose pooled latency is within WITHIN x
    best_ms (None: never)."""
    from kernelevolve.tuner.search.space import config_key

    for i, r in enumerate(searched(records), 1):
        if r.get("status") == "ok" and latency[config_key(r["config"])] <= WITHIN * best_ms:
            return i
    return None


def steering_rows(arms: dict) -> list[dict]:
    """`arms`: {(study, seed, steer): {"records": [...], "steered": n, ...}}. One row per study and
    seed with both arms: candidates until within 2% of the best latency either arm found."""
    rows = []
    for study, seed in sorted({(k[0], k[1]) for k in arms}):
        off, on = arms.get((study, seed, False)), arms.get((study, seed, True))
        if off is None or on is None:
            continue
        latency = pooled_latency([off, on])
        if not latency:
            continue
        best = min(latency.values())
        rows.append({"study": study, "seed": seed, "best_ms": best,
                     "off": candidates_to(off["records"], best, latency),
                     "on": candidates_to(on["records"], best, latency),
                     "searched_off": len(searched(off["records"])),
                     "searched_on": len(searched(on["records"])), "steered": on.get("steered", 0),
                     "steer_profiles": on.get("steer_profiles", 0),
                     "wall_s_off": off.get("wall_s"), "wall_s_on": on.get("wall_s")})
    return rows


def _count(n: int | None, budget: int) -> int:
    """A run that never came within 2% counts as one past its budget (as the replay's medians do)."""
    return n if n is not None else budget + 1


def steering_verdict(rows: list[dict]) -> dict:
    """Per study and overall: median candidates-to-2% off and on, and whether steering helps (fewer
    candidates on more seeds than it costs more, and a lower median). A seed where no steered
    config was evaluated is a tie whatever its counts: its arms differ only in completion order
    (the steer profile holds the GPU meanwhile), not by anything the rules proposed."""
    def verdict(rs):
        off = [_count(r["off"], r["searched_off"]) for r in rs]
        on = [_count(r["on"], r["searched_on"]) for r in rs]
        acted = [r["steered"] > 0 for r in rs]
        wins = sum(1 for a, b, x in zip(off, on, acted) if x and b < a)
        losses = sum(1 for a, b, x in zip(off, on, acted) if x and b > a)
        helps = wins > losses and statistics.median(on) < statistics.median(off)
        return {"seeds": len(rs), "median_off": statistics.median(off), "median_on": statistics.median(on),
                "fewer_with_steering": wins, "more_with_steering": losses, "ties": len(rs) - wins - losses,
                "steered_configs": sum(r["steered"] for r in rs), "seeds_steered": sum(acted), "helps": helps}
    studies = sorted({r["study"] for r in rows})
    return {"per_study": {s: verdict([r for r in rows if r["study"] == s]) for s in studies},
            "overall": verdict(rows) if rows else None,
            "keep_on_for": [s for s in studies if verdict([r for r in rows if r["study"] == s])["helps"]]}


# ---- markdown ----------------------------------------------------------------------------------
def _f(v, digits=3) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _config(cfg: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(cfg.items()))


def markdown(result: dict) -> str:
    lines = []
    prof = result.get("profile")
    if prof:
        a = prof["agreement"]
        pct = "-" if a["pct_of_placed"] is None else f"{a['pct_of_placed']:.0%}"
        lines += [f"## Finalists under Nsight Compute ({prof.get('device', '')})", "",
                  f"{a['profiled']} finalists profiled of {prof.get('expected', '?')} expected; labels "
                  f"{a['labels']}; agree with the roofline position: {a['agree']} of {a['with_position']} "
                  f"with a position (**{pct}**, target {a['target']:.0%}: {'met' if a['met'] else 'not met'}); "
                  f"{a['no_position']} without one (no flops or no ceiling for the dtype).", "",
                  "Roofline: the hierarchical roofline's lowest roof for the candidate (compute, or the "
                  "DRAM, L2 or L1 bytes at that level's peak); % of roof: achieved FLOP/s under it.", "",
                  "| study | candidate | impl | latency ms | label | roofline | % of roof | agrees | config |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in prof["rows"]:
            agrees = {True: "yes", False: "**no**", None: "-"}[r["agrees"]]
            frac = "-" if r["roof_fraction"] is None else f"{r['roof_fraction']:.0%}"
            lines.append(f"| {r['study']} | {r['candidate_id']} | {r['impl']} | {_f(r['latency_ms'], 4)} | "
                         f"{r['label']} | {r.get('roof') or r['roofline_side'] or '-'} | {frac} | {agrees} | "
                         f"`{_config(r['config'])}` |")
        bad = [r for r in prof["rows"] if r["agrees"] is False]
        if bad:
            lines += ["", "Where a label and the roofline disagree, and the counters that say why:", "",
                      "| study | candidate | label | roofline | counters | why |", "| --- | --- | --- | --- | --- | --- |"]
            for r in bad:
                counters = ", ".join(f"{k.removeprefix('ncu_')} {_f(v)}" for k, v in r["counters"].items())
                lines.append(f"| {r['study']} | {r['candidate_id']} | {r['label']} | {r.get('roof') or r['roofline_side']} "
                             f"(DRAM ridge {_f(r['ridge'])} flop/B) | {counters} | {r['why']} |")
        if prof.get("not_profiled"):
            lines += ["", "Not profiled:", ""] + [f"- {n['study']} {n['candidate_id']}: {n['why']}"
                                                   for n in prof["not_profiled"]]
    steer = result.get("steering")
    if steer:
        lines += ["", f"## Steering: candidates to within 2% of the best, off vs on ({steer.get('device', '')})", "",
                  steer.get("note", ""), "",
                  "| study | seed | best ms | off | on | steered configs evaluated | searched off / on | study wall s off / on |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in steer["rows"]:
            lines.append(f"| {r['study']} | {r['seed']} | {_f(r['best_ms'], 4)} | {_f(r['off']) if r['off'] else 'not reached'} "
                         f"| {_f(r['on']) if r['on'] else 'not reached'} | {r['steered']} | "
                         f"{r['searched_off']} / {r['searched_on']} | {_f(r.get('wall_s_off'))} / {_f(r.get('wall_s_on'))} |")
        v = steer["verdict"]
        if v["overall"]:
            lines += ["", "| study | seeds | median off | median on | fewer / more / same with steering | helps |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for s, x in list(v["per_study"].items()) + [("**all**", v["overall"])]:
                lines.append(f"| {s} | {x['seeds']} | {_f(x['median_off'])} | {_f(x['median_on'])} | "
                             f"{x['fewer_with_steering']} / {x['more_with_steering']} / {x['ties']} | "
                             f"{'yes' if x['helps'] else 'no'} |")
            lines += ["", f"Keep `steer: true` for: {', '.join(v['keep_on_for']) or 'none of these studies'}."]
        for s in steer.get("skipped", []):
            lines.append(f"- not run: {s}")
    return "\n".join(lines)
