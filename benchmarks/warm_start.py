"""Warm start: how many trials a GEMM sweep needs to come within 2% of the best, cold and warm.

For each pair (source shape -> target shape) of bf16 GEMMs on one GPU, three sweeps through
tuner.execution.sweep.run, in this process:
  source  TPE on the source shapes; the best configs exported (tuner.deploy.export) to a tuned table
  cold    TPE on the target shapes, from scratch
  warm    the same sweep, same seed, with `search: {warm_start: <that table>}`: the table's configs
          for the nearest shapes (same kernel, dtype, hardware) that the target's space accepts are
          evaluated first, then TPE goes on (having been told their results)
  prior   (with --prior PATH) the product's default sampler `auto` with `search: {prior: PATH}`:
          the learned sampler fit first on the recorded spaces of matmul at other shapes
          (tuner/search/prior.py never gives a study its own problem on its own GPU kind)
--arms picks which run (default: source,cold,warm, and prior with --prior; `cold,prior` needs no
source sweep). Each arm is one experiment holding all its shapes (one study per shape), so Ray
starts once.

Reported per target: trials to within 2% of the best Triton latency found by any arm (the
sampler's evaluated candidates in order: the vendor path and constraint-rejected proposals not
counted; at concurrency 1 the journal order
is the proposal order), each arm's best, and how many configs the table gave. Latencies are those
of the sweeps themselves (one do_bench each, L2 flushed); the two arms run minutes apart on the
same GPU. Each arm compiles into a fresh Triton cache, so no arm inherits another's compiles.

    python benchmarks/warm_start.py --out out/ [--samples 16] [--seeds 0] [--concurrency 1]
    python benchmarks/warm_start.py --out out/ --arms cold,prior --prior benchmarks/data/recorded/h100
    python benchmarks/warm_start.py --smoke --out out/   # CPU interpreter, one tiny pair: plumbing only
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# (source, target): a neighbouring shape in the same or the next power-of-two bucket
PAIRS = [
    ({"M": 4096, "N": 4096, "K": 4096}, {"M": 4096, "N": 4096, "K": 3072}),
    ({"M": 16384, "N": 1024, "K": 1024}, {"M": 8192, "N": 1024, "K": 1024}),
    ({"M": 2048, "N": 8192, "K": 2048}, {"M": 2048, "N": 6144, "K": 1024}),
]
SMOKE_PAIRS = [({"M": 48, "N": 40, "K": 56}, {"M": 40, "N": 48, "K": 60})]
WITHIN = 1.02


def sweep_arm(work: str, name: str, problems: list[dict], args, warm_table: str | None = None,
              prior: str | None = None) -> list[dict]:
    """One sweep of all `problems`; per study: its summary and its journaled records in order."""
    from kernelevolve.tuner.experiment import config
    from kernelevolve.tuner.execution import sweep
    from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate

    target = ({"name": "cpu-interpreter"} if args.smoke else
              {"name": args.target, "resources": {"CPU": 1, "GPU": round(1.0 / args.concurrency, 4)}})
    search = {"sampler": "tpe", "samples": args.samples, "concurrency": args.concurrency,
              "seed": args.seed, "timeout_s": 120, "top_k": 2}
    if warm_table:
        search["warm_start"] = warm_table
    if prior:
        search.update(sampler="auto", prior=prior)
    exp = {"name": name, "kernels": [{"kernel": "matmul", "problems": problems}], "targets": [target],
           "search": search, "timing": {"retime_rounds": 3},
           "tracking": {"uri": f"sqlite:///{os.path.join(work, 'mlflow.db')}"}}
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(exp, fh)
    # each arm compiles from scratch: a cache warmed by an earlier arm would flatter a later one
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"triton-cache-{name}-", dir=work)
    loaded = config.load(path)
    summaries = sweep.run(loaded, log=lambda m: None)
    state = SweepState.latest(sweep.state_root(name))
    out = []
    for study, summary in zip(loaded.studies(), summaries):
        records = unique_by_candidate(state.journal(sweep.slug(study.key)).records())
        out.append({"problem": study.problem.model_dump(), "summary": summary, "records": records,
                    "warm_start": state.study(study.key).get("warm_start")})
    return out


def searched(records: list[dict]) -> list[dict]:
    """The sampler's evaluated candidates, in order: not the vendor path (cuBLAS, evaluated first in
    every GEMM study and never a sampler's proposal), not a rejected proposal."""
    from kernelevolve.tuner.records.schema import is_vendor_record

    return [r for r in records if r["status"] != "invalid" and not is_vendor_record(r)]


def trials_to(records: list[dict], best_ms: float) -> int | None:
    """1-based index, among the sampler's evaluated candidates, of the first within WITHIN x best_ms."""
    evaluated = searched(records)
    for i, r in enumerate(evaluated, 1):
        if r["status"] == "ok" and r["latency_ms"] <= WITHIN * best_ms:
            return i
    return None


def compare(arms: dict[str, dict], source: dict | None) -> dict:
    """One target shape: each arm's trials to within 2% of the best that any arm found."""
    oks = [r["latency_ms"] for arm in arms.values() for r in searched(arm["records"]) if r["status"] == "ok"]
    best = min(oks) if oks else None

    def arm_row(arm):
        ok = [r["latency_ms"] for r in searched(arm["records"]) if r["status"] == "ok"]
        return {"trials_to_2pct": trials_to(arm["records"], best) if best else None,
                "evaluated": len(searched(arm["records"])),
                "best_ms": min(ok) if ok else None, "fit_s": arm["summary"].get("wall_s"),
                "retimed_best_ms": (arm["summary"].get("best") or {}).get("latency_ms"),
                "parent_run_id": arm["summary"].get("parent_run_id")}
    first = next(iter(arms.values()))
    ws = (arms.get("warm") or {}).get("warm_start") or {}
    gpu = next((r["gpu_name"] for arm in arms.values() for r in arm["records"] if r.get("gpu_name")), "")
    return {"target": first["problem"], "source": source["problem"] if source else None, "best_ms": best,
            "gpu_name": gpu, **{name: arm_row(arm) for name, arm in arms.items()},
            "warm_configs": len(ws.get("configs", [])), "table_entries": len(ws.get("entries", []))}


def run_seed(work: str, args, pairs) -> list[dict]:
    from kernelevolve.tuner.deploy import export

    dtype = "float16" if args.smoke else "bfloat16"
    sources = [dict(s, dtype=dtype) for s, _ in pairs]
    targets = [dict(t, dtype=dtype) for _, t in pairs]
    t0 = time.time()
    src, arms = [None] * len(targets), {}
    if "warm" in args.arms or "source" in args.arms:
        src = sweep_arm(work, f"ws-source-s{args.seed}", sources, args)
        table_path = os.path.join(work, f"tuned-s{args.seed}.json")
        export.write(export.build_table(f"sqlite:///{os.path.join(work, 'mlflow.db')}", f"ws-source-s{args.seed}"),
                     table_path)
    if "cold" in args.arms:
        arms["cold"] = sweep_arm(work, f"ws-cold-s{args.seed}", targets, args)
    if "warm" in args.arms:
        arms["warm"] = sweep_arm(work, f"ws-warm-s{args.seed}", targets, args, warm_table=table_path)
    if "prior" in args.arms:
        arms["prior"] = sweep_arm(work, f"ws-prior-s{args.seed}", targets, args, prior=args.prior)
    rows = [dict(compare({n: a[i] for n, a in arms.items()}, src[i]), seed=args.seed) for i in range(len(targets))]
    print(f"seed {args.seed}: {time.time() - t0:.0f} s", flush=True)
    return rows


def _n(v) -> str:
    return "not reached" if v is None else str(v)


def markdown(rows: list[dict], meta: dict) -> str:
    arms = [a for a in ("cold", "warm", "prior") if any(a in r for r in rows)]
    what = {"cold": "cold (TPE)", "warm": "warm (table)", "prior": "prior (auto + recorded spaces)"}
    lines = [f"Warm start on {meta['device']} ({meta['timing']}): {meta['samples']} candidates per "
             f"study, concurrency {meta['concurrency']}, trials counted among evaluated candidates"
             + ("" if meta["concurrency"] == 1 else " in completion order")
             + "; the best is the best any arm found", "",
             "| target | table from | seed | " + " | ".join(f"{what[a]}: trials to 2%" for a in arms)
             + " | " + " | ".join(f"{a} best ms" for a in arms) + " | parent runs | warm configs from table |",
             "| --- | --- | --- | " + "--- | " * (2 * len(arms) + 2)]
    shape = lambda p: "x".join(str(p[k]) for k in ("M", "N", "K")) if p else "-"  # noqa: E731
    fmt = lambda v: f"{v:.4f}" if v else "-"  # noqa: E731
    for r in rows:
        runs = ", ".join(f"{a} {(r[a].get('parent_run_id') or '')[:8]}" for a in arms)
        lines.append(f"| {shape(r['target'])} | {shape(r['source'])} | {r['seed']} | "
                     + " | ".join(_n(r[a]["trials_to_2pct"]) for a in arms) + " | "
                     + " | ".join(fmt(r[a]["best_ms"]) for a in arms)
                     + f" | {runs} | {r['warm_configs']} of {r['table_entries']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out")
    ap.add_argument("--samples", type=int, default=16, help="evaluated candidates per study")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--seeds", default="0", help="comma-separated sampler seeds, each a full run")
    ap.add_argument("--target", default="h100", help="hardware profile of the GPU (default h100)")
    ap.add_argument("--pairs", help="comma-separated indices into PAIRS (default all)")
    ap.add_argument("--smoke", action="store_true", help="CPU interpreter, one tiny pair, 4 samples")
    ap.add_argument("--prior", help="recorded spaces (file or folder) for the prior arm")
    ap.add_argument("--arms", help="comma-separated among source, cold, warm, prior "
                                   "(default source,cold,warm, and prior with --prior)")
    args = ap.parse_args(argv)
    args.arms = set((args.arms or "source,cold,warm" + (",prior" if args.prior else "")).split(","))
    args.prior = os.path.abspath(args.prior) if args.prior else None  # before the chdir below
    if args.arms - {"source", "cold", "warm", "prior"} or ("prior" in args.arms and not args.prior):
        ap.error("--arms takes source, cold, warm and prior (prior needs --prior PATH)")
    pairs = SMOKE_PAIRS if args.smoke else [PAIRS[int(i)] for i in (args.pairs or "").split(",") if i] or PAIRS
    if args.smoke:
        args.samples, args.concurrency = min(args.samples, 4), 1
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="kernelevolve-warm-start-")
    os.chdir(work)  # sweep state (.kernelevolve/) lands here, not in the checkout
    t0, rows = time.time(), []
    for seed in [int(s) for s in args.seeds.split(",")]:
        args.seed = seed
        rows += run_seed(work, args, pairs)
        meta = {"device": "CPU (Triton interpreter)" if args.smoke else rows[0]["gpu_name"] or args.target,
                "timing": "interpreter wall time, not GPU performance" if args.smoke else "GPU",
                "samples": args.samples, "concurrency": args.concurrency, "wall_s": time.time() - t0,
                "work_dir": work}
        text = markdown(rows, meta)
        with open(os.path.join(out, "warm_start.md"), "w") as fh:
            fh.write(text + "\n")
        with open(os.path.join(out, "warm_start.json"), "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1, default=str)
    print(text)
    print(f"\n{time.time() - t0:.0f} s; store and journals in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
