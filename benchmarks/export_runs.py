"""Every MLflow run of a benchmark's store, as one gzipped JSON line each, for docs/results/.

A benchmark run on a GPU machine hands back its MLflow store (OUT/<name>.mlflow.db, tens of MB);
the repository keeps this compact export instead: each run's id, parent, name, status, times,
params, metrics and tags, so every published figure's run ids can be looked up without the store.

    python benchmarks/export_runs.py OUT/gemm_suite.mlflow.db docs/results/engine/gemm_suite.runs.jsonl.gz
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys


def export(db: str, out: str, append: bool = False) -> int:
    """Write (or, with `append`, add: one file for a benchmark's several stores) every run of `db`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    n = 0
    with gzip.open(out, "at" if append else "wt") as f:
        for exp in client.search_experiments():
            for run in client.search_runs([exp.experiment_id], max_results=50000):
                f.write(json.dumps({
                    "experiment": exp.name, "run_id": run.info.run_id, "run_name": run.info.run_name,
                    "parent_run_id": run.data.tags.get("mlflow.parentRunId"), "status": run.info.status,
                    "start_time": run.info.start_time, "end_time": run.info.end_time,
                    "params": run.data.params, "metrics": run.data.metrics,
                    "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
                }, sort_keys=True) + "\n")
                n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", help="an MLflow sqlite store (a benchmark's OUT/<name>.mlflow.db)")
    ap.add_argument("out", help="the .jsonl.gz to write")
    args = ap.parse_args(argv)
    print(f"{export(args.db, args.out)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
