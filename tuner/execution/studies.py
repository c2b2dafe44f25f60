"""A study's pieces that the driver assembles: the configs it starts from, the enumeration of its
valid configs (a Ray task), and the summary written when it ends."""
from __future__ import annotations

from collections import Counter

from kernelevolve.tuner.records.journal import SweepState
from kernelevolve.tuner.records.schema import is_vendor_record
from kernelevolve.tuner.search.space import config_key


def summarize(records: list[dict], retimed: dict | None) -> dict:
    """The study's counts and two winners: `best`, the fastest correct candidate of any
    implementation (what the tuned table dispatches to: a GEMM's vendor path where it wins), and
    `best_triton`, the fastest correct Triton kernel (the same record where Triton wins; None
    where no Triton candidate is correct). Reports show both, so the one is never taken for the
    other. A config whose re-timed calls the judge found wrong is never best, though its own
    evaluation passed (it cheats only sometimes)."""
    counts = Counter(r["status"] for r in records)
    wrong = [r["config"] for r in (retimed or {}).get("rows") or [] if r.get("status", "ok") != "ok"]
    ok = sorted((r for r in records if r["status"] == "ok" and r["config"] not in wrong),
                key=lambda r: r["latency_ms"])
    rows = [r for r in (retimed or {}).get("rows") or [] if r.get("status", "ok") == "ok"]
    triton = [r for r in ok if not is_vendor_record(r)]
    triton_rows = [row for row in rows if any(r["config"] == row["config"] for r in triton)]
    return {"counts": dict(counts), "best": _best(ok, rows, retimed),
            "best_triton": _best(triton, triton_rows, retimed), "retime": retimed}


def _best(ok: list[dict], rows: list[dict], retimed: dict | None) -> dict | None:
    """The fastest of `ok` (sorted by their own latency): by its re-timing where the re-timing
    measured it, else by its sweep measurement (marked so)."""
    if retimed and retimed.get("status") == "ok" and rows:
        row = min(rows, key=lambda r: r["latency_ms"])
        match = next(r for r in ok if r["config"] == row["config"])
        return {**match, **{k: v for k, v in row.items() if k != "rounds_ms"},
                "baseline_ms": retimed.get("baseline_ms"), "measured_by": "retime_interleaved"}
    if ok:
        return {**ok[0], "measured_by": "sweep"}
    return None


def retime_finalists(records: list[dict], top_k: int) -> list[dict]:
    """The correct candidates re-timed at the end of a study: its top-k, plus its fastest Triton
    candidate where the top-k holds none (a vendor path among them): the two winners a report
    sets side by side are then measured in the same interleaved rounds. And every correct vendor
    candidate the top-k left out: whether the dispatch beats the vendor library is then decided
    in those rounds, not by the screening's single measurements (one screening can put cuBLAS
    fourth on a shape of a few microseconds where the re-timing puts it first)."""
    ok = sorted((r for r in records if r["status"] == "ok"), key=lambda r: r["latency_ms"])
    top = ok[:top_k]
    if top and all(is_vendor_record(r) for r in top):
        top += [r for r in ok if not is_vendor_record(r)][:1]
    vendor = {}  # the fastest correct record of each vendor config (ok is sorted)
    for r in filter(is_vendor_record, ok):
        vendor.setdefault(config_key(r["config"]), r)
    return top + [r for r in vendor.values() if not any(t["config"] == r["config"] for t in top)]


def _start_points(study, state: SweepState, log) -> tuple[list[dict], dict | None]:
    """The configs evaluated first: the study's own (the kernel entry's start_points, the search's,
    the kernel's generic ones with search.kernel_starts: Study.start_points), then the warm start's
    (chosen once per study and kept in the sweep state, so that a resumed study enqueues the same
    ones). Returns them and the warm start's record (None without one)."""
    s = study.experiment.search
    points = list(study.start_points)
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

