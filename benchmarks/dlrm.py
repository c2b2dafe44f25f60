"""A DLRM-style ranking model, inference, three ways in one run: torch eager, torch.compile, ours.

  model   per sample: 13 dense features -> bottom MLP (relu) -> a dense vector of `dim`;
          `tables` embedding bags (sum of ~`bag` rows each) -> `tables` pooled vectors of `dim`;
          dot interaction of those F = tables + 1 vectors (the F(F-1)/2 pairs, DLRM's order),
          concatenated with the dense vector -> top MLP (relu, last layer linear) -> a logit.
  eager   torch's ops: F.embedding_bag, F.linear + relu, bmm + triangular gather (DLRM's code).
  compile torch.compile of that same function (inductor, static shapes per batch size); on the
          GPU also mode="reduce-overhead" (inductor's CUDA graphs), the peer of graph replay.
  ours    our kernels, laid out as an inference deployment would (fbgemm/torchrec style):
          - the tables live in one weight tensor (eager and compile read per-table views of the
            same memory) and the batch's ids come table-batched (a KeyedJaggedTensor's values
            and offsets), so one table-batched embedding-bag launch pools every table, straight
            into slots 1..T of the interaction input [B, T+1, dim];
          - the bottom MLP's last layer writes slot 0 of that buffer (a strided output);
          - the dot interaction writes [dense | pairs | zero pad] in one pass (no stack, no cat),
            padded to a 16-byte aligned width, the first top layer's weight padded with zero rows;
          - every MLP layer is the fused GEMM + bias + relu of kernels.gemm_epilogue on W^T
            packed once.
          Each op's config: from the tuned table (--tuned tuned.json, as `kernelevolve export`
          writes it; looked up like the entry points do: same kernel, dtype, GPU kind, nearest
          shape bucket; the kernel's default where nothing matches), else found by the product's
          engine (`kernelevolve run`: tuner.execution.sweep): ONE experiment holds every op of
          every batch size (one study per distinct op problem, all at once), --configs candidates
          per study, seeded TPE, --threads in flight per study, each candidate verified against
          the float64 reference in an isolated worker, the top 3 re-timed; no start points.
          Where the run ids are: each op of dlrm.json's plan carries `search` with the
          experiment, tracking URI, the study's MLflow `parent_run_id`, its counts and its wall
          time; the store is copied to OUT/dlrm.mlflow.db.

Checked: each path's logits against an fp32 eager run of the same weights (relative Frobenius
error within the dtype's tolerance). Measured: inference throughput (samples/s), per batch size,
with tuner.measure.clocks: p50 of the clock `do_bench` (L2 flushed) and, where the path can be
captured, of `cudagraph` (launch overhead removed, which dominates small batches).
--smoke: the CPU interpreter (target cpu-interpreter; the clock is wall time there, never a
performance figure).

    python benchmarks/dlrm.py --out out/ [--batches 2048,16384] [--tuned tuned.json] [--configs 24]
    python benchmarks/dlrm.py --smoke --out out/      # CPU: tiny sizes, Triton interpreter, fp32
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

FULL = {"tables": 8, "rows": 1_000_000, "dim": 128, "bag": 20, "dense": 13, "bottom": [512, 256, 128],
        "top": [1024, 1024, 512, 256, 1], "batches": [2048, 16384], "dtype": "bfloat16"}
SMOKE = {"tables": 3, "rows": 1000, "dim": 16, "bag": 4, "dense": 13, "bottom": [32, 16],
         "top": [32, 16, 1], "batches": [32], "dtype": "float32"}
# Relative Frobenius error of the logits against the fp32 eager run: a few roundings of the dtype
# over eight layers (float32: Triton's dot runs as tf32).
TOLERANCE = {"float32": 2e-2, "float16": 1e-2, "bfloat16": 4e-2}


# -- the model -----------------------------------------------------------------------------
def make_model(s: dict, device, dtype, seed: int = 0) -> dict:
    """Tables ~ N(0, 1/dim) (unit-norm rows); He-initialised layers, so activations keep their
    scale through the MLPs and the check compares numbers of one magnitude."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape, scale):
        return (torch.randn(shape, generator=gen, device=device) * scale).to(dtype)

    def mlp(sizes):
        return [(randn(o, i, scale=(2.0 / i) ** 0.5), randn(o, scale=0.1)) for i, o in zip(sizes, sizes[1:])]

    F = s["tables"] + 1
    top_in = s["dim"] + F * (F - 1) // 2
    weights = randn(s["tables"] * s["rows"], s["dim"], scale=s["dim"] ** -0.5)  # every table, stacked
    return {"tables": list(weights.split(s["rows"])), "weights": weights,
            "table_rows": torch.arange(s["tables"], device=device) * s["rows"],
            "bottom": mlp([s["dense"], *s["bottom"]]), "top": mlp([top_in, *s["top"]])}


def make_batch(s: dict, batch: int, device, dtype, seed: int):
    """Dense features and, per table, fbgemm-style bags (indices, offsets) of 0..2*bag ids."""
    import torch

    from kernelevolve.kernels import embedding_bag as eb

    problem = eb.EmbeddingBagProblem(num_bags=batch, avg_bag_len=s["bag"], dim=s["dim"], num_rows=s["rows"])
    bags = [eb.make_bags(problem, device, seed + 1 + i)[:2] for i in range(s["tables"])]
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn((batch, s["dense"]), generator=gen, device=device).to(dtype), bags


def table_batched(bags):
    """The same bags as a KeyedJaggedTensor carries them: all ids in one tensor, offsets [T*B + 1]
    table-major (what the data loader hands a table-batched embedding; built outside the timing,
    as per-table offsets are for eager)."""
    import torch

    indices = torch.cat([idx for idx, _ in bags])
    starts = torch.tensor([0] + [idx.numel() for idx, _ in bags], device=indices.device).cumsum(0)
    offsets = torch.cat([off[:-1] + start for (_, off), start in zip(bags, starts)] + [starts[-1:]])
    return indices, offsets


def eager_forward(model: dict, dense, bags):
    import torch.nn.functional as F

    pooled = [F.embedding_bag(idx, table, off, mode="sum", include_last_offset=True)
              for table, (idx, off) in zip(model["tables"], bags)]
    return eager_dense_part(model, dense, pooled)


def eager_dense_part(model: dict, dense, pooled):
    """Everything but the embeddings, in torch ops: bottom MLP, interaction, top MLP (shared with
    peers that pool their own way, e.g. FBGEMM's table-batched embedding in dlrm_train.py)."""
    import torch
    import torch.nn.functional as F

    from kernelevolve.kernels import interaction

    x = dense
    for w, b in model["bottom"]:
        x = F.relu(F.linear(x, w, b))
    y = torch.cat([x, interaction.baseline((torch.stack([x, *pooled], 1),))], 1)
    for i, (w, b) in enumerate(model["top"]):
        y = F.linear(y, w, b)
        y = F.relu(y) if i < len(model["top"]) - 1 else y
    return y


ALIGN = 8  # the top MLP's input width is padded to this many elements: 16-byte rows in bf16


def aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def pack(model: dict) -> dict:
    """Our layers read W^T [in, out] row-major: transposed once, outside the timed forward. The
    first top layer's W^T gets zero rows up to an aligned K (the interaction writes zeros there)."""
    import torch.nn.functional as F

    packed = {k: model[k] for k in ("weights", "table_rows")}
    packed.update({k: [(w.t().contiguous(), b) for w, b in model[k]] for k in ("bottom", "top")})
    wt, b = packed["top"][0]
    packed["top"][0] = (F.pad(wt, (0, 0, 0, aligned(wt.shape[0]) - wt.shape[0])), b)
    return packed


def ours_forward(packed: dict, plan: dict, dense, kjt):
    """Our kernels through their launchers (the entry points add input checks; embedding_bag's
    reads the ids' range back to the host, a sync that has no place in a timed loop)."""
    import torch

    from kernelevolve.kernels import embedding_bag as eb
    from kernelevolve.kernels import interaction
    from kernelevolve.kernels.matmul import Epilogue, launch_gemm

    def linear(x, wt, b, act, name, out=None):
        if out is None:
            out = torch.empty((x.shape[0], wt.shape[1]), dtype=x.dtype, device=x.device)
        launch_gemm(x, wt, out, plan[name]["config"], Epilogue(bias=b, activation=act))
        return out

    batch, tables = dense.shape[0], packed["table_rows"].numel()
    weights = packed["weights"]
    t = torch.empty((batch, tables + 1, weights.shape[1]), dtype=weights.dtype, device=weights.device)
    x = dense
    last = len(packed["bottom"]) - 1
    for i, (wt, b) in enumerate(packed["bottom"]):
        x = linear(x, wt, b, "relu", f"bottom{i}", t[:, 0] if i == last else None)
    eb.launch_forward_tables(weights, packed["table_rows"], *kjt, t[:, 1:], plan["embedding_bag"]["config"], "sum")
    y = torch.empty((batch, packed["top"][0][0].shape[0]), dtype=t.dtype, device=t.device)
    interaction.launch_concat(t, y, plan["interaction"]["config"])
    for i, (wt, b) in enumerate(packed["top"]):
        y = linear(y, wt, b, "relu" if i < len(packed["top"]) - 1 else "none", f"top{i}")
    return y


# -- configs of our ops: the tuned table, else a search per op ---------------------------
def ops(s: dict, batch: int) -> list[tuple[str, str, object]]:
    """(name, kernel, problem) of every distinct op of our forward at this batch size."""
    from kernelevolve.kernels.embedding_bag import EmbeddingBagProblem
    from kernelevolve.kernels.gemm_epilogue import FusedGemmProblem
    from kernelevolve.kernels.interaction import InteractionProblem

    out, F = [], s["tables"] + 1
    for part, sizes in (("bottom", [s["dense"], *s["bottom"]]),
                        ("top", [s["dim"] + F * (F - 1) // 2, *s["top"]])):
        for i, (k, n) in enumerate(zip(sizes, sizes[1:])):
            act = "none" if part == "top" and i == len(sizes) - 2 else "relu"
            k = aligned(k) if (part, i) == ("top", 0) else k  # pack() pads it
            out.append((f"{part}{i}", "gemm_epilogue",
                        FusedGemmProblem(M=batch, N=n, K=k, dtype=s["dtype"], activation=act)))
    # one table-batched launch: tuned as one table of all rows with tables x batch bags
    out.append(("embedding_bag", "embedding_bag_fwd",
                EmbeddingBagProblem(num_bags=s["tables"] * batch, avg_bag_len=s["bag"], dim=s["dim"],
                                    num_rows=s["tables"] * s["rows"], dtype=s["dtype"])))
    out.append(("interaction", "dot_interaction",
                InteractionProblem(batch=batch, features=F, dim=s["dim"], dtype=s["dtype"])))
    return out


def default_config(kernel: str) -> dict:
    from kernelevolve.kernels import embedding_bag, interaction, matmul

    return dict({"gemm_epilogue": matmul.DEFAULT_CONFIG, "embedding_bag_fwd": embedding_bag.FWD_DEFAULT,
                 "dot_interaction": interaction.DEFAULT_CONFIG}[kernel])


def experiment(s: dict, target: str, args) -> dict:
    """One experiment of every distinct op of every batch size (benchmarks/engine.py), no start points."""
    from benchmarks import engine

    kernels: dict[str, list] = {}
    for batch in s["batches"]:
        for _, kernel, problem in ops(s, batch):
            kernels.setdefault(kernel, []).append(problem.model_dump())
    smoke = target == "cpu-interpreter"
    return engine.experiment("dlrm-smoke" if smoke else "dlrm", [{"kernel": k, "problems": p} for k, p in kernels.items()],
                             engine.target(target), samples=args.configs, concurrency=args.threads, seed=0,
                             top_k=2 if smoke else 3, retime_rounds=2 if smoke else 5)


def search_ops(s: dict, target: str, args, out: str):
    """One engine sweep of experiment(): the Sweep, whose summaries give each op its config and
    its MLflow parent run; the store is copied to OUT/dlrm.mlflow.db."""
    from benchmarks import engine

    sw = engine.sweep(experiment(s, target, args), log=lambda m: print(m, flush=True))
    engine.keep_store(sw, out, "dlrm")
    return sw


def tma_usable(problem: dict):
    """A table's config may come from a neighbouring shape: TMA only where this GEMM's rows are
    16-byte aligned (A [M, K], W^T [K, N], C [M, N])."""
    from kernelevolve.kernels.spec import element_size

    def usable(cfg):
        if not cfg.get("TMA"):
            return True
        e = element_size(problem["dtype"])
        return (problem["K"] * e) % 16 == 0 and (problem["N"] * e) % 16 == 0
    return usable


def make_plan(s: dict, batch: int, device, sw) -> dict:
    """Each op's config: from the tuned table (sw None), else from the sweep's study of that op."""
    from benchmarks import engine
    from kernelevolve.kernels import tuned

    plan = {}
    for name, kernel, problem in ops(s, batch):
        p = problem.model_dump()
        if sw is None:
            dims = {k: v for k, v in p.items() if tuned.is_dim(v)}
            extras = {k: v for k, v in p.items() if k not in dims and k != "dtype"}
            cfg = tuned.config_for(kernel, dims, s["dtype"], device, None, usable=tma_usable(p), extras=extras)
            plan[name] = {"kernel": kernel, "problem": p, "source": "table" if cfg else "default (no table entry)",
                          "config": cfg or default_config(kernel)}
            continue
        summary = sw.by_problem(kernel, p)
        prov = engine.provenance(sw, summary)
        best = (summary or {}).get("best")
        counts = prov.get("configs") or {}
        plan[name] = {"kernel": kernel, "problem": p, "search": prov,
                      "config": best["config"] if best else default_config(kernel),
                      "source": (f"search: {sum(counts.values())} configs, {counts.get('ok', 0)} ok, "
                                 f"{prov.get('tuning_s', 0):.0f} s, run {prov.get('parent_run_id')}"
                                 if best else "default (the search found no correct config)")}
    return plan


# -- measuring ------------------------------------------------------------------------------
def timers(gpu: bool):
    """(timer, CUDA-graph timer or None), each fn -> p50 milliseconds by tuner.measure.clocks"""
    from kernelevolve.tuner.measure.clocks import measure

    if not gpu:
        return (lambda fn: measure(fn, "wall", wall_reps=2)[1]), None
    return (lambda fn: measure(fn, "do_bench", 25, 200)[1]), (lambda fn: measure(fn, "cudagraph", rep_ms=100)[1])


def run_batch(s, model, packed, ref_model, batch, device, dtype, sw) -> dict:
    import torch

    from kernelevolve.tuner.measure.clocks import host_us

    timer, graph_timer = timers(device.type == "cuda")
    phases, t0 = {}, time.time()
    plan = make_plan(s, batch, device, sw)
    phases["configs_s"] = time.time() - t0
    dense, bags = make_batch(s, batch, device, dtype, seed=batch)
    kjt = table_batched(bags)
    paths = {"eager": lambda: eager_forward(model, dense, bags),
             "ours": lambda: ours_forward(packed, plan, dense, kjt)}
    t0 = time.time()
    compiled = torch.compile(eager_forward, dynamic=False)
    paths["compile"] = lambda: compiled(model, dense, bags)
    if graph_timer is not None:  # inductor's own CUDA-graph mode: the peer of a graph-captured path
        torch._dynamo.reset()
        # The weights are plain tensors passed in (not nn.Module parameters): without this,
        # inductor's CUDA graphs would treat them as inputs and copy all tables into the graph's
        # own buffers on every call.
        for t in [model["weights"], *model["tables"], *(x for layer in model["bottom"] + model["top"] for x in layer)]:
            torch._dynamo.mark_static_address(t)
        graphed = torch.compile(eager_forward, dynamic=False, mode="reduce-overhead")
        paths["compile reduce-overhead"] = lambda: graphed(model, dense, bags)
    with torch.no_grad():
        outs = {}
        for k, fn in paths.items():  # compile's first calls compile (reduce-overhead: and record)
            outs[k] = fn().float()
            outs[k] = fn().float()
        phases["compile_s"] = time.time() - t0
        ref = eager_forward(ref_model, dense.float(), bags).float()
        rows = {}
        for k in paths:
            err = float((outs[k] - ref).norm() / ref.norm().clamp_min(1e-30))
            ms = timer(paths[k])
            prob_diff = (torch.sigmoid(outs[k]) - torch.sigmoid(outs["eager"])).abs().max()
            rows[k] = {"ms": ms, "samples_per_s": batch / (ms * 1e-3), "rel_error_vs_fp32": err,
                       "host_us": host_us(paths[k], calls=20) if graph_timer is not None else None,
                       "max_abs_prob_diff_vs_eager": float(prob_diff), "ok": err <= TOLERANCE[s["dtype"]]}
        # CUDA graphs last, eager's last of all: a path whose capture fails (an op that syncs
        # with the host) must not disturb the measurements of the others.
        for k in ("ours", "compile", "eager") if graph_timer is not None else ():
            try:
                gms = graph_timer(paths[k])
                rows[k].update(graph_ms=gms, graph_samples_per_s=batch / (gms * 1e-3))
            except Exception as exc:  # a path that cannot be captured says so
                rows[k]["graph_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    phases["total_s"] = phases["configs_s"] + (time.time() - t0)
    return {"batch": batch, "paths": rows, "plan": plan, "phases": phases}


def markdown(res: dict) -> str:
    s = res["sizes"]
    F = s["tables"] + 1
    arrow = " -> ".join
    phases = ", ".join(f"{b['batch']}: {b['phases']['configs_s']:.0f} / "
                       f"{b['phases']['total_s'] - b['phases']['configs_s']:.0f} s" for b in res["batches"])
    lines = [f"DLRM-style inference, {s['dtype']}, on {res['device']} (torch {res['torch']}, "
             f"triton {res['triton']})"
             + (" -- INTERPRETER: CPU wall time, not GPU performance" if res["interpreter"] else ""), "",
             f"- embeddings: {s['tables']} tables x {s['rows']:,} rows x dim {s['dim']}, sum-pooled bags of "
             f"0..{2 * s['bag']} ids (mean {s['bag']})",
             f"- bottom MLP {arrow(map(str, [s['dense'], *s['bottom']]))}; interaction of {F} vectors "
             f"({F * (F - 1) // 2} pairs); top MLP {arrow(map(str, [s['dim'] + F * (F - 1) // 2, *s['top']]))}",
             f"- our configs: {res['config_source']}",
             f"- wall: {res['wall_s']:.0f} s, of which the sweep {res['sweep_s']:.0f} s; per batch, configs / "
             f"torch.compile + checks + timing: {phases}", "",
             "| batch | path | samples/s | ms/batch | host us/batch | CUDA graph samples/s | CUDA graph vs eager's "
             "| vs eager | rel. error vs fp32 | ok |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for b in res["batches"]:
        base = b["paths"]["eager"]["samples_per_s"]
        for k, r in b["paths"].items():
            graph = (f"{r['graph_samples_per_s']:,.0f}" if "graph_samples_per_s" in r
                     else r.get("graph_error", "n/a")[:60])
            eg = b["paths"]["eager"].get("graph_samples_per_s")
            gvs = f"{r['graph_samples_per_s'] / eg:.2f}x" if eg and "graph_samples_per_s" in r else "n/a"
            host = f"{r['host_us']:.0f}" if r.get("host_us") else "n/a"
            lines.append(f"| {b['batch']} | {k} | {r['samples_per_s']:,.0f} | {r['ms']:.4f} | {host} | {graph} | {gvs} | "
                         f"{r['samples_per_s'] / base:.2f}x | {r['rel_error_vs_fp32']:.2e} | "
                         f"{'yes' if r['ok'] else 'NO'} |")
    lines += ["", "| batch | op | problem | config source | config |", "| --- | --- | --- | --- | --- |"]
    for b in res["batches"]:
        for name, p in b["plan"].items():
            shape = " ".join(f"{k}={v}" for k, v in p["problem"].items() if k != "dtype")
            lines.append(f"| {b['batch']} | {name} | {shape} | {p['source']} | {json.dumps(p['config'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out")
    ap.add_argument("--smoke", action="store_true", help="CPU: tiny sizes, Triton interpreter, fp32")
    ap.add_argument("--batches", help="comma-separated batch sizes (default 2048,16384; smoke 32)")
    ap.add_argument("--tables", type=int)
    ap.add_argument("--dtype", choices=sorted(TOLERANCE))
    ap.add_argument("--tuned", help="a tuned-config table (kernelevolve export) for our ops")
    ap.add_argument("--configs", type=int, default=24, help="candidates per op in the sweep (default 24)")
    ap.add_argument("--threads", type=int, default=8, help="candidates in flight per op (default 8)")
    args = ap.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before the first @triton.jit is imported
    import torch
    import triton

    from kernelevolve.kernels import tuned
    from kernelevolve.kernels.spec import DTYPES

    s = dict(SMOKE if args.smoke else FULL)
    s.update({k: v for k, v in (("tables", args.tables), ("dtype", args.dtype)) if v})
    if args.batches:
        s["batches"] = [int(b) for b in args.batches.split(",")]
    gpu = torch.cuda.is_available() and not args.smoke
    if not gpu and not args.smoke:
        print("no GPU: run with --smoke for the CPU interpreter check")
        return 2
    device, dtype = torch.device("cuda" if gpu else "cpu"), DTYPES[s["dtype"]]
    if args.tuned:
        tuned.load_table(args.tuned)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    sw = None
    if not args.tuned:  # every op of every batch size: one sweep of the product's engine
        from benchmarks import engine

        sw = search_ops(s, engine.gpu_kind()[0] if gpu else "cpu-interpreter", args, out)
    sweep_s = time.time() - t0
    model = make_model(s, device, dtype)
    packed = pack(model)
    ref_model = {"tables": [t.float() for t in model["tables"]],
                 **{k: [tuple(t.float() for t in layer) for layer in model[k]] for k in ("bottom", "top")}}
    res = {"sizes": s, "device": torch.cuda.get_device_name(device) if gpu else platform.processor() or "CPU",
           "interpreter": not gpu, "torch": torch.__version__, "triton": triton.__version__,
           "config_source": f"tuned table {args.tuned}" if args.tuned else
                            f"the product's engine: one sweep, {args.configs} candidates per op, "
                            f"MLflow experiment {sw.name} at {sw.uri} (copied to dlrm.mlflow.db)",
           "experiment": sw.name if sw else None, "tracking_uri": sw.uri if sw else None,
           "sweep_s": sweep_s, "setup_s": time.time() - t0 - sweep_s, "batches": []}
    for batch in s["batches"]:
        res["batches"].append(run_batch(s, model, packed, ref_model, batch, device, dtype, sw))
        print(json.dumps({"batch": batch, **{k: round(r["samples_per_s"]) for k, r in
                                             res["batches"][-1]["paths"].items()}}), flush=True)
    res["ok"] = all(r["ok"] for b in res["batches"] for r in b["paths"].values())
    res["wall_s"] = time.time() - t0
    from benchmarks import engine

    engine.write_results(out, "dlrm", res, markdown(res))
    print(f"\nall paths agree with the fp32 run: {res['ok']}   ({res['wall_s']:.0f} s)")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
