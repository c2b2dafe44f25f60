"""A study's pieces that the driver assembles: the configs it starts from, the enumeration of its
valid configs (a Ray task), and the summary written when it ends."""
from __future__ import annotations

from collections import Counter

from kernelevolve.tuner.records.journal import SweepState


def summarize(records: list[dict], retimed: dict | None) -> dict:
    """The study's counts and best. A config whose re-timed calls the judge found wrong is never
    best, though its own evaluation passed (it cheats only sometimes)."""
    counts = Counter(r["status"] for r in records)
    wrong = [r["config"] for r in (retimed or {}).get("rows") or [] if r.get("status", "ok") != "ok"]
    ok = sorted((r for r in records if r["status"] == "ok" and r["config"] not in wrong),
                key=lambda r: r["latency_ms"])
    best = None
    rows = [r for r in (retimed or {}).get("rows") or [] if r.get("status", "ok") == "ok"]
    if retimed and retimed.get("status") == "ok" and rows:
        row = min(rows, key=lambda r: r["latency_ms"])
        match = next(r for r in ok if r["config"] == row["config"])
        best = {**match, **{k: v for k, v in row.items() if k != "rounds_ms"},
                "baseline_ms": retimed.get("baseline_ms"), "measured_by": "retime_interleaved"}
    elif ok:
        best = {**ok[0], "measured_by": "sweep"}
    return {"counts": dict(counts), "best": best, "retime": retimed}


def _start_points(study, state: SweepState, log) -> tuple[list[dict], dict | None]:
    """The configs evaluated first: the kernel entry's start_points, the search's, then the warm
    start's (chosen once per study and kept in the sweep state, so that a resumed study enqueues
    the same ones). Returns them and the warm start's record (None without one)."""
    s = study.experiment.search
    points = list(study.kernel_start_points)
    points += [p for p in s.start_points if p not in points]
    if not s.warm_start:
        return points, None
    if "warm_start" not in state.study(study.key):
        from kernelevolve.tuner.deploy.export import warm_start_points

        warm, entries = warm_start_points(s.warm_start, study)
        state.update(study.key, warm_start={"table": s.warm_start, "configs": warm, "entries": entries})
        log(f"  warm start: {len(warm)} configs from {s.warm_start} "
            f"({len(entries)} entries of this kernel, dtype and hardware)")
    record = state.study(study.key)["warm_start"]
    points += [p for p in record["configs"] if p not in points]
    return points, record

