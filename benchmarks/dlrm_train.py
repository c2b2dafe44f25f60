"""DLRM-style inference and a training step, every path in one process: torch eager, torch.compile
(default and max-autotune), our kernels as registered operators inside torch.compile, and FBGEMM's
table-batched embedding bag.

  model      benchmarks/dlrm.py's: the same sizes, weights, batches and table-batched ids.
  inference  the forward (no grad) -> logits.
  training   one step: forward, BCE-with-logits loss against fixed labels, backward, SGD on every
             parameter; the tables get their dense gradient (what F.embedding_bag gives with
             sparse=False), ours from our embedding-bag backward kernel.
  paths      eager                        torch ops, one F.embedding_bag per table (dlrm.eager_forward)
             compile                      torch.compile of it (inductor, default mode)
             compile max-autotune         mode="max-autotune": inductor's GEMM autotuning + CUDA graphs
             ours compile                 torch.ops.kernelevolve.* (kernels/ops) under torch.compile,
                                          fullgraph=True: every layer our fused GEMM (its backward our
                                          GEMMs), one table-batched bag launch writing the interaction
                                          input, the interaction writing the padded concat
             ours compile max-autotune    the same under mode="max-autotune" (CUDA graphs replay our
                                          kernels too; inductor tunes only the torch ops around ours)
             fbgemm compile max-autotune  FBGEMM's TBE for the tables (fused SGD in training), torch
                                          for the rest, compiled max-autotune (benchmarks/fbgemm_tbe.py)
             On the CPU (--smoke, the Triton interpreter): eager, compile and ours compile only, with
             backend="aot_eager" (no GPU: no CUDA graphs, no FBGEMM, and inductor's C++ compile of
             the torch ops would only slow the check down).
  configs    ours launch with the tuned table's configs (kernels/tuned.py, looked up once per shape):
             --tuned TABLE (as `kernelevolve export` writes it), else one sweep of the product's engine
             over every op the model runs forward and backward at every batch size (benchmarks/
             engine.py: seeded TPE, each candidate verified against float64 in an isolated worker,
             the top re-timed), exported by tuner.deploy.export to OUT/dlrm_train.tuned.json and
             loaded (with --merge-with T.json, or a table already there, the entries this sweep does
             not replace are kept); its MLflow store is copied to OUT/dlrm_train_<batches>.mlflow.db.
             --sweep-only stops there (the sweeps, one batch size each, and the timing then fit
             separate device commands).
Checked: every path's logits, and in training every parameter's gradient (tables included), against
an fp32 eager run of the same weights and batch (relative Frobenius error, worst parameter).
Measured: per path, p50 ms per batch (inference) and per step (training) by tuner.measure.clocks
(do_bench, L2 flushed; the interpreter: wall time, never a performance figure), and the host's
time per call (host_us: calls back to back, no synchronisation) beside it; per batch size, the
host's time per launch of one layer: our registered op, its bare launcher, torch's F.linear.

    python benchmarks/dlrm_train.py --out OUT [--batches 2048,16384] [--tuned T.json | --sweep-only]
    python benchmarks/dlrm_train.py --smoke --out OUT [--tuned T.json] [--check-only]   # CPU interpreter, fp32
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import dlrm  # noqa: E402  (the model, its batches and our forward ops' problems)
from benchmarks import dlrm_train_configs  # noqa: E402  (our ops' configs: the engine's sweep -> a table)

# Relative Frobenius error against fp32 of the logits (dlrm.TOLERANCE) and of each gradient: a
# gradient passes back through every layer, so it collects about twice the roundings.
GRAD_TOLERANCE = {"float32": 3e-2, "float16": 3e-2, "bfloat16": 8e-2}
# ... or, where torch eager itself in the same dtype strays further from fp32 (bf16 logits and loss
# gradients put ~0.11 on the bottom MLP's gradients at batch 2048, measured on the H100), within
# this factor of eager's own error on that gradient: the honest model in that dtype is the bar.
EAGER_FACTOR = 1.25
LR = 0.05
GPU_PATHS = ("eager", "compile", "compile max-autotune", "ours compile", "ours compile max-autotune",
             "fbgemm compile max-autotune")
CPU_PATHS = ("eager", "compile", "ours compile")


# -- the three models: torch's, ours, FBGEMM's tables + torch --------------------------------
def torch_model(p: dict, rows: int, dense, bags):
    return dlrm.eager_forward({**p, "tables": list(p["weights"].split(rows))}, dense, bags)


def ours_model(p: dict, dense, kjt, width: int):
    """The forward through torch.ops.kernelevolve: no torch op of its own."""
    import torch

    ops = torch.ops.kernelevolve
    x = dense
    for wt, b in p["bottom"]:
        x = ops.linear(x, wt, b, None, "relu")
    t = ops.embedding_bag_tables(p["weights"], p["table_rows"], kjt[0], kjt[1], "sum", x)
    y = ops.dot_interaction_concat(t, width)
    last = len(p["top"]) - 1
    for i, (wt, b) in enumerate(p["top"]):
        y = ops.linear(y, wt, b, None, "relu" if i < last else "none")
    return y


def fbgemm_model(p: dict, tbe, dense, kjt, batch: int, tables: int):
    from benchmarks import fbgemm_tbe

    return dlrm.eager_dense_part(p, dense, fbgemm_tbe.pooled(tbe, kjt, batch, tables))


def leaves(model: dict, packed: bool) -> dict:
    """The trainable tensors as leaves: torch's layout (W [out, in]) or ours (dlrm.pack: W^T, the
    first top layer's padded with zero rows). The tables are one tensor, shared by both."""
    src = dlrm.pack(model) if packed else model
    p = {k: [tuple(t.detach().clone().requires_grad_() for t in layer) for layer in src[k]] for k in ("bottom", "top")}
    p["weights"], p["table_rows"] = model["weights"], model["table_rows"]
    return p


def named(p: dict) -> dict:
    """name -> leaf, in torch's layout names (bottom0.w, ..., tables)."""
    out = {"tables": p["weights"]}
    for part in ("bottom", "top"):
        for i, (w, b) in enumerate(p[part]):
            out[f"{part}{i}.w"], out[f"{part}{i}.b"] = w, b
    return out


def torch_layout(name: str, grad, ref, packed: bool):
    """A gradient in torch's layout (ref's): ours of a layer's W^T, whose rows past the layer's
    inputs are padding, as W."""
    if packed and name.endswith(".w"):
        return grad.t()[:, :ref.shape[1]]
    return grad


# -- one batch size: build the paths, check them, time them ---------------------------------
def build_paths(s, model, tp, op, batch, device, dtype, names):
    """(path -> {forward, step, params, fbgemm} or {skipped: why}, the batch's inputs)."""
    import torch
    import torch.nn.functional as F

    from benchmarks import fbgemm_tbe

    dense, bags = dlrm.make_batch(s, batch, device, dtype, seed=batch)
    kjt = dlrm.table_batched(bags)
    gen = torch.Generator(device=device).manual_seed(1)
    labels = (torch.rand((batch, 1), generator=gen, device=device) > 0.5).float()
    width = op["top"][0][0].shape[0]
    gpu = device.type == "cuda"
    paths = {}

    def add(name, forward, params, fbgemm=None):
        trainable = [t for t in named(params).values() if t is not None and t.requires_grad]
        opt = torch.optim.SGD(trainable, lr=LR, foreach=gpu)

        def step():
            F.binary_cross_entropy_with_logits(forward().float(), labels).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        paths[name] = {"forward": forward, "step": step, "params": params, "fbgemm": fbgemm,
                       "packed": params is op}

    for name in names:
        # on the CPU, aot_eager: dynamo + AOTAutograd without inductor's C++ (see the docstring)
        kw = {"mode": "max-autotune"} if "max-autotune" in name else {} if gpu else {"backend": "aot_eager"}
        if name in ("eager", "compile", "compile max-autotune"):
            fn = torch_model if name == "eager" else torch.compile(torch_model, dynamic=False, **kw)
            add(name, lambda fn=fn: fn(tp, s["rows"], dense, bags), tp)
        elif name.startswith("ours"):
            fn = torch.compile(ours_model, dynamic=False, fullgraph=True, **kw)
            add(name, lambda fn=fn: fn(op, dense, kjt, width), op)
        elif name.startswith("fbgemm"):
            why = fbgemm_tbe.available()
            if why:
                paths[name] = {"skipped": why}
                continue
            tbe = fbgemm_tbe.make(list(model["weights"].detach().split(s["rows"])), LR, dtype)
            fp = {**tp, "weights": None}  # the tables live in the TBE (updated by its fused SGD)
            fn = torch.compile(fbgemm_model, dynamic=False, **kw)
            add(name, lambda fn=fn, tbe=tbe: fn(fp, tbe, dense, kjt, batch, s["tables"]), fp, fbgemm=tbe)
            paths[name]["note"] = f"FBGEMM weights {getattr(tbe, 'weights_precision', '?')}"
    return paths, {"dense": dense, "bags": bags, "kjt": kjt, "labels": labels}


def reference(ref_model: dict, inputs: dict, rows: int):
    """fp32 eager: the logits and every gradient, by name."""
    import torch.nn.functional as F

    p = leaves(ref_model, packed=False)
    p["weights"] = ref_model["weights"].detach().clone().requires_grad_()
    logits = torch_model(p, rows, inputs["dense"].float(), inputs["bags"])
    F.binary_cross_entropy_with_logits(logits, inputs["labels"]).backward()
    return logits.detach(), {k: v.grad for k, v in named(p).items()}


def check(path: dict, ref, s: dict, batch: int, inputs: dict, tables) -> dict:
    """Relative errors of the logits and of every gradient (the worst one named) against fp32.
    torch.autograd.grad leaves .grad alone and, for FBGEMM, does not run the TBE's fused update."""
    import torch
    import torch.nn.functional as F

    from benchmarks import fbgemm_tbe

    ref_logits, ref_grads = ref

    def rel(a, b):
        return float((a.float() - b).norm() / b.norm().clamp_min(1e-30))

    with torch.no_grad():  # copied at once: a CUDA-graph replay's output is overwritten by the next
        logits = path["forward"]().detach().float().clone()
    loss = F.binary_cross_entropy_with_logits(path["forward"]().float(), inputs["labels"])
    params = {k: t for k, t in named(path["params"]).items() if t is not None}
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    if path["fbgemm"] is not None:  # the tables' gradient, read back from FBGEMM's fused SGD
        pooled = torch.stack(fbgemm_tbe.pooled(path["fbgemm"], inputs["kjt"], batch, s["tables"]), 1)
        pooled = pooled.detach().requires_grad_()
        head = dlrm.eager_dense_part(path["params"], inputs["dense"], list(pooled.unbind(1)))
        (g_pooled,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(head.float(), inputs["labels"]),
                                          [pooled])
        grads["tables"] = fbgemm_tbe.table_gradient(list(tables.split(s["rows"])), inputs["kjt"], batch,
                                                    g_pooled, LR)
    errors = {k: rel(torch_layout(k, g, ref_grads[k], path["packed"]), ref_grads[k]) for k, g in grads.items()}
    worst = max(errors, key=errors.get)
    return {"logits_rel_error": rel(logits, ref_logits), "grad_rel_error": errors[worst], "worst_grad": worst,
            "grad_rel_errors": errors}


def run_batch(s, model, tp, op, ref_model, batch, device, dtype, names, timed=True) -> dict:
    """Every path checked first (from the same weights as the fp32 reference), then timed (timed
    training steps move the weights, which the next batch size's restore() undoes)."""
    import torch

    from kernelevolve.kernels import tuned
    from kernelevolve.tuner.measure.clocks import host_us, measure

    gpu = device.type == "cuda"
    t0 = time.time()
    paths, inputs = build_paths(s, model, tp, op, batch, device, dtype, names)
    ref = reference(ref_model, inputs, s["rows"])
    rows = {}
    for name, path in paths.items():
        if "skipped" in path:
            rows[name] = {"skipped": path["skipped"]}
            continue
        t1 = time.time()
        try:  # a path that fails (a compile error, say) is recorded; the others still run
            row = check(path, ref, s, batch, inputs, model["weights"].detach())
        except Exception as exc:
            row = _failed(exc)
        row["compile_and_check_s"] = time.time() - t1
        if path.get("note"):
            row["note"] = path["note"]
        rows[name] = row
    grade(rows, s["dtype"])
    for name, path in paths.items():
        if not timed or "ok" not in rows[name] or "error" in rows[name]:
            continue
        row = rows[name]

        def infer(fn=path["forward"]):
            with torch.no_grad():
                return fn()
        try:
            for kind, fn in (("inference", infer), ("training", path["step"])):
                fn()  # compiles the optimizer's step (training) before timing
                ms = measure(fn, "do_bench", 25, 200)[1] if gpu else measure(fn, "wall", wall_reps=2)[1]
                row[kind] = {"ms": ms, "samples_per_s": batch / (ms * 1e-3),
                             "host_us": host_us(fn, calls=20) if gpu else None}
        except Exception as exc:
            row.update(_failed(exc))
        print(json.dumps({"batch": batch, "path": name, "ok": row["ok"], "error": row.get("error"),
                          **{k: round(row[k]["samples_per_s"]) for k in ("inference", "training") if k in row}}),
              flush=True)
    from kernelevolve.kernels.ops import configs as op_configs

    configs = {" ".join(map(str, k)): {"config": v, "source": op_configs.sources.get(k, "?")}
               for k, v in tuned.resolved.items()}  # what our ops launched with, and from where
    costs = launch_costs(op, tp, batch, device, dtype) if gpu else None
    return {"batch": batch, "paths": rows, "host_us_per_launch": costs, "our_configs": configs,
            "wall_s": time.time() - t0}


def grade(rows: dict, dtype: str) -> None:
    """Each checked path's verdict: logits within the dtype's tolerance, and every gradient within
    GRAD_TOLERANCE or within EAGER_FACTOR of torch eager's own error on it (its `grad_allowed`)."""
    eager = rows.get("eager", {}).get("grad_rel_errors", {})
    for row in rows.values():
        if "grad_rel_errors" not in row:
            continue
        allowed = {k: max(GRAD_TOLERANCE[dtype], EAGER_FACTOR * eager.get(k, 0.0)) for k in row["grad_rel_errors"]}
        over = {k: e for k, e in row["grad_rel_errors"].items() if e > allowed[k]}
        row["grad_allowed"] = allowed
        row["grad_over"] = over
        row["ok"] = row["logits_rel_error"] <= dlrm.TOLERANCE[dtype] and not over


def regrade(path: str) -> int:
    """Apply grade() to a results JSON this script wrote, and write its table again beside it."""
    with open(path) as fh:
        res = json.load(fh)
    for b in res["batches"]:
        grade(b["paths"], res["sizes"]["dtype"])
    res["ok"] = all(r.get("ok", True) for b in res["batches"] for r in b["paths"].values())
    with open(path, "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    with open(os.path.splitext(path)[0] + ".md", "w") as fh:
        fh.write(markdown(res) + "\n")
    print(f"{path}: every path agrees with the fp32 run: {res['ok']}")
    return 0 if res["ok"] else 1


def launch_costs(op: dict, tp: dict, batch: int, device, dtype) -> dict:
    """Host us per launch of one layer (top1), calls back to back: our registered op (its body: a
    dictionary lookup for the config, an allocation, the Triton launch), the bare launcher with
    the same config, and torch's F.linear + relu (cuBLAS)."""
    import torch
    import torch.nn.functional as F

    from kernelevolve.kernels import tuned
    from kernelevolve.kernels.matmul import Epilogue, launch_gemm
    from kernelevolve.tuner.measure.clocks import host_us

    (wt, b), (w, _) = op["top"][1], tp["top"][1]
    x = torch.randn((batch, wt.shape[0]), device=device).to(dtype)
    with torch.no_grad():
        ours = torch.ops.kernelevolve.linear(x, wt, b, None, "relu")
        cfg = next(v for k, v in tuned.resolved.items() if k[0] == "gemm_epilogue" and k[1:4] == (batch, wt.shape[1],
                                                                                                   wt.shape[0]))
        calls = {"registered op": lambda: torch.ops.kernelevolve.linear(x, wt, b, None, "relu"),
                 "launcher": lambda: launch_gemm(x, wt, ours, cfg, Epilogue(bias=b, activation="relu")),
                 "torch F.linear + relu": lambda: F.relu(F.linear(x, w, b))}
        return {k: host_us(fn, calls=200) for k, fn in calls.items()}


def _failed(exc) -> dict:
    import traceback

    traceback.print_exc()
    return {"error": f"{type(exc).__name__}: {str(exc)[:400]}", "ok": False}


def markdown(res: dict) -> str:
    s = res["sizes"]
    lines = [f"DLRM-style inference and training step, {s['dtype']}, on {res['device']} (torch {res['torch']}, "
             f"triton {res['triton']})" + (" -- INTERPRETER: CPU wall time, not GPU performance"
                                           if res["interpreter"] else ""), "",
             f"- model: benchmarks/dlrm.py's ({s['tables']} tables x {s['rows']:,} rows x dim {s['dim']}, bags of "
             f"mean {s['bag']}); training: BCE loss, SGD lr {LR} on every parameter",
             f"- our configs: {res['config_source']}",
             f"- wall: {res['wall_s']:.0f} s", "",
             f"| batch | path | inference samples/s | ms | host us | vs {res['peer']} | training samples/s "
             f"| ms/step | host us | vs {res['peer']} | logits err | worst grad err | ok |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for b in res["batches"]:
        peer = b["paths"].get(res["peer"]) or {}
        for name, r in b["paths"].items():
            if "skipped" in r or "error" in r:
                why = f"not run: {r['skipped']}" if "skipped" in r else f"FAILED: {r['error']}"
                lines.append(f"| {b['batch']} | {name} | {why[:160]} |" + " |" * 10)
                continue
            cells = []
            for kind in ("inference", "training"):
                if kind not in r:
                    cells += ["not timed"] * 4
                    continue
                k, base = r[kind], (peer.get(kind) or {}).get("samples_per_s")
                host = f"{k['host_us']:.0f}" if k.get("host_us") else "n/a"
                cells += [f"{k['samples_per_s']:,.0f}", f"{k['ms']:.4f}", host,
                          f"{k['samples_per_s'] / base:.2f}x" if base else "n/a"]
            lines.append(f"| {b['batch']} | {name} | " + " | ".join(cells) + f" | {r['logits_rel_error']:.2e} | "
                         f"{r['grad_rel_error']:.2e} ({r['worst_grad']}) | {'yes' if r['ok'] else 'NO'} |")
    for b in res["batches"]:
        sources = [v["source"] for v in b["our_configs"].values()]
        lines.append(f"\nBatch {b['batch']}: our ops' configs (signatures resolved so far): "
                     f"{sources.count('table')} from the tuned table, {sources.count('default')} kernel defaults "
                     "(dlrm_train.json: our_configs)")
        if b.get("host_us_per_launch"):
            lines.append(f"\nHost us per launch, batch {b['batch']}, layer top1: " + ", ".join(
                f"{k} {v:.1f}" for k, v in b["host_us_per_launch"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out")
    ap.add_argument("--smoke", action="store_true", help="CPU: tiny sizes, Triton interpreter, fp32")
    ap.add_argument("--batches", help="comma-separated batch sizes (default 2048,16384; smoke 32)")
    ap.add_argument("--tuned", help="a tuned-config table (kernelevolve export) for our ops")
    ap.add_argument("--sweep-only", action="store_true", help="run the sweep, write the table, stop")
    ap.add_argument("--merge-with", help="a table of an earlier sweep: its entries this sweep does not "
                                         "replace go into OUT/dlrm_train.tuned.json too")
    ap.add_argument("--configs", type=int, default=24, help="candidates per op in the sweep (default 24)")
    ap.add_argument("--threads", type=int, default=8, help="candidates in flight per op (default 8)")
    ap.add_argument("--paths", help=f"comma-separated subset of {', '.join(GPU_PATHS)}")
    ap.add_argument("--check-only", action="store_true", help="check every path against fp32, time none")
    ap.add_argument("--regrade", metavar="JSON", help="re-apply the checks' verdicts to a results JSON of this "
                                                      "script and rewrite its table (no model is run)")
    args = ap.parse_args(argv)
    if args.regrade:
        return regrade(args.regrade)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before the first @triton.jit is imported
    import torch
    import triton

    import kernelevolve.kernels.ops  # noqa: F401  (registers torch.ops.kernelevolve.*)
    from kernelevolve.kernels import tuned
    from kernelevolve.kernels.spec import DTYPES

    s = dict(dlrm.SMOKE if args.smoke else dlrm.FULL)
    if args.batches:
        s["batches"] = [int(b) for b in args.batches.split(",")]
    gpu = torch.cuda.is_available() and not args.smoke
    if not gpu and not args.smoke:
        print("no GPU: run with --smoke for the CPU interpreter check")
        return 2
    device, dtype = torch.device("cuda" if gpu else "cpu"), DTYPES[s["dtype"]]
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    table = args.tuned
    if not table:
        from benchmarks import engine

        table = dlrm_train_configs.sweep_to_table(s, engine.gpu_kind()[0] if gpu else "cpu-interpreter",
                                                  args, out)
        print(f"tuned table: {table} ({time.time() - t0:.0f} s)", flush=True)
        if args.sweep_only:
            return 0
    tuned.load_table(table)
    names = [n for n in (args.paths.split(",") if args.paths else GPU_PATHS if gpu else CPU_PATHS)
             if gpu or n in CPU_PATHS]
    model = dlrm.make_model(s, device, dtype)
    model["weights"].requires_grad_()
    tp, op = leaves(model, packed=False), leaves(model, packed=True)
    ref_model = {"weights": model["weights"].detach().float(), "table_rows": model["table_rows"],
                 **{k: [tuple(t.detach().float() for t in layer) for layer in model[k]] for k in ("bottom", "top")}}
    res = {"sizes": s, "device": torch.cuda.get_device_name(device) if gpu else platform.processor() or "CPU",
           "interpreter": not gpu, "torch": torch.__version__, "triton": triton.__version__,
           "config_source": f"tuned table {table}" + ("" if args.tuned else " (this run's engine sweep, "
                                                      "its MLflow store copied beside it)"),
           "tuned_table": table, "paths": names, "batches": [],
           # the peer the ratios are taken against: torch's best compile of the same model
           "peer": "compile max-autotune" if "compile max-autotune" in names else "compile"}
    trained = [model["weights"], *(x for p in (tp, op) for layer in p["bottom"] + p["top"] for x in layer)]
    start = [t.detach().clone() for t in trained]
    if gpu:  # plain tensors, not module parameters: without this CUDA graphs would copy them per call
        for t in trained:
            torch._dynamo.mark_static_address(t)
    for batch in s["batches"]:
        with torch.no_grad():  # every batch size's checks start from the weights ref_model copied
            for t, t0_ in zip(trained, start):
                t.copy_(t0_)
        res["batches"].append(run_batch(s, model, tp, op, ref_model, batch, device, dtype, names,
                                        timed=not args.check_only))
    res["ok"] = all(r.get("ok", True) for b in res["batches"] for r in b["paths"].values())
    res["wall_s"] = time.time() - t0
    from benchmarks import engine

    engine.write_results(out, "dlrm_train", res, markdown(res))
    print(f"\nevery path agrees with the fp32 run: {res['ok']}   ({res['wall_s']:.0f} s)")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
