"""The GEMM suite's table: ratios, geomeans, the markdown, and the merge of several shards' JSONs.

Rows (dicts, one per shape and implementation) come from benchmarks/gemm_suite.py; this module
only reads them, so `python benchmarks/gemm_suite.py --merge a.json b.json ... --out DIR` can
rebuild one table from the shards of a run (each shard one device call).

Ours is the study's winner ("ours"; where the candidates' records carry an implementation, impl
= triton or vendor, the winner is the dispatched one: the fastest of both, and "ours best Triton"
is the fastest Triton candidate, launched and timed on its own). Every geomean is of throughput
ratios, ours / peer, over the shapes where both have a verified timing.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from kernelevolve.tuner.measure.clocks import SHORT_KERNEL_US

OURS, BEST_TRITON = "ours", "ours best Triton"
SECTION_ORDER = {"gemm": 0, "fused": 1, "conv": 2}
# A row whose 80th-percentile repetition took this much longer than its 20th is flagged: its p50
# may be either mode (the padded cuBLAS of 62087x309x1672 bf16 on the H200 came out p20 0.166,
# p50 0.420 ms under `clean`, where do_bench in the same process gave 0.169 ms: the host's launch
# cost leaking into the events, which the event clocks' lead keeps out since: tuner/measure/host_lead.py).
UNSTEADY = 1.5


def unsteady(r: dict) -> str:
    """A note where the row's repetitions split (UNSTEADY), else ''."""
    p20, p80 = r.get("latency_p20_ms"), r.get("latency_p80_ms")
    if not p20 or not p80 or p80 / p20 < UNSTEADY:
        return ""
    return f"unsteady: p80 {p80 / p20:.1f}x p20; "


def add_ratios(rows: list[dict]) -> None:
    """ratio = our TFLOP/s over each peer's, on the ours rows of each shape (vs: {peer: ratio})."""
    for r in rows:
        if r["impl"] not in (OURS, BEST_TRITON) or "tflops" not in r or not r.get("verified"):
            continue
        r["vs"] = {p["impl"]: r["tflops"] / p["tflops"] for p in rows
                   if p["shape"] == r["shape"] and p["impl"] not in (OURS, BEST_TRITON) and "tflops" in p
                   and p.get("verified")}


def best_triton_rows(rows: list[dict]) -> dict[str, dict]:
    """shape -> the row of its best Triton config: the 'ours best Triton' row, or the ours row
    itself when the dispatched winner is Triton. Empty when no record carried an impl."""
    if not any(r.get("dispatched_impl") for r in rows):
        return {}
    out = {}
    for r in rows:
        if r["impl"] == BEST_TRITON or (r["impl"] == OURS and r.get("dispatched_impl") in ("triton", None)):
            out.setdefault(r["shape"], r)
    return out


def geomeans(rows: list[dict]) -> list[dict]:
    """[{section, ours, peer, geomean, n}]: ours / peer throughput over the section's shapes, for
    the dispatched winner and (where impl is recorded) the best Triton config."""
    out = []
    views = [(OURS, {r["shape"]: r for r in rows if r["impl"] == OURS})]
    bt = best_triton_rows(rows)
    if bt:
        views.append((BEST_TRITON, bt))
    for section in sorted({r["section"] for r in rows}, key=lambda s: SECTION_ORDER.get(s, 9)):
        peers = []
        for r in rows:
            if r["section"] == section and r["impl"] not in (OURS, BEST_TRITON) and r["impl"] not in peers:
                peers.append(r["impl"])
        for name, by_shape in views:
            for peer in peers:
                ratios = []
                for p in rows:
                    o = by_shape.get(p["shape"])
                    if (p["section"] == section and p["impl"] == peer and o is not None and p.get("verified")
                            and o.get("verified") and "tflops" in p and "tflops" in o):
                        ratios.append(o["tflops"] / p["tflops"])
                if ratios:
                    out.append({"section": section, "ours": name, "peer": peer, "n": len(ratios),
                                "geomean": math.exp(sum(map(math.log, ratios)) / len(ratios))})
    return out


def tuning_totals(rows: list[dict]) -> list[dict]:
    """Per section and impl: shapes, tuning wall time summed, candidates summed (where known)."""
    acc: dict = {}
    for r in rows:
        key = (r["section"], r["impl"])
        a = acc.setdefault(key, {"section": r["section"], "impl": r["impl"], "shapes": 0, "tuning_s": 0.0,
                                 "candidates": 0, "candidates_known": 0})
        a["shapes"] += 1
        a["tuning_s"] += r.get("tuning_s") or 0.0
        if r.get("candidates") is not None:
            a["candidates"] += r["candidates"]
            a["candidates_known"] += 1
    return sorted(acc.values(), key=lambda a: (SECTION_ORDER.get(a["section"], 9), a["impl"] != OURS))


def helion_check(rows: list[dict], metas: list[dict]) -> list[dict]:
    """Per shape with a verified Helion row: ours (the dispatched winner) against Helion's tuned
    kernel, and our tuning time against a fifth of Helion's, both by our study's wall (it overlaps
    the other studies of its shard) and amortised (its shard's sweep wall over its studies): the
    target "at least as fast, in at most a fifth of its tuning time"."""
    amortised = {str(m.get("shard", "1/1")): m["sweep_s"] / m["studies"] for m in metas
                 if m.get("studies") and m.get("sweep_s") is not None}
    ours = {r["shape"]: r for r in rows if r["impl"] == OURS and r.get("verified") and r.get("latency_ms")}
    out = []
    for h in rows:
        o = ours.get(h["shape"])
        if not h["impl"].startswith("Helion") or not h.get("verified") or not h.get("tuning_s") or o is None:
            continue
        fifth = h["tuning_s"] / 5
        wall, shared = o.get("tuning_s"), amortised.get(str(o.get("shard", "1/1")))
        faster = o["latency_ms"] <= h["latency_ms"]
        out.append({"shape": h["shape"], "ours_ms": o["latency_ms"], "helion_ms": h["latency_ms"],
                    "ratio": h["latency_ms"] / o["latency_ms"], "ours_wall_s": wall, "ours_amortised_s": shared,
                    "helion_s": h["tuning_s"], "fifth_s": fifth,
                    "holds_wall": faster and wall is not None and wall <= fifth,
                    "holds_amortised": faster and shared is not None and shared <= fifth})
    return out


def _f(r, k, f="{:.4f}"):
    return f.format(r[k]) if r.get(k) is not None else "-"


def _clock(r) -> str:
    """The clock that timed a row and where it came from (the study's, gemm_suite.study_clock)."""
    if not r.get("clock"):  # not run, or failed before its timing
        return "-"
    text = r["clock"]
    if r.get("clock_failed"):
        text += f" ({r['clock_failed']} failed here)"
    return text + (f"; {r['clock_from']}" if r.get("clock_from") else "")


def markdown(rows: list[dict], metas: list[dict]) -> str:
    m = next((x for x in metas if x.get("args")), metas[0])
    interp = m.get("target") == "cpu-interpreter"
    lines = [f"{'CPU INTERPRETER (wall clock; plumbing only, no performance result)' if interp else 'GPU: ' + str(m.get('gpu'))}"
             f" | torch {m.get('torch')} | triton {m.get('triton')} | helion {m.get('helion') or '-'} | "
             f"shapes: seed {m['args'].get('seed')}, {m['args'].get('shapes')} GEMM + {m['args'].get('fused')} fused "
             + ("(benchmarks/gemm_shapes.py) | clock `wall`" if interp else
                f"(benchmarks/gemm_shapes.py) | clock `{m['args'].get('clock')}`"
                + (" (per study, fixed before its search: `cudagraph` where the shape's roofline time is under "
                   f"{SHORT_KERNEL_US:g} us, else `clean`)" if m['args'].get('clock') == "auto" else "")
                + "; each row by its study's clock, ours and peers alike (column clock: which, and why)"),
             "shards: " + "; ".join(f"{x.get('shard', '1/1')}: sweep {x.get('sweep_s', 0):.0f} s, wall "
                                    f"{x.get('wall_s', 0):.0f} s, {x.get('studies', '?')} studies, MLflow "
                                    f"{x.get('mlflow_db')}" for x in metas),
             "tuning s: ours = the study's wall time in its shard's sweep (the studies of a shard run at once, "
             "so these overlap; the sweep's wall over its studies is the cost per shape); torch.compile = its "
             "first call (fresh dynamo); triton autotune = its first call; Helion = its autotune() call. "
             "candidates: ours = configs evaluated (verified or not); autotune = its config list; "
             "torch.compile = choices it precompiled (inductor counter); Helion = configs its search tested.",
             "",
             "| section | shape | impl | clock | p20 ms | p50 ms | p80 ms | TFLOP/s | tuning s | candidates | "
             "ours tuning s | ours candidates | ours vs this | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    by_shape_ours = {r["shape"]: r for r in rows if r["impl"] == OURS}
    for r in rows:
        o = by_shape_ours.get(r["shape"], {})
        vs = "-"
        if r["impl"] not in (OURS, BEST_TRITON) and r["impl"] in o.get("vs", {}):
            vs = f"{o['vs'][r['impl']]:.2f}x"
        note = r.get("error") or ""
        if not note and r.get("config"):
            note = json.dumps(r["config"], sort_keys=True) if isinstance(r["config"], dict) else str(r["config"])
        if r["impl"] == BEST_TRITON and r.get("vs"):
            note = "best Triton vs " + ", ".join(f"{k} {v:.2f}x" for k, v in r["vs"].items()) + "; " + note
        if r.get("dispatched_impl"):
            note = f"dispatched: {r['dispatched_impl']}; " + note
        if r["impl"] == OURS and r.get("parent_run_id"):
            note = f"run {r['parent_run_id']}; " + note
        if "events_ms" in r:
            note = f"CUDA graphs; event p50 {r['events_ms']:.4f} ms, host {r['host_us']:.0f} us/call; " + note
        elif "do_bench_ms" in r:
            note = f"do_bench p50 {r['do_bench_ms']:.4f} ms; " + note
        note = unsteady(r) + note
        cand = r.get("candidates")
        lines.append(f"| {r['section']} | {r['shape']} | {r['impl']} | {_clock(r).replace('|', '/')} | "
                     f"{_f(r, 'latency_p20_ms')} | "
                     f"{_f(r, 'latency_ms')} | {_f(r, 'latency_p80_ms')} | {_f(r, 'tflops', '{:.1f}')} | "
                     f"{_f(r, 'tuning_s', '{:.1f}')} | {cand if cand is not None else '-'} | "
                     f"{_f(r, 'ours_tuning_s', '{:.1f}')} | {r.get('ours_candidates', '-')} | {vs} | "
                     f"{note.replace('|', '/')[:400]} |")
    lines += ["", "| geomean over | ours | peer | shapes | ours / peer (throughput) |", "| --- | --- | --- | --- | --- |"]
    for g in geomeans(rows):
        lines.append(f"| {g['section']} | {g['ours']} | {g['peer']} | {g['n']} | **{g['geomean']:.3f}x** |")
    lines += ["", "| tuning, summed over | impl | shapes | tuning s | candidates |", "| --- | --- | --- | --- | --- |"]
    for t in tuning_totals(rows):
        c = f"{t['candidates']} ({t['candidates_known']} shapes)" if t["candidates_known"] else "-"
        lines.append(f"| {t['section']} | {t['impl']} | {t['shapes']} | {t['tuning_s']:.1f} | {c} |")
    checks = helion_check(rows, metas)
    if checks:
        lines += ["", "| Helion shape | ours ms | Helion ms | ours / Helion (speed) | our study wall s | ours amortised s "
                  "| Helion tuning s | as fast in a fifth of its time (wall / amortised) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for c in checks:
            lines.append(f"| {c['shape']} | {c['ours_ms']:.4f} | {c['helion_ms']:.4f} | {c['ratio']:.2f}x | "
                         f"{_f(c, 'ours_wall_s', '{:.1f}')} | {_f(c, 'ours_amortised_s', '{:.1f}')} | "
                         f"{c['helion_s']:.1f} | {'yes' if c['holds_wall'] else 'no'} / "
                         f"{'yes' if c['holds_amortised'] else 'no'} |")
        lines.append(f"\nHelion, at least as fast in at most a fifth of its tuning time: "
                     f"{sum(c['holds_wall'] for c in checks)} of {len(checks)} shapes by our study's wall, "
                     f"{sum(c['holds_amortised'] for c in checks)} of {len(checks)} amortised.")
    sweeps = sum(x.get("sweep_s", 0) for x in metas)
    studies = sum(x.get("studies", 0) for x in metas)
    if studies:
        lines.append(f"\nours, amortized: the sweeps' wall {sweeps:.0f} s over {studies} studies = "
                     f"{sweeps / studies:.1f} s per shape (the studies of a shard run at once).")
    return "\n".join(lines)


def order(rows: list[dict]) -> list[dict]:
    impl_rank = lambda r: 0 if r["impl"] == OURS else 1 if r["impl"] == BEST_TRITON else 2  # noqa: E731
    return sorted(rows, key=lambda r: (SECTION_ORDER.get(r["section"], 9), r.get("index", 0), impl_rank(r)))


def write(out: Path, rows: list[dict], metas: list[dict], stem: str = "gemm_suite") -> str:
    rows = order(rows)
    add_ratios(rows)
    table = markdown(rows, metas)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(table + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"meta": metas[0] if len(metas) == 1 else {"shards": metas},
                                                  "geomeans": geomeans(rows), "tuning": tuning_totals(rows),
                                                  "rows": rows}, indent=1, default=str))
    return table


def load(path: str) -> tuple[list[dict], list[dict]]:
    """(rows, metas) of a suite JSON (one shard's, or a merge's), or of a shard's .partial.json (its
    rows so far: the shapes a shard cut short by its time limit had finished)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        shard = next((r.get("shard") for r in data if r.get("shard")), "?")
        return data, [{"shard": f"{shard} (partial: {Path(path).name})", "args": {}}]
    meta = data.get("meta") or {}
    return data.get("rows", []), meta.get("shards") or [meta]


def merge(paths: list[str], out: Path) -> str:
    """One table of several shards' JSONs. A shape found in two inputs is kept once (the first)."""
    rows, metas, seen = [], [], set()
    for p in paths:
        r, m = load(p)
        metas += m
        for row in r:
            key = (row["section"], row["shape"], row["impl"])
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return write(out, rows, metas)
