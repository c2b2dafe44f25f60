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


# Ops swept in a sweep of their own, after the others, at most this many candidates in flight: the
# embedding-bag backward's float64 reference of the 8M-row gradient (7.6 GiB) ran out of GPU memory
# beside the other studies' cached inputs and 16 compiling processes (every candidate of the batch
# 2048 sweep, on the H100); alone, with few compiling processes, it has the GPU to itself.
APART = {"embedding_bag_bwd": 4}


def sweep_to_table(s: dict, target: str, args, out: str) -> str:
    """The engine's sweeps of every op of every batch size (APART's after the rest), exported as one
    tuned table; its path."""
    from benchmarks import engine
    from kernelevolve.tuner.deploy import export

    kernels: dict[str, list] = {}
    for batch in s["batches"]:
        for _, kernel, problem in train_ops(s, batch):
            kernels.setdefault(kernel, []).append(problem.model_dump())
    smoke = target == "cpu-interpreter"
    stem = f"dlrm_train_{'_'.join(map(str, s['batches']))}"
    groups = [("", [k for k in kernels if k not in APART], args.threads)]
    groups += [(f"-{k.replace('_', '-')}", [k], min(args.threads, APART[k])) for k in APART if k in kernels]
    table = None
    for suffix, names, threads in groups:
        if not names:
            continue
        data = engine.experiment(("dlrm-train-smoke" if smoke else "dlrm-train") + suffix,
                                 [{"kernel": k, "problems": kernels[k]} for k in names], engine.target(target),
                                 samples=args.configs, concurrency=threads, seed=0, top_k=2 if smoke else 3,
                                 retime_rounds=2 if smoke else 5)
        sw = engine.sweep(data, log=lambda m: print(m, flush=True))
        engine.keep_store(sw, out, stem + suffix.replace("-", "_"))
        try:
            part = export.build_table(sw.uri, sw.name)
        except export.NothingToExport as exc:  # every candidate failed: that op runs its default
            print(f"no table entries from {sw.name}: {exc}", flush=True)
            continue
        table = part if table is None else {**table, "entries": table["entries"] + part["entries"]}
    if table is None:
        raise RuntimeError("no op of the sweep has a correct config")
    path = os.path.join(out, "dlrm_train.tuned.json")
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
