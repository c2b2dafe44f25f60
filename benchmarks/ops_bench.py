"""Ranking-model operators on one GPU: a brief tune of our Triton kernels beside torch's peers.

Sizes (bfloat16 unless said; `cases()` below is the source of truth):
  embedding_bag fwd, bwd   16384 bags, 20 ids per bag on average (uniform in 0..40, empty bags
                           included), dim 128, a 1M-row float32 table, sum pooling, dense grad;
                           the forward also with a bfloat16 table
  jagged (4 ops)           B 2048, max_len 512, D 128, lengths uniform in [0, 512] (50% fill);
                           jagged x dense bmm: B 1024, max_len 512, K = N = 128
  attention fwd            B 4, H 16, S 4096, head dim 128, non-causal and causal
  dot_interaction          B 16384, 27 features of 128 (351 pairs)
  softmax                  32768 x 1024 and 4096 x 32768 (in registers / online)
  layer_norm, rms_norm     65536 x 1024, forward and backward
For each op:
  (a) ours: found by the product's engine (`kernelevolve run`: tuner.execution.sweep). ONE
      experiment holds every op of the run (one study per op, all at once): --configs candidates
      per study, seeded TPE, --threads in flight per study, each candidate verified against the
      float64 reference in an isolated worker before it is timed, the top 3 re-timed interleaved
      with the torch peer. No start points (not even a kernel's default): every config reported
      was found by the search. Then, in this process, the study's winner is launched with the
      kernel's own spec.launch, verified again (output poisoned with NaN first) and timed beside
      the peers;
  (b) peers, timed in the same run: torch eager, torch.compile (default mode) of that eager code,
      and the specialised library where there is one (SDPA's flash backend for attention,
      F.embedding_bag and its aten backward for embedding bags, aten's jagged<->padded
      conversions for the jagged layout ops).
Where the run ids are: each row carries `experiment`, `tracking_uri`, `parent_run_id` (the MLflow
parent run of the op's study: every candidate it tried is a child run there), `configs` (the
study's counts by status) and `ours_tuning_s` (the study's wall time in the sweep; studies run
concurrently, so these overlap) beside `compile_tuning_s` (torch.compile's first call). The store
is copied to OUT/ops_bench.mlflow.db.
Timing (--clock, tuner.measure.clocks by name; the sweep uses it too): "clean" (default) empties
the L2 by reading a 256 MB buffer and charges each call the write-back of what it leaves dirty;
"zeroing" is the clock `do_bench`, which empties it by writing zeros, so the timed kernel also pays
the write-back of up to 50 MB of someone else's dirty lines: 8.6 us of our 70 us embedding-bag
forward on the H100, 6 us of F.embedding_bag's 140 us, under 1% of a 1 GiB copy
(docs/results/l2_flush_probe.json). Ours, every peer and the bandwidth reference (a 1 GiB device
copy, bytes read + written, at the start of the run) are timed with the same clock in the same
run; do_bench's p50 of ours and of each peer is kept beside it in the JSON. p20/p50/p80 in ms.
Prints one markdown table and writes it, with a JSON of every row, to --out DIR. A failure of
one op (or one peer) is recorded with its error and the run goes on (but a CUDA illegal memory
access leaves the process's CUDA context unusable, so the ops after it would report errors too);
a failing candidate is a record of the sweep.

On the GPU machine (from the project root): `source .devbundle/activate.sh`, then
`python benchmarks/ops_bench.py --out "$OUT"`. Writes ops_bench.md, ops_bench.json, ops_bench.mlflow.db.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks import engine  # noqa: E402
from kernelevolve.kernels import embedding_bag as eb, jagged as jg, norms  # noqa: E402
from kernelevolve.tuner.experiment import registry  # noqa: E402
from kernelevolve.tuner.measure.clocks import measure  # noqa: E402

CLOCKS = {"clean": "clean", "zeroing": "do_bench"}  # --clock -> tuner.measure.clocks' name
WARMUP_MS, REP_MS = 25, 100  # ours (the winner) and the peers
COPY_BYTES = 1 << 30  # the bandwidth reference: a 1 GiB device copy
DEVICE = "cuda"


@dataclass
class Case:
    """One table row: an op at one problem, with its peers. Peers take (inputs, aux) where aux
    is what `prepare` precomputes once from the inputs (index tensors an eager version needs)."""

    label: str
    kernel: str  # its name in tuner.experiment.registry
    fields: dict  # the problem, as an experiment file gives it
    shape: str
    eager: Callable | None = None  # None: the spec's own baseline
    library: Callable | None = None
    library_name: str = ""
    prepare: Callable = field(default=lambda inputs: None)
    compute_bound: bool = False


# ---- peers that are not a spec's own baseline ----------------------------------------------------
def _bag_positions(inputs):
    indices, offsets = inputs[1], inputs[2]
    bags = torch.searchsorted(offsets, torch.arange(indices.numel(), device=offsets.device), right=True) - 1
    lengths = (offsets[1:] - offsets[:-1]).clamp(min=1)
    return bags, lengths


def embedding_bag_fwd_eager(inputs, aux):
    """Gather the rows, then add each into its bag: what one writes without F.embedding_bag."""
    weight, indices, offsets, mode = inputs
    bags, lengths = aux
    out = torch.zeros((offsets.numel() - 1, weight.shape[1]), dtype=weight.dtype, device=weight.device)
    out.index_add_(0, bags, weight[indices])
    return out / lengths[:, None].to(out.dtype) if mode == "mean" else out


def embedding_bag_bwd_eager(inputs, aux):
    grad, indices, offsets, num_rows, mode = inputs[:5]
    bags, lengths = aux
    rows = grad[bags] / lengths[bags, None].to(grad.dtype) if mode == "mean" else grad[bags]
    table = torch.zeros((num_rows, grad.shape[1]), dtype=grad.dtype, device=grad.device)
    return table.index_add_(0, indices, rows)


def to_padded_eager(inputs, aux):
    values, offsets, max_len = inputs[:3]
    seq, pos = aux
    dense = values.new_zeros((offsets.numel() - 1, max_len, values.shape[1]))
    dense[seq, pos] = values
    return dense


def to_jagged_eager(inputs, aux):
    seq, pos = aux
    return inputs[0][seq, pos]


def jagged_bmm_torch(inputs, aux):
    """What torch does for a jagged x: pad it, bmm, and take the real rows of the padded result."""
    x, offsets, y, max_len = inputs[:4]
    seq, pos = aux
    padded = torch.ops.aten._jagged_to_padded_dense_forward(x, [offsets], [max_len], 0.0)
    return torch.bmm(padded, y)[seq, pos]


def jagged_bmm_prepadded(inputs, aux):
    """torch.bmm alone on an x that is already padded (inputs[4]): no conversion is paid for, the
    padded output is not unpadded; the floor of any padded-dense approach."""
    return torch.bmm(inputs[4], inputs[2])


def rms_norm_composed(inputs, aux):
    """RMSNorm written out in torch ops, as model code does without F.rms_norm (HF's LlamaRMSNorm):
    fp32 square, mean, rsqrt, scale, cast, weight."""
    x, w = inputs[:2]
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norms.EPS)).to(x.dtype) * w


def _jagged_positions(inputs):
    offsets = inputs[1]
    return jg.positions(offsets, int(offsets[-1]))


def attention_eager(inputs, aux):
    """softmax(q k^T / sqrt(d)) v composed from torch ops (scores materialised)."""
    q, k, v, causal = inputs
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        scores = scores.masked_fill(aux, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


def _causal_mask(inputs):
    q = inputs[0]
    return torch.ones(q.shape[2], q.shape[2], dtype=torch.bool, device=q.device).triu(1) if inputs[3] else None


def attention_flash(inputs, aux):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v, causal = inputs
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


# ---- the problems: ranking-sized ---------------------------------------------------------------
def cases() -> list[Case]:
    EB = dict(num_bags=16384, avg_bag_len=20, dim=128, num_rows=1_000_000, mode="sum", dtype="float32")
    JG = dict(batch=2048, max_len=512, dim=128, dtype="bfloat16")  # lengths uniform in [0, 512]: 50% fill
    JG_SHAPE = "B 2048, max_len 512 (50% fill), D 128"
    NORM = dict(rows=65536, cols=1024, dtype="bfloat16")
    ATT = dict(batch=4, heads=16, seq_len=4096, head_dim=128, dtype="bfloat16")
    return [
        Case("embedding_bag fwd", "embedding_bag_fwd", EB, "16384 bags, avg 20 ids, dim 128, 1M rows, sum",
             eager=embedding_bag_fwd_eager, library=lambda i, a: eb.EMBEDDING_BAG_FWD.baseline(i),
             library_name="F.embedding_bag", prepare=_bag_positions),
        Case("embedding_bag fwd bf16", "embedding_bag_fwd", dict(EB, dtype="bfloat16"),
             "16384 bags, avg 20 ids, dim 128, 1M rows, sum; a bf16 table (as inference serves it)",
             eager=embedding_bag_fwd_eager, library=lambda i, a: eb.EMBEDDING_BAG_FWD.baseline(i),
             library_name="F.embedding_bag", prepare=_bag_positions),
        Case("embedding_bag bwd", "embedding_bag_bwd", EB, "16384 bags, avg 20 ids, dim 128, 1M rows, sum; dense grad",
             eager=embedding_bag_bwd_eager, library=lambda i, a: eb.EMBEDDING_BAG_BWD.baseline(i),
             library_name="aten _embedding_bag_backward", prepare=_bag_positions),
        Case("jagged_to_padded_dense", "jagged_to_padded_dense", JG, JG_SHAPE, eager=to_padded_eager,
             library=lambda i, a: jg.JAGGED_TO_PADDED.baseline(i),
             library_name="aten _jagged_to_padded_dense_forward", prepare=_jagged_positions),
        Case("padded_dense_to_jagged", "padded_dense_to_jagged", JG, JG_SHAPE, eager=to_jagged_eager,
             library=lambda i, a: jg.PADDED_TO_JAGGED.baseline(i),
             library_name="aten _padded_dense_to_jagged_forward", prepare=_jagged_positions),
        Case("jagged_softmax", "jagged_softmax", JG, JG_SHAPE + "; eager: softmax of the -inf padded dense"),
        Case("jagged_dense_bmm", "jagged_dense_bmm", dict(batch=1024, max_len=512, k=128, n=128, dtype="bfloat16"),
             "B 1024, max_len 512 (50% fill), K 128, N 128; eager: pad, bmm, unpad; library: bmm of a "
             "pre-padded x", eager=jagged_bmm_torch, library=jagged_bmm_prepadded,
             library_name="torch.bmm, x pre-padded", prepare=_jagged_positions, compute_bound=True),
        Case("attention fwd", "attention", dict(ATT, causal=False), "B 4, H 16, S 4096, d 128",
             eager=attention_eager, library=attention_flash, library_name="SDPA flash", prepare=_causal_mask,
             compute_bound=True),
        Case("attention fwd causal", "attention", dict(ATT, causal=True), "B 4, H 16, S 4096, d 128, causal",
             eager=attention_eager, library=attention_flash, library_name="SDPA flash", prepare=_causal_mask,
             compute_bound=True),
        Case("dot_interaction", "dot_interaction", dict(batch=16384, features=27, dim=128, dtype="bfloat16"),
             "B 16384, 27 features, D 128 (351 pairs)"),
        Case("softmax", "softmax", dict(rows=32768, cols=1024, dtype="bfloat16"), "32768 x 1024"),
        Case("softmax long rows", "softmax", dict(rows=4096, cols=32768, dtype="bfloat16"), "4096 x 32768"),
        Case("layer_norm fwd", "layer_norm_fwd", NORM, "65536 x 1024"),
        Case("layer_norm bwd", "layer_norm_bwd", NORM, "65536 x 1024 (dx, dw, db)"),
        Case("rms_norm fwd", "rms_norm_fwd", NORM, "65536 x 1024", library=rms_norm_composed,
             library_name="composed torch ops, HF-style RMSNorm"),
        Case("rms_norm bwd", "rms_norm_bwd", NORM, "65536 x 1024 (dx, dw)"),
    ]


def build(todo: list[Case], args, tgt: dict) -> dict:
    """The run's one experiment: every op a study of its kernel."""
    kernels: dict[str, list] = {}
    for case in todo:
        kernels.setdefault(case.kernel, []).append(case.fields)
    return engine.experiment("ops-bench", [{"kernel": k, "problems": p} for k, p in kernels.items()], tgt,
                             samples=args.configs, concurrency=args.threads, seed=args.seed,
                             clock=CLOCKS[args.clock])


# ---- measuring -------------------------------------------------------------------------------
CLOCK = "clean"  # main() sets the run's clock (a name of tuner.measure.clocks)


def bench(fn) -> list[float]:
    return list(measure(fn, CLOCK, WARMUP_MS, REP_MS))  # a list: rows are JSON, and _ms reads lists


def zeroing_p50(fn) -> float:
    """do_bench's p50 (L2 emptied by writing zeros), kept beside the run's clock for comparison."""
    return measure(fn, "do_bench", WARMUP_MS, REP_MS)[1]


def copy_bytes_per_s() -> float:
    """Bytes read + written per second by a 1 GiB device copy, with the run's clock."""
    src = torch.empty(COPY_BYTES // 4, dtype=torch.float32, device=DEVICE)
    dst = torch.empty_like(src)
    p50 = bench(lambda: dst.copy_(src))[1]
    return 2.0 * COPY_BYTES / (p50 * 1e-3)


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def time_peer(fn, inputs, aux, compiled: bool, row: dict, key: str):
    """row[key]: (p20, p50, p80, zeroing-clock p50) of a peer, or an error string; a compiled peer's
    first call (its compile) goes to row[<peer>_tuning_s]."""
    try:
        target = torch.compile(fn) if compiled else fn
        t0 = time.perf_counter()
        target(inputs, aux)  # warm-up: the compile happens here
        torch.cuda.synchronize()
        if compiled:
            row[key.replace("_ms", "_tuning_s")] = round(time.perf_counter() - t0, 2)
        row[key] = bench(lambda: target(inputs, aux)) + [zeroing_p50(lambda: target(inputs, aux))]
    except Exception as exc:
        row[key] = _err(exc)


def run_case(case: Case, sw: engine.Sweep, args, copy_bw: float) -> dict:
    spec = registry.load(registry.resolve_ref(case.kernel)).kernel
    problem = spec.problem(**case.fields)
    summary = sw.by_problem(case.kernel, case.fields)
    prov = engine.provenance(sw, summary)
    row = {"op": case.label, "kernel": spec.name, "shape": case.shape, "problem": problem.model_dump(),
           "dtype": getattr(problem, "dtype", ""), "library_name": case.library_name,
           **{k: v for k, v in prov.items() if k != "tuning_s"}, "ours_tuning_s": prov.get("tuning_s")}
    inputs = spec.make_inputs(problem, torch.device(DEVICE), args.seed)
    # "ours" is the Triton kernel set against the libraries: the best Triton config, not the
    # dispatched winner (a GEMM study's winner may be the vendor path, i.e. the peer itself)
    best = (summary or {}).get("best_triton", (summary or {}).get("best"))
    if best:
        row["best_config"] = best["config"]
        try:
            fn = engine.verified_launch(spec, problem, inputs, spec.reference(inputs), best["config"])
            row["ours_ms"] = bench(fn)
            row["ours_zeroing_p50_ms"] = zeroing_p50(fn)
        except Exception as exc:  # incorrect here, or failing: a result
            row["error"] = _err(exc)
    else:
        row.setdefault("error", "the sweep found no config verified correct")
    torch.cuda.empty_cache()  # the float64 reference can be large (attention): freed before the peers
    aux = case.prepare(inputs)
    eager = case.eager or (lambda i, a: spec.baseline(i))
    time_peer(eager, inputs, aux, False, row, "eager_ms")
    if args.no_compile:
        row["compile_ms"] = "skipped"
    else:
        time_peer(eager, inputs, aux, True, row, "compile_ms")
    row["library_ms"] = None
    if case.library:
        time_peer(case.library, inputs, aux, False, row, "library_ms")
    p50 = row.get("ours_ms", [None, None])[1]
    if p50:
        s = p50 * 1e-3
        row.update(gbps=spec.bytes_moved(problem) / s / 1e9, tflops=spec.flops(problem) / s / 1e12,
                   pct_copy_bw=100.0 * spec.bytes_moved(problem) / s / copy_bw)
        for peer in ("eager", "compile", "library"):
            t = row.get(f"{peer}_ms")
            if isinstance(t, list):
                row[f"speedup_vs_{peer}"] = t[1] / p50
    row["compute_bound"] = case.compute_bound
    return row


# ---- reporting ---------------------------------------------------------------------------------
def _ms(v):
    if isinstance(v, list):
        return f"{v[1]:.4f}"
    return "—" if v is None else "error" if isinstance(v, str) and v != "skipped" else str(v)


def table(rows, copy_bw: float) -> str:
    head = (f"| op | shape | dtype | ours p50 ms | rate | % of copy ({copy_bw / 1e12:.2f} TB/s) | eager ms "
            "| compile ms | library ms "
            "| vs eager | vs compile | vs library |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        if "ours_ms" in r:
            rate = f"{r['tflops']:.1f} TFLOP/s" if r["compute_bound"] else f"{r['gbps']:.0f} GB/s"
            pct = f"{r['pct_copy_bw']:.0f}%"
        else:
            rate, pct = r.get("error", "no correct config"), ""
        speedups = [r.get(f"speedup_vs_{k}") for k in ("eager", "compile", "library")]
        sp = [f"{v:.2f}x" if v is not None else "—" for v in speedups]
        lib = _ms(r.get("library_ms")) + (f" ({r['library_name']})" if r.get("library_name") else "")
        lines.append(f"| {r['op']} | {r['shape']} | {r['dtype']} | {_ms(r.get('ours_ms'))} | {rate} | {pct} | "
                     f"{_ms(r.get('eager_ms'))} | {_ms(r.get('compile_ms'))} | {lib} | " + " | ".join(sp) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for ops_bench.md, .json and .mlflow.db")
    ap.add_argument("--configs", type=int, default=48, help="candidates per op (search.samples)")
    ap.add_argument("--threads", type=int, default=8, help="candidates in flight per op (search.concurrency)")
    ap.add_argument("--only", default="", help="comma-separated substrings of op labels to run")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="clean",
                    help="how the L2 is emptied before each timed call (module doc)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("ops_bench needs a CUDA GPU; torch sees none", file=sys.stderr)
        return 2
    import triton

    global CLOCK
    CLOCK = CLOCKS[args.clock]
    todo = [c for c in cases() if not args.only or any(s in c.label for s in args.only.split(","))]
    kind = engine.gpu_kind()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sw = engine.sweep(build(todo, args, engine.target(kind)), log=lambda m: print(m, flush=True))
    meta = {"gpu": torch.cuda.get_device_name(), "hardware_profile": kind, "torch": torch.__version__,
            "triton": triton.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "configs_per_op": args.configs,
            "seed": args.seed, "experiment": sw.name, "tracking_uri": sw.uri,
            "mlflow_db": engine.keep_store(sw, str(out), "ops_bench"), "sweep_s": time.perf_counter() - start,
            "timing": f"clock {CLOCK!r} (tuner.measure.clocks), p20/p50/p80 ms; the sweep's candidates and "
                      f"top 3 by the engine, the winner and peers here (warm-up {WARMUP_MS} ms, {REP_MS} ms)"}
    copy_bw = meta["copy_bytes_per_s"] = copy_bytes_per_s()
    torch.cuda.empty_cache()  # the copy's 2 GiB
    print(json.dumps(meta), flush=True)
    rows = []
    for case in todo:
        print(f"== {case.label} [{case.shape}]", flush=True)
        t0 = time.perf_counter()
        try:
            row = run_case(case, sw, args, copy_bw=copy_bw)
        except Exception as exc:  # the op failed as a whole: say why, go on with the next
            traceback.print_exc()
            row = {"op": case.label, "shape": case.shape, "dtype": case.fields.get("dtype", ""),
                   **engine.provenance(sw, sw.by_problem(case.kernel, case.fields)),
                   "error": _err(exc), "compute_bound": case.compute_bound}
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        torch._dynamo.reset()
        torch.cuda.empty_cache()
    md = table(rows, copy_bw)
    print("\n" + md)
    head = (f"ours: the product's engine, MLflow experiment `{sw.name}` at {sw.uri} (copied to "
            f"{meta['mlflow_db']}); each row's parent run is in ops_bench.json")
    (out / "ops_bench.md").write_text(f"{json.dumps(meta)}\n\n{head}\n\n{md}\n")
    (out / "ops_bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    total = time.perf_counter() - start
    print(f"\nwrote {out / 'ops_bench.md'} and {out / 'ops_bench.json'}; total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
