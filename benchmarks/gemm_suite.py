"""The ranking-model GEMM suite on one GPU: our tuned GEMM family beside the vendor library.

Shapes (bf16; SHAPES below is the source of truth): large square 8192^3; MLP layers (M up to
65536, N and K 256-4096); weight-bound small M (M <= 512, N = K >= 4096); odd sizes. Then: fused
GEMM + bias + GELU (kernels/gemm_epilogue.py) vs torch eager's separate ops, and conv2d NHWC
(kernels/conv2d.py) vs F.conv2d on channels_last tensors (cuDNN), three ResNet layers.

  ours            found by the product's engine (`kernelevolve run`: tuner.execution.sweep): ONE
                  experiment holds every shape of the run (kernels matmul, gemm_epilogue, conv2d,
                  one study per shape, all at once), --configs candidates per study, seeded TPE,
                  --threads in flight per study; every candidate verified against the float64
                  reference in an isolated worker; each study's top 3 re-timed interleaved with
                  the torch peer. No start points: nothing known-good for these shapes is given.
                  Then, in this process, the study's winner is launched with the kernel's own
                  spec.launch, verified again (output poisoned with NaN first) and timed beside
                  the peers by the row's clock
  cuBLAS          torch.matmul (no tuning)
  torch.compile   torch.compile(mode="max-autotune") of a @ b (tuning = its first call)
  triton autotune @triton.autotune over the config list of Triton's tutorial
                  python/tutorials/03-matrix-multiplication.py, get_cuda_autotune_config()
                  (values copied; the tutorial is MIT-licensed, Copyright 2018-2020 Philippe
                  Tillet, 2020-2022 OpenAI); tuning = its first call

Where the run ids are: every row carries `experiment`, `tracking_uri` and `parent_run_id` (the
MLflow parent run of the study that found the config: every candidate it tried, verified or not,
is a child run there) and `ours_tuning_s` (the study's wall time in the sweep; the studies run
concurrently, so these overlap) beside the peer's own `tuning_s`. The MLflow store is copied to
OUT/gemm_suite.mlflow.db (`mlflow ui --backend-store-uri sqlite:///OUT/gemm_suite.mlflow.db`).

Clocks (tuner.measure.clocks, by name): the sweep screens and re-times with --clock (default
`clean`: events, the L2 emptied by a read pass, each call charged its own write-back; do_bench's
zeroing flush hands the timed kernel ~50 MB of someone else's dirty lines). The side-by-side rows
use the same named clock for ours and every peer of a shape: `cudagraph` where the library peer
(cuBLAS, cuDNN, eager) runs under SHORT_KERNEL_MS (50 us), since at that size event timing
measures the host's Python launch (those rows also keep the event-timed p50 and the host's cost
per call, host_us), else --clock (whose rows also keep do_bench's p50).

Columns: latency p20/p50/p80 (ms), TFLOP/s at p50, tuning wall time (s), ratio to the peer;
last line: the geomean over the GEMM shapes of ours / cuBLAS (throughput). --budget-s is the time
left after the sweep for the peers (their tuning included): a peer that no longer fits is skipped
with that reason. A failing shape, peer or config prints its error and the run goes on (a CUDA
illegal memory access, though, leaves the process's CUDA context unusable for whatever follows).

On the GPU machine, from the project root: `source .devbundle/activate.sh`, then
`python benchmarks/gemm_suite.py --out "$OUT"`. Writes gemm_suite.md, gemm_suite.json and
gemm_suite.mlflow.db.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from benchmarks import engine  # noqa: E402
from kernelevolve.kernels import conv2d as cv, gemm_epilogue as ge  # noqa: E402
from kernelevolve.tuner.experiment import registry  # noqa: E402
from kernelevolve.tuner.measure.clocks import host_us, measure  # noqa: E402
from kernelevolve.tuner.measure.verify import check  # noqa: E402

SHAPES = [  # (label, M, N, K)
    ("square 8192^3", 8192, 8192, 8192),
    ("MLP 65536x512x1024", 65536, 512, 1024),
    ("MLP 65536x256x512", 65536, 256, 512),
    ("MLP 16384x1024x4096", 16384, 1024, 4096),
    ("weight-bound 64x8192x8192", 64, 8192, 8192),
    ("weight-bound 512x4096x4096", 512, 4096, 4096),
    ("odd 30000x768x383", 30000, 768, 383),
    ("odd 1000x1000x383", 1000, 1000, 383),
]
FUSED = [  # (label, problem fields): a large square layer and two ranking-MLP layers
    ("fused 16384x4096x4096 +bias +gelu", dict(M=16384, N=4096, K=4096, activation="gelu")),
    ("fused MLP 65536x1024x1024 +bias +gelu", dict(M=65536, N=1024, K=1024, activation="gelu")),
    ("fused MLP 65536x512x1024 +bias +relu", dict(M=65536, N=512, K=1024, activation="relu")),
]
CONV_LAYERS = [  # ResNet-style 3x3, stride 1, padding 1, batch 32
    ("conv 56x56x64->64 3x3", dict(N=32, H=56, W=56, C_in=64, C_out=64)),
    ("conv 28x28x128->128 3x3", dict(N=32, H=28, W=28, C_in=128, C_out=128)),
    ("conv 14x14x256->256 3x3", dict(N=32, H=14, W=14, C_in=256, C_out=256)),
]
SHORT_KERNEL_MS = 0.05
WARMUP_MS, REP_MS = 25, 100  # the side-by-side timing of ours and the peers


# ---- Triton's tutorial matmul with its autotune list (03-matrix-multiplication.py) ---------------
def tutorial_configs():
    c = triton.Config
    return [c({"BLOCK_SIZE_M": m, "BLOCK_SIZE_N": n, "BLOCK_SIZE_K": k, "GROUP_SIZE_M": 8}, num_stages=s, num_warps=w)
            for m, n, k, s, w in [(128, 256, 64, 3, 8), (64, 256, 32, 4, 4), (128, 128, 32, 4, 4),
                                  (128, 64, 32, 4, 4), (64, 128, 32, 4, 4), (128, 32, 32, 4, 4),
                                  (64, 32, 32, 5, 2), (32, 64, 32, 5, 2),
                                  # "Good config for fp8 inputs." in the tutorial's list
                                  (128, 256, 128, 3, 8), (256, 128, 128, 3, 8), (256, 64, 128, 4, 4),
                                  (64, 256, 128, 4, 4), (128, 128, 128, 4, 4), (128, 64, 64, 4, 4),
                                  (64, 128, 64, 4, 4), (128, 32, 64, 4, 4)]]


@triton.autotune(configs=tutorial_configs(), key=["M", "N", "K"])
@triton.jit
def tutorial_matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn,
                           stride_cm, stride_cn, BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr,
                           BLOCK_SIZE_K: tl.constexpr, GROUP_SIZE_M: tl.constexpr):
    # The tutorial's kernel as it is, but for the output cast (the tutorial writes fp16).
    pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_SIZE_M)
    num_pid_n = tl.cdiv(N, BLOCK_SIZE_N)
    num_pid_in_group = GROUP_SIZE_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_SIZE_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_SIZE_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m
    offs_am = (pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)) % M
    offs_bn = (pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)) % N
    offs_k = tl.arange(0, BLOCK_SIZE_K)
    a_ptrs = a_ptr + (offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak)
    b_ptrs = b_ptr + (offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn)
    accumulator = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_SIZE_K)):
        a = tl.load(a_ptrs, mask=offs_k[None, :] < K - k * BLOCK_SIZE_K, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < K - k * BLOCK_SIZE_K, other=0.0)
        accumulator = tl.dot(a, b, accumulator)
        a_ptrs += BLOCK_SIZE_K * stride_ak
        b_ptrs += BLOCK_SIZE_K * stride_bk
    c = accumulator.to(c_ptr.dtype.element_ty)
    offs_cm = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
    offs_cn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    c_ptrs = c_ptr + stride_cm * offs_cm[:, None] + stride_cn * offs_cn[None, :]
    tl.store(c_ptrs, c, mask=(offs_cm[:, None] < M) & (offs_cn[None, :] < N))


def tutorial_matmul(a, b):
    M, K = a.shape
    N = b.shape[1]
    c = torch.empty((M, N), device=a.device, dtype=a.dtype)
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_SIZE_M"]) * triton.cdiv(N, meta["BLOCK_SIZE_N"]),)  # noqa: E731
    tutorial_matmul_kernel[grid](a, b, c, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
                                 c.stride(0), c.stride(1))
    return c


# ---- timing, verification, rows -----------------------------------------------------------------
def row(section, shape, impl, flops, times=None, tuning_s=0.0, **extra) -> dict:
    r = {"section": section, "shape": shape, "impl": impl, "tuning_s": round(tuning_s, 2), **extra}
    if times:
        r.update(latency_p20_ms=times[0], latency_ms=times[1], latency_p80_ms=times[2],
                 tflops=flops / (times[1] * 1e-3) / 1e12)
    return r


def timed(fn, clock: str) -> tuple[tuple, str]:
    """(p20, p50, p80) by the named clock; do_bench if that clock fails (a peer running its own
    CUDA graphs cannot be captured in another)."""
    try:
        return measure(fn, clock, WARMUP_MS, REP_MS), clock
    except Exception as exc:  # noqa: BLE001
        print(f"{clock} timing failed ({type(exc).__name__}); do_bench instead", flush=True)
        return measure(fn, "do_bench", WARMUP_MS, REP_MS), "do_bench"


def other_clocks(fn, clock: str) -> dict:
    """Beside the row's clock: a graph-timed row gets what an eager Python caller sees (event-timed
    p50, host us per call); an event-timed row of another clock do_bench's p50."""
    if clock == "cudagraph":
        return {"events_ms": measure(fn, "do_bench", WARMUP_MS, REP_MS)[1], "host_us": host_us(fn)}
    return {"do_bench_ms": measure(fn, "do_bench", WARMUP_MS, REP_MS)[1]} if clock != "do_bench" else {}


def timed_peer(section, shape, impl, fn, ref, flops, deadline, need_s, clock, prov) -> dict:
    """Call a peer once (its tuning, if any), verify it, time it with the shape's clock; skip it if
    it no longer fits."""
    if deadline - time.perf_counter() < need_s:
        return row(section, shape, impl, flops, error=f"skipped: less than {need_s} s of the time budget left", **prov)
    try:
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        tuning_s = time.perf_counter() - t0
        verdict = check(out, ref)
        times, used = timed(fn, clock)
        return row(section, shape, impl, flops, times, tuning_s, verified=verdict.ok,
                   error=None if verdict.ok else verdict.reason, clock=used, **other_clocks(fn, used), **prov)
    except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
        traceback.print_exc()
        return row(section, shape, impl, flops, error=f"{type(exc).__name__}: {exc}"[:500], **prov)


# ---- the suite: one sweep, then each shape side by side -----------------------------------------
def jobs(only: str | None) -> list[tuple[str, str, str, dict]]:
    """(label, section, kernel, problem fields) of every shape the run measures."""
    out = [(lbl, "gemm", "matmul", dict(M=m, N=n, K=k, dtype="bfloat16")) for lbl, m, n, k in SHAPES]
    out += [(lbl, "fused", "gemm_epilogue", dict(f, dtype="bfloat16")) for lbl, f in FUSED]
    out += [(lbl, "conv", "conv2d", dict(f, dtype="bfloat16")) for lbl, f in CONV_LAYERS]
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        out = [j for j in out if any(w == j[1] or w in j[0] for w in wanted)]
    return out


def build(todo, args, tgt: dict) -> dict:
    """The run's one experiment: every shape a study of its kernel."""
    kernels = {}
    for _, _, kernel, fields in todo:
        kernels.setdefault(kernel, []).append(fields)
    return engine.experiment("gemm-suite", [{"kernel": k, "problems": p} for k, p in kernels.items()], tgt,
                             samples=args.configs, concurrency=args.threads, seed=args.seed, clock=args.clock)


PEERS = {  # section -> [(impl, fn(inputs) -> callable, seconds it needs (its tuning))]
    "gemm": [("cuBLAS", lambda i: (lambda: torch.matmul(*i)), 2),
             ("torch.compile max-autotune", lambda i: compiled_matmul(*i), 30),
             ("triton autotune (tutorial configs)", lambda i: (lambda: tutorial_matmul(*i)), 30)],
    "fused": [("torch eager (separate ops)", lambda i: (lambda: ge.baseline(i)), 2)],
    "conv": [("cuDNN F.conv2d channels_last", lambda i: (lambda: cv.baseline(i)), 2)],
}


def compiled_matmul(a, b):
    torch._dynamo.reset()  # a fresh compile per shape: its tuning is what we measure
    compiled = torch.compile(lambda x, y: x @ y, mode="max-autotune", dynamic=False)
    return lambda: compiled(a, b)


def shape_rows(label, section, kernel, fields, sw: engine.Sweep, args, deadline) -> list[dict]:
    """Ours (the study's winner, verified again here) and the section's peers, by one clock."""
    spec = registry.load(registry.resolve_ref(kernel)).kernel
    problem = spec.problem(**fields)
    summary = sw.by_problem(kernel, fields)
    prov = engine.provenance(sw, summary)
    tags = {k: v for k, v in prov.items() if k != "tuning_s"}  # the row's own tuning_s is its impl's
    ours_tuning = {"experiment": prov["experiment"], "tracking_uri": prov["tracking_uri"],
                   "parent_run_id": prov["parent_run_id"], "ours_tuning_s": prov.get("tuning_s")}
    inputs = spec.make_inputs(problem, torch.device("cuda"), args.seed)
    ref, flops = spec.reference(inputs), spec.flops(problem)
    peers = PEERS[section]
    lib = peers[0][1](inputs)
    lib()
    clock = "cudagraph" if measure(lib, "do_bench", WARMUP_MS, REP_MS)[1] < SHORT_KERNEL_MS else args.clock
    # "ours" is the Triton kernel set against the libraries: the best Triton config, not the
    # dispatched winner (a GEMM study's winner may be the vendor path, i.e. the peer itself)
    best = (summary or {}).get("best_triton", (summary or {}).get("best"))
    if best is None:
        ours = row(section, label, "ours", flops, tuning_s=prov.get("tuning_s", 0.0),
                   **{**tags, "error": prov.get("error") or "the sweep found no config verified correct"})
    else:
        try:
            fn = engine.verified_launch(spec, problem, inputs, ref, best["config"])
            times, used = timed(fn, clock)
            ours = row(section, label, "ours", flops, times, prov["tuning_s"], verified=True, config=best["config"],
                       clock=used, **other_clocks(fn, used), **tags)
        except Exception as exc:  # noqa: BLE001 - incorrect here, or failing: a result
            ours = row(section, label, "ours", flops, tuning_s=prov["tuning_s"], config=best["config"],
                       **{**tags, "error": f"{type(exc).__name__}: {exc}"[:500]})
    rows = [ours]
    for impl, make, need_s in peers:
        try:
            fn = make(inputs)
        except Exception as exc:  # noqa: BLE001
            rows.append(row(section, label, impl, flops, error=f"{type(exc).__name__}: {exc}"[:500], **ours_tuning))
            continue
        rows.append(timed_peer(section, label, impl, fn, ref, flops, deadline, need_s, clock, ours_tuning))
    return rows


def add_ratios(rows):
    """ratio = our TFLOP/s over each peer's, on the ours row of each shape."""
    for r in rows:
        if r["impl"] != "ours" or "tflops" not in r:
            continue
        for p in rows:
            if p["shape"] == r["shape"] and p is not r and "tflops" in p:
                r.setdefault("vs", {})[p["impl"]] = r["tflops"] / p["tflops"]


def markdown(rows, geomean, meta) -> str:
    lines = [f"GPU: {meta['gpu']} | torch {meta['torch']} | triton {meta['triton']} | bf16 | "
             f"p20/p50/p80 by the clock `{meta['args']['clock']}` (shapes whose peer runs under "
             f"{SHORT_KERNEL_MS * 1e3:.0f} us: `cudagraph`), ours and peers alike | sweep {meta['sweep_s']:.0f} s, "
             f"wall {meta['wall_s']:.0f} s",
             f"ours: the product's engine, MLflow experiment `{meta['experiment']}` at {meta['tracking_uri']} "
             f"(copied to {meta['mlflow_db']}); each row's parent run is in gemm_suite.json",
             "",
             "| section | shape | impl | p20 ms | p50 ms | p80 ms | TFLOP/s | tuning s | vs peer | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        t = lambda k, f="{:.4f}": f.format(r[k]) if k in r else "-"  # noqa: E731
        vs = ", ".join(f"{v:.2f}x {k}" for k, v in r.get("vs", {}).items()) or "-"
        note = r.get("error") or (json.dumps(r["config"], sort_keys=True) if r.get("config") else "")
        if r["impl"] == "ours" and r.get("parent_run_id"):
            note = f"run {r['parent_run_id']}; " + note
        if "events_ms" in r:  # a short kernel, timed in CUDA graphs: what an eager Python caller sees
            note = f"timed in CUDA graphs; event-timed p50 {r['events_ms']:.4f} ms, host {r['host_us']:.0f} us/call; " + note
        elif "do_bench_ms" in r:
            note = f"do_bench p50 {r['do_bench_ms']:.4f} ms; " + note
        lines.append(f"| {r['section']} | {r['shape']} | {r['impl']} | {t('latency_p20_ms')} | {t('latency_ms')} | "
                     f"{t('latency_p80_ms')} | {t('tflops', '{:.1f}')} | {r['tuning_s']:.1f} | {vs} | {note} |")
    lines += ["", f"geomean ours / cuBLAS (throughput) over {geomean[1]} GEMM shapes: "
              + (f"{geomean[0]:.3f}x" if geomean[1] else "n/a")]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for gemm_suite.md, .json and .mlflow.db")
    ap.add_argument("--budget-s", type=float, default=300.0, help="time for the peers after the sweep")
    ap.add_argument("--configs", type=int, default=40, help="candidates per shape (search.samples)")
    ap.add_argument("--threads", type=int, default=8, help="candidates in flight per shape (search.concurrency)")
    ap.add_argument("--clock", choices=["clean", "do_bench"], default="clean", help="the sweep's and the rows' clock")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="comma-separated sections (gemm, fused, conv) or parts of shape labels")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gemm_suite: needs a CUDA GPU", file=sys.stderr)
        return 2
    todo = jobs(args.only)
    if not todo:
        print(f"gemm_suite: --only {args.only!r} matches no shape or section", file=sys.stderr)
        return 2
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kind = engine.gpu_kind()[0]
    sw = engine.sweep(build(todo, args, engine.target(kind)), log=lambda m: print(m, flush=True))
    sweep_s = time.perf_counter() - start
    deadline = time.perf_counter() + args.budget_s
    rows = []
    for label, section, kernel, fields in todo:
        print(f"[{time.perf_counter() - start:6.1f} s] {label}: side by side", flush=True)
        try:
            rows += shape_rows(label, section, kernel, fields, sw, args, deadline)
        except Exception as exc:  # noqa: BLE001 - one shape's failure is reported and the run goes on
            traceback.print_exc()
            rows.append(row(section, label, "ours", 0.0, **{**engine.provenance(sw, sw.by_problem(kernel, fields)),
                                                            "tuning_s": 0.0, "error": f"{type(exc).__name__}: {exc}"[:500]}))
        torch.cuda.empty_cache()
        (out / "gemm_suite.partial.json").write_text(json.dumps(rows, indent=1, default=str))
    add_ratios(rows)
    ratios = [r["vs"]["cuBLAS"] for r in rows if r["section"] == "gemm" and "cuBLAS" in r.get("vs", {})]
    geomean = (math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else float("nan"), len(ratios))
    meta = {"gpu": torch.cuda.get_device_name(), "hardware_profile": kind, "torch": torch.__version__,
            "triton": triton.__version__, "experiment": sw.name, "tracking_uri": sw.uri,
            "mlflow_db": engine.keep_store(sw, str(out), "gemm_suite"), "sweep_s": sweep_s,
            "wall_s": time.perf_counter() - start, "args": vars(args), "geomean_ours_over_cublas": geomean[0]}
    table = markdown(rows, geomean, meta)
    print(table)
    (out / "gemm_suite.md").write_text(table + "\n")
    (out / "gemm_suite.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
