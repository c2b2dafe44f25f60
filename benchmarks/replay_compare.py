"""Every registered sampler replayed on recorded spaces: candidates to within 2% of each space's oracle.

For each recorded space (tuner/records/recorded_space.py) and each sampler of the registry
(tuner/search/samplers.py; `auto`, which is tpe or learned by the space's size, only when named),
`--seeds` searches through tuner.search.replay (the sweep's ConstrainedSearch, answered from the
recording, one candidate in flight), and once more the
learned sampler with a prior: fit first on the other recorded spaces of the same kernel whose
problem differs (any GPU kind), never on the space searched nor on its problem on another GPU.

    python benchmarks/replay_compare.py benchmarks/data/recorded --seeds 20 \
        --out docs/results/replay_dev.json [--samplers tpe,random,learned] [--skip gp]

`--samplers learned+prior` replays the learned sampler with a prior alone (not without one).

Writes the JSON (every result, with regret curves) and a Markdown table beside it (.md): per
space, each sampler's median candidates to within 2% (p90 in brackets), and per sampler the
geometric mean over spaces of its median relative to TPE's, the median over spaces of its median
as % of the space, and on how many spaces it needed at most half TPE's median.
`--markdown-only --out FILE.json` rewrites the table from an earlier run's JSON. `--combine` merges
runs of other --seeds or --budget (a slow sampler replayed on shorter terms): each result keeps its
own, and such a sampler's column header and a note say which.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PRIOR = "learned+prior"


def datasets(paths: list[str]) -> list[str]:
    from kernelevolve.tuner.search import prior

    return [f for p in paths for f in prior.paths(p)]


def prior_for(space, every: list) -> list:
    """Other recorded spaces of the same kernel at another problem (any GPU kind): a sweep's prior
    (tuner.search.prior.prior_for), less the same problem on another GPU kind."""
    from kernelevolve.tuner.search import prior

    h = space.header
    return prior.prior_for(every, h["kernel"], h["problem"], h["hardware"], other_problems=True)


def label(space) -> str:
    """The space, its GPU and the sweep it came from (one study recorded by two sweeps: two rows)."""
    source = os.path.basename(space.header.get("source") or "").split(".")[0]
    return f"{space.name} ({space.header.get('gpu_name') or space.header['hardware']}; {source})"


def _values(vals) -> str:
    return "/".join(f"{v:g}" for v in sorted(set(vals)))


def own_terms(results: list[dict], samplers: list[str], meta: dict) -> dict[str, str]:
    """Samplers replayed with other seeds or another budget than the table's (`meta`: runs of
    several --seeds or --budget combined): each one's own, e.g. {"gp": "3 seeds, B=150"}."""
    out = {}
    for name in samplers:
        mine = [r for r in results if r["sampler"] == name]
        seeds = [r.get("seeds", meta["seeds"]) for r in mine]  # older rows (printed lines): the run's
        budgets = [r["budget"] for r in mine]
        usual = [min(meta.get("budget") or r["valid_configs"], r["valid_configs"]) for r in mine]
        terms = []
        if set(seeds) != {meta["seeds"]}:
            terms.append(f"{_values(seeds)} seed" + ("" if set(seeds) == {1} else "s"))
        if budgets != usual:
            terms.append(f"B={_values(budgets)}")
        if terms:
            out[name] = ", ".join(terms)
    return out


def markdown(results: list[dict], samplers: list[str], meta: dict) -> str:
    spaces = list(dict.fromkeys(r["label"] for r in results))
    cell = {(r["label"], r["sampler"]): r for r in results}
    own = own_terms(results, samplers, meta)
    budget = f"at most {meta['budget']} candidates per search (B)" if meta.get("budget") else \
        "at most the space's valid configs per search (B)"
    lines = [f"Replay of recorded spaces: median candidates to within {100 * meta['tolerance']:g}% of "
             f"the oracle (p90 in brackets), {meta['seeds']} seeds per sampler, {budget}, one candidate "
             "in flight. '>B': not reached within B candidates by at least half the seeds; the rows "
             "below count it as B + 1."]
    if own:
        lines.append("Replayed on other terms (the column's header says which; a '>B' of a smaller B "
                     "counts less in the rows below): " + "; ".join(f"{n}: {t}" for n, t in own.items()) + ".")
    lines += ["", "| space | configs | " + " | ".join(f"{n} ({own[n]})" if n in own else n for n in samplers) + " |",
              "| --- | --- | " + " | ".join("---" for _ in samplers) + " |"]
    for s in spaces:
        row = [s, str(next(r["valid_configs"] for r in results if r["label"] == s))]
        for name in samplers:
            r = cell.get((s, name))
            if r is None:
                row.append("-")
                continue
            med = f">{r['budget']}" if r["median"] > r["budget"] else f"{r['median']:g}"
            p90 = f">{r['budget']}" if r["p90"] > r["budget"] else f"{r['p90']:g}"
            row.append(f"{med} ({p90})")
        lines.append("| " + " | ".join(row) + " |")
    ratios = []
    for name in samplers:
        logs = [math.log(cell[(s, name)]["median"] / cell[(s, "tpe")]["median"]) for s in spaces
                if (s, name) in cell and (s, "tpe") in cell]
        ratios.append(f"{math.exp(sum(logs) / len(logs)):.2f}" if logs else "-")
    lines.append("| **geomean of median / TPE's** | | " + " | ".join(ratios) + " |")
    pct = []
    for name in samplers:
        vals = sorted(cell[(s, name)]["median_pct"] for s in spaces if (s, name) in cell)
        pct.append(f"{vals[len(vals) // 2]:.1f}%" if vals else "-")
    lines.append("| **median over spaces, % of the space** | | " + " | ".join(pct) + " |")
    halves = []
    for name in samplers:
        both = [s for s in spaces if (s, name) in cell and (s, "tpe") in cell]
        # a median past its own budget is no win, even where B + 1 is below half TPE's (a smaller B)
        wins = sum(cell[(s, name)]["median"] <= min(cell[(s, name)]["budget"], cell[(s, "tpe")]["median"] / 2)
                   for s in both)
        halves.append(f"{wins}/{len(both)}" if both else "-")
    lines.append("| **spaces with at most half TPE's median** | | " + " | ".join(halves) + " |")
    return "\n".join(lines) + "\n"


def write(path: str, results: list[dict], shown: list[str], meta: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "results": results}, fh, separators=(",", ":"))  # curves: compact
    with open(os.path.splitext(path)[0] + ".md", "w", encoding="utf-8") as fh:
        fh.write(markdown(results, shown, meta))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", help="recorded spaces, or folders of them")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--samplers", help="comma-separated (default: every registered sampler)")
    ap.add_argument("--skip", default="", help="comma-separated samplers left out (e.g. gp: slow on a CPU)")
    ap.add_argument("--out", required=True, help="JSON file (a .md table is written beside it)")
    ap.add_argument("--budget", type=int,
                    help="candidates per search at most (default: the space's valid configs); a median "
                         "past it shows as '>B'. Keeps a slow sampler's replay of a 2,000-config space short")
    ap.add_argument("--replay", default="",
                    help="comma-separated parts of space names to search (default: every space); the "
                         "others still give priors: spaces split across processes")
    ap.add_argument("--combine", nargs="+", metavar="JSON",
                    help="earlier runs' JSONs merged into --out (and its .md), replaying nothing; a sampler "
                         "replayed with other --seeds or --budget says so in its column's header")
    ap.add_argument("--markdown-only", action="store_true",
                    help="rewrite the .md table from an existing --out JSON, replaying nothing")
    args = ap.parse_args(argv)
    if args.combine:
        parts = []
        for path in args.combine:
            with open(path, encoding="utf-8") as fh:
                parts.append(json.load(fh))
        for p in parts:  # each result keeps its run's seeds: the table shows a sampler's own
            for r in p["results"]:
                r.setdefault("seeds", p["meta"]["seeds"])
        # the table's terms are those of the run with the most results; a space replayed by
        # several runs (other samplers) is listed once
        main_run = max(parts, key=lambda p: len(p["results"]))
        meta = {**main_run["meta"], "spaces": list(dict.fromkeys(s for p in parts for s in p["meta"]["spaces"]))}
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "results": [r for p in parts for r in p["results"]]}, fh, separators=(",", ":"))
        args.markdown_only = True
    if args.markdown_only:
        with open(args.out, encoding="utf-8") as fh:
            done = json.load(fh)
        shown = list(dict.fromkeys(r["sampler"] for r in done["results"]))
        with open(os.path.splitext(args.out)[0] + ".md", "w", encoding="utf-8") as fh:
            fh.write(markdown(done["results"], shown, done["meta"]))
        return 0
    from kernelevolve.tuner.records import recorded_space
    from kernelevolve.tuner.search import replay
    from kernelevolve.tuner.search.samplers import DISTINCT

    names = args.samplers.split(",") if args.samplers else list(DISTINCT)
    names = [n for n in names if n not in args.skip.split(",")]
    prior_only = PRIOR in names  # --samplers learned+prior: the prior's rows without learned's
    names = [n for n in names if n != PRIOR]
    every = [recorded_space.read(p) for p in datasets(args.paths)]
    searched = [s for s in every if not args.replay or any(part in s.name for part in args.replay.split(","))]
    skip = set(args.skip.split(","))
    meta = {"seeds": args.seeds, "tolerance": replay.TOLERANCE, "spaces": [label(s) for s in searched],
            "budget": args.budget}
    with_prior = ("learned" in names or prior_only) and PRIOR not in skip
    shown = names + ([PRIOR] if with_prior else [])
    results = []
    for space in searched:
        prior = prior_for(space, every)
        for name in names + ([PRIOR] if prior and with_prior else []):
            t0 = time.time()
            sampler = replay.with_prior(space, prior) if name == PRIOR else name
            r = replay.replay(space, sampler, args.seeds, budget=args.budget)
            r.update(sampler=name, label=label(space), wall_s=round(time.time() - t0, 1),
                     prior=[label(p) for p in prior] if name == PRIOR else None)
            results.append(r)
            print(f"{r['label']:<100} {name:<14} median {r['median']:>5g} p90 {r['p90']:>5g} "
                  f"of {r['valid_configs']}  ({r['wall_s']} s)", flush=True)
            write(args.out, results, shown, meta)  # after each: a run cut short keeps what it did
    print(f"-> {args.out} and {os.path.splitext(args.out)[0]}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
