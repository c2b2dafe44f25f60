"""Reliability run: sweep every injected fault (tests/faults.py) N times; count what survived.

For each run: a fresh store and a grid sweep over every fault the target can execute. Then, per
fault: the status it ended in (must be its expected one), and for the sweep: candidates in the
journal vs. child runs in MLflow (lost = journaled but not in MLflow; must be 0), and the best
(must compute the right function). Writes reliability.json and reliability.md to --out.

    python benchmarks/fault_sweep.py --target cpu-interpreter --runs 3 --out out/
    python benchmarks/fault_sweep.py --target h100 --runs 1 --out out/     # GPU-only faults too
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

EXP = """
name: faults
kernels:
  - kernel: {root}/tests/faults.py:FAULTS
    problems: [{{n: 100000}}]
targets: [{target}]
search: {{sampler: grid, concurrency: 2, seed: {seed}, timeout_s: 10, top_k: 2, retries: 1}}
tracking: {{uri: sqlite:///mlflow.db}}
"""


def one_run(target: str, seed: int) -> dict:
    from mlflow.tracking import MlflowClient

    from kernelevolve.tuner.experiment import config
    from kernelevolve.tuner.execution import sweep
    from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate

    work = tempfile.mkdtemp(prefix="kernelevolve-faults-")
    os.chdir(work)
    tgt = "{name: cpu-interpreter}" if target == "cpu-interpreter" else \
        f"{{name: {target}, resources: {{CPU: 1, GPU: 0.5}}}}"
    with open("faults.yaml", "w") as fh:
        fh.write(EXP.format(root=ROOT, target=tgt, seed=seed))
    [summary] = sweep.run(config.load("faults.yaml"), log=lambda m: None)
    state = SweepState.latest(os.path.join(work, ".kernelevolve", "faults"))
    journal = []
    for f in os.listdir(state.folder):
        if f.endswith(".jsonl"):
            journal += state.journal(f[:-6]).records()
    journal = unique_by_candidate(journal)
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    exp = client.get_experiment_by_name("faults")
    runs = client.search_runs([exp.experiment_id], "tags.`kernelevolve.role` = 'candidate'")
    in_mlflow = {r.data.tags["candidate_id"] for r in runs}
    return {"statuses": {r.data.params["fault"]: r.data.tags["status"] for r in runs},
            "errors": {r.data.params["fault"]: r.data.tags.get("error", "")[:200] for r in runs},
            "journal": len(journal), "mlflow": len(runs),
            "lost": len({r["candidate_id"] for r in journal} - in_mlflow),
            "duplicated": len(runs) - len(in_mlflow),
            "best": (summary["best"] or {}).get("config", {}).get("fault")}


def main() -> None:
    import faults

    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="cpu-interpreter")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default="out")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    runs = [one_run(args.target, seed) for seed in range(args.runs)]
    rows = defaultdict(lambda: {"runs": 0, "as_expected": 0, "got": set()})
    for r in runs:
        for fault, status in r["statuses"].items():
            row = rows[fault]
            row["runs"] += 1
            row["as_expected"] += status == faults.EXPECTED[fault]
            row["got"].add(status)
    lines = [f"target {args.target}, {args.runs} sweep(s); records lost "
             f"{sum(r['lost'] for r in runs)}, duplicated {sum(r['duplicated'] for r in runs)}; "
             f"best was {sorted({r['best'] for r in runs})}", "",
             "| fault | expected status | runs | ended as expected | statuses seen |",
             "| --- | --- | --- | --- | --- |"]
    for fault in faults.LAUNCHERS:
        if fault in rows:
            row = rows[fault]
            lines.append(f"| {fault} | {faults.EXPECTED[fault]} | {row['runs']} | {row['as_expected']} "
                         f"| {', '.join(sorted(row['got']))} |")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, f"reliability-{args.target}.md"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(out, f"reliability-{args.target}.json"), "w") as fh:
        json.dump(runs, fh, indent=1)


if __name__ == "__main__":
    main()
