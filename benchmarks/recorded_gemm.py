"""The verified Triton candidates of recorded GEMM sweeps, read offline for the record checks
(benchmarks/wave_model_check.py, benchmarks/pipeline_depth_check.py).

A record is a line of a `runs.jsonl.gz` export (benchmarks/export_runs.py): one MLflow run, its
tags, params and metrics. No GPU is needed to read them.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernelevolve.kernels.matmul import SWITCH_DEFAULTS, MatmulProblem  # noqa: E402
from kernelevolve.tuner.records.tracking import _value  # noqa: E402


def candidates(paths: list[str]):
    """(path, problem key, config, latency s) of each verified Triton candidate of a `matmul`
    study in the exports, in their order; the config completed with the template's defaults
    (configs recorded before a switch existed launched with its default)."""
    for path in paths:
        with gzip.open(path, "rt") as f:
            for line in f:
                r = json.loads(line)
                tags, params, metrics = r.get("tags", {}), r.get("params", {}), r.get("metrics", {})
                study = tags.get("study", "")
                if (not study.startswith("matmul/") or tags.get("status") != "ok" or "latency_ms" not in metrics
                        or params.get("IMPL") == "vendor"):
                    continue
                cfg = {**SWITCH_DEFAULTS, **{k: _value(v) for k, v in params.items()}}
                yield path, study.split("/")[1], cfg, metrics["latency_ms"] * 1e-3


def problem_of(key: str) -> MatmulProblem:
    """A study's problem from its key (M3600_N2448_K256_bfloat16)."""
    m, n, k, *dtype = key.split("_")
    return MatmulProblem(M=int(m[1:]), N=int(n[1:]), K=int(k[1:]), dtype="_".join(dtype))
