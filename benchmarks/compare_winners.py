"""Are the winners of several sweeps of one experiment equally fast? Re-timed side by side.

Two sweeps of one file measure their winners minutes apart, and a GPU's clock is not the same
minutes apart: on the H100 the re-timed rounds of one cuBLAS GEMM (4096^3 bf16) rose 0.179 ->
0.188 -> 0.192 ms within a study's re-timing as the GPU heated under sustained GEMMs, so two
runs' best latencies differ by a few percent even where both chose the very same config. To
compare what the sweeps *found*, this takes each study's winners from the runs' results
(benchmarks/engine_suite.py JSONs: the dispatched best and the best Triton kernel of each) and
re-times them together in one evaluation process with the engine's own interleaved re-timing
(the `retime` request: every config's rounds alternate, each call judged as in a sweep). Each
run's winner is then given as a ratio to the reference run's (the last file: e.g. the
one-at-a-time run), measured in the same rounds.

    python benchmarks/compare_winners.py --out $OUT/winners.json RUN1.json RUN2.json ... REFERENCE.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _studies(experiment: str, kind: str) -> dict:
    """The experiment's studies by key, its target swapped for this machine's GPU kind (as
    engine_suite.py runs it)."""
    import yaml

    from kernelevolve.tuner.experiment import config

    with open(experiment, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    data["targets"] = [{"name": kind, "resources": {"CPU": 1} if kind == "cpu-interpreter" else {"CPU": 1, "GPU": 1}}]
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "compare-winners.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    return {s.key: s for s in config.load(path).studies()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", help="engine_suite.py results; the last is the reference")
    ap.add_argument("--out", required=True)
    ap.add_argument("--experiment", default=os.path.join(ROOT, "experiments", "suite-h100.yaml"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kind", help="the target's hardware profile (default: this machine's GPU)")
    args = ap.parse_args()
    from benchmarks.engine import gpu_kind
    from kernelevolve.tuner.execution.cluster import target_env
    from kernelevolve.tuner.execution.worker import CandidateWorker, make_request

    runs = []
    for path in args.results:
        with open(path, encoding="utf-8") as fh:
            runs.append(json.load(fh))
    kind = args.kind or gpu_kind()[0]
    studies = _studies(args.experiment, kind)
    worker = None
    out = {"results": args.results, "reference": args.results[-1], "rounds": args.rounds, "studies": []}
    try:
        for entry in runs[0]["studies"]:
            key = entry["study"]
            study = studies[key]
            if worker is None:
                worker = CandidateWorker(env=target_env(study.target))
            wins = [{w: s.get(f"{w}_config") for w in ("best", "best_triton")}
                    for r in runs for s in r["studies"] if s["study"] == key]
            configs = []
            for w in wins:
                for cfg in w.values():
                    if cfg and cfg not in configs:
                        configs.append(cfg)
            req = make_request("retime", study.ref, study.problem.model_dump(), study.target.profile.name,
                               study.bench_settings(), configs=configs, rounds=args.rounds)
            reply = worker.request(req, timeout_s=600)
            rows = reply.get("rows") or []
            ms = {json.dumps(r["config"], sort_keys=True): r["latency_ms"] for r in rows if r.get("status") == "ok"}

            def of(cfg):
                return ms.get(json.dumps(cfg, sort_keys=True)) if cfg else None
            ref = {w: of(c) for w, c in wins[-1].items()}
            per_run = []
            for path, w in zip(args.results, wins):
                got = {k: of(c) for k, c in w.items()}
                per_run.append({"result": os.path.basename(path), **{f"{k}_ms": v for k, v in got.items()},
                                **{f"{k}_vs_reference": (v / ref[k] if v and ref[k] else None)
                                   for k, v in got.items()}})
            out["studies"].append({"study": key, "status": reply.get("status"), "error": reply.get("error"),
                                   "configs": len(configs), "rows": rows, "runs": per_run})
            print(key, [(p["result"], p["best_vs_reference"], p["best_triton_vs_reference"]) for p in per_run],
                  flush=True)
    finally:
        if worker is not None:
            worker.close()
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
