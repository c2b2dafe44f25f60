"""The configs of benchmarks/dlrm_train.py's ops: every op of ours a training step runs (forward
and backward, at each batch size) swept by the product's engine (benchmarks/engine.py), the
winners exported as a tuned table by tuner.deploy.export, which the registered operators read."""
from __future__ import annotations

import json
import os

from benchmarks import dlrm


def train_ops(s: dict, batch: int) -> list[tuple[str, str, object]]:
    """(name, kernel, problem) of every op of ours in a training step: the forward's (dlrm.ops),
    each layer's two backward GEMMs (dx = dz W, dW^T = x^T dz; the first layer needs no dx) and
    the table gradient."""
    from kernelevolve.kernels.matmul import MatmulProblem

    out = []
    for name, kernel, p in dlrm.ops(s, batch):
        out.append((name, kernel, p))
        if kernel == "gemm_epilogue":
            if name != "bottom0":
                out.append((f"{name}.dx", "matmul", MatmulProblem(M=p.M, N=p.K, K=p.N, dtype=p.dtype)))
            out.append((f"{name}.dw", "matmul", MatmulProblem(M=p.K, N=p.N, K=p.M, dtype=p.dtype)))
        elif kernel == "embedding_bag_fwd":
            out.append((f"{name}.dw", "embedding_bag_bwd", p))
    return out


def sweep_to_table(s: dict, target: str, args, out: str) -> str:
    """One engine sweep of every op of every batch size, exported as a tuned table; its path."""
    from benchmarks import engine
    from kernelevolve.tuner.deploy import export

    kernels: dict[str, list] = {}
    for batch in s["batches"]:
        for _, kernel, problem in train_ops(s, batch):
            kernels.setdefault(kernel, []).append(problem.model_dump())
    smoke = target == "cpu-interpreter"
    data = engine.experiment("dlrm-train-smoke" if smoke else "dlrm-train",
                             [{"kernel": k, "problems": p} for k, p in kernels.items()], engine.target(target),
                             samples=args.configs, concurrency=args.threads, seed=0, top_k=2 if smoke else 3,
                             retime_rounds=2 if smoke else 5)
    sw = engine.sweep(data, log=lambda m: print(m, flush=True))
    engine.keep_store(sw, out, f"dlrm_train_{'_'.join(map(str, s['batches']))}")
    path = os.path.join(out, "dlrm_train.tuned.json")
    table = export.build_table(sw.uri, sw.name)
    for earlier in filter(None, (args.merge_with, path)):
        table = merged(earlier, table)
    export.write(table, path)
    return path


def merged(path: str, table: dict) -> dict:
    """`table` plus the entries of the table at `path` (if any) that it does not replace (same
    kernel, problem and hardware): sweeps of one batch size each (one device command each) add up
    to one table."""
    if not os.path.exists(path):
        return table
    with open(path, encoding="utf-8") as fh:
        old = json.load(fh)

    def key(e):
        return json.dumps([e["kernel"], e["problem"], e.get("hardware")], sort_keys=True)
    new = {key(e) for e in table["entries"]}
    return {**table, "entries": [e for e in old.get("entries", []) if key(e) not in new] + table["entries"]}
