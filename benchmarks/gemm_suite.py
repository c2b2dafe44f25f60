"""The ranking-model GEMM suite on one GPU: our tuned GEMM family beside the vendor library.

Shapes (bf16; SHAPES below is the source of truth): large square 8192^3; MLP layers (M up to
65536, N and K 256-4096); weight-bound small M (M <= 512, N = K >= 4096); odd sizes. For each,
side by side in one run, every output verified against the float64 reference (tuner.measure.verify,
output poisoned with NaN first) and timed at p20/p50/p80 by the clock below:
  ours            the matmul search space (search_spaces/matmul.py) searched in-process with a
                  seeded Optuna TPE for up to --configs configs or the shape's time share,
                  whichever ends first; known-good Hopper configs are enqueued first; each batch
                  of proposals is compiled in parallel threads, then verified and timed one by
                  one; the three fastest are re-timed and the best median wins
  cuBLAS          torch.matmul (no tuning)
  torch.compile   torch.compile(mode="max-autotune") of a @ b (tuning = its first call)
  triton autotune @triton.autotune over the config list of Triton's tutorial
                  python/tutorials/03-matrix-multiplication.py, get_cuda_autotune_config()
                  (values copied; the tutorial is MIT-licensed, Copyright 2018-2020 Philippe
                  Tillet, 2020-2022 OpenAI); tuning = its first call
Then: fused GEMM + bias + GELU (kernels/gemm_epilogue.py) vs torch eager's separate ops, and
conv2d NHWC (kernels/conv2d.py) vs F.conv2d on channels_last tensors (cuDNN), three ResNet layers.

Clock: a shape whose library peer (cuBLAS, cuDNN, eager) takes under SHORT_KERNEL_MS (50 us) is
timed by CUDA-graph replay (tuner.measure.inprocess.graph_bench), ours, its search and every peer alike:
at that size event timing measures the host's Python launch cost (40-200 us per Triton launch on
the H100 host, ~15 us for torch.matmul). Each such row also records its event-timed p50 and the
host's launch cost (host_us), so what an eager Python caller would see stays on record. Other
shapes are timed by events with the L2 emptied by a read pass and each call charged its own
write-back (tuner.measure.inprocess.clean_flush_bench), ours and every peer alike: do_bench's zeroing
flush hands the timed kernel ~50 MB of someone else's dirty lines, and its ~85 us memset is all the
head start the host gets, so a launch slower than that (a staged copy plus a descriptor kernel,
with the search's compile threads holding the GIL) leaked into the time: the 30000x768x383
winner of one run measured 0.083 ms, and 0.185 ms in the next run's screening.

Columns: latency p20/p50/p80 (ms), TFLOP/s at p50, tuning wall time (s), ratio to the peer;
last line: the geomean over the GEMM shapes of ours / cuBLAS (throughput). A --budget-s deadline
(default 520 s, so the run ends within ~9 minutes on one H100) is split between the shapes: a
shape's search stops at its share, and a peer that no longer fits is skipped with that reason.
A failing shape, peer or config prints its error and the run goes on (a CUDA illegal memory
access, though, leaves the process's CUDA context unusable for whatever follows).

On the GPU machine, from the project root: `source .devbundle/activate.sh` (pydantic, optuna),
then `python benchmarks/gemm_suite.py --out "$OUT"`. Writes gemm_suite.md and gemm_suite.json.
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
import torch._dynamo  # noqa: E402
import triton  # noqa: E402
import triton.testing  # noqa: E402
import triton.language as tl  # noqa: E402

from kernels import conv2d as cv, gemm_epilogue as ge, matmul as mm  # noqa: E402
from search_spaces import conv2d as s_cv, gemm_epilogue as s_ge, matmul as s_mm  # noqa: E402
from tuner.experiment import hardware  # noqa: E402
from tuner.measure.inprocess import FULL, Search, bench, clean_flush_bench, graph_bench, host_us  # noqa: E402
from tuner.measure.verify import check  # noqa: E402

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
DEVICE = "cuda"
NON_GEMM_RESERVE_S = 25.0  # kept for each fused/conv job: GEMM peers that would eat it are skipped
WARM_GEMM = s_mm.WARM_CONFIGS  # known-good and the tutorial's list, tried first
WARM_CONV = [  # the first session's winners, the H100 bests with TMA activations (X_TMA), then
    # this session's probe winners with swapped operands (docs/results/conv_probe_*.json)
    dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, FLAT_K=True, num_warps=8, num_stages=3),
    dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=64, GROUP_M=8, FLAT_K=True, TMA=True, num_warps=4, num_stages=4),
    dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, GROUP_M=8, FLAT_K=True, TMA=True, X_TMA=True, BLOCK_Q=16,
         num_warps=8, num_stages=3),
    dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, FLAT_K=True, TMA=True, X_TMA=True, BLOCK_Q=32,
         num_warps=4, num_stages=3),
    dict(BLOCK_M=256, BLOCK_N=64, BLOCK_K=64, GROUP_M=1, FLAT_K=True, TMA=True, X_TMA=True, BLOCK_Q=64,
         num_warps=8, num_stages=3),
    dict(BLOCK_M=256, BLOCK_N=64, BLOCK_K=64, GROUP_M=8, FLAT_K=True, TMA=True, X_TMA=True, BLOCK_Q=16,
         num_warps=4, num_stages=5),
] + [dict(FLAT_K=True, TMA=True, X_TMA=True, SWAP_AB=True, BLOCK_M=m, BLOCK_N=n, BLOCK_K=64, BLOCK_Q=q,
          GROUP_M=g, num_warps=w, num_stages=st)
     for m, n, q, g, w, st in [(128, 128, 32, 8, 4, 3), (256, 128, 32, 8, 8, 3), (128, 128, 8, 1, 8, 3),
                               (128, 128, 16, 8, 4, 4), (64, 256, 8, 1, 4, 3), (128, 128, 16, 8, 4, 3),
                               (256, 64, 64, 8, 8, 2)]] + [
    # several images per box (BLOCK_I): the probe's best per layer first (docs/results/
    # conv_probe_images_per_box.json: 14x14 17.64 us, 28x28 18.49 us, 56x56 29.06 us), then neighbours
    dict(FLAT_K=True, TMA=True, X_TMA=True, SWAP_AB=sw, BLOCK_M=m, BLOCK_N=n, BLOCK_K=k, BLOCK_Q=q, BLOCK_I=i,
         GROUP_M=g, num_warps=w, num_stages=st)
    for sw, m, n, k, q, i, g, w, st in [(True, 128, 128, 128, 16, 4, 1, 4, 3), (True, 256, 128, 64, 32, 2, 8, 8, 3),
                                        (True, 128, 64, 64, 8, 2, 8, 4, 3), (True, 128, 128, 64, 16, 4, 8, 4, 4),
                                        (True, 256, 128, 64, 16, 8, 8, 8, 3), (False, 256, 64, 64, 8, 4, 8, 8, 3),
                                        (True, 128, 128, 64, 32, 2, 8, 4, 3)]] + [
    # persistent programs (PERSISTENT, PROGRAMS_PER_SM): the 56x56x64 layer's probe winners
    # (docs/results/conv_probe_persistent.json: 25.62 and 25.75 us against 29.09 without)
    dict(FLAT_K=True, TMA=True, X_TMA=True, SWAP_AB=True, BLOCK_M=m, BLOCK_N=64, BLOCK_K=64, BLOCK_Q=8, BLOCK_I=i,
         GROUP_M=8, num_warps=4, num_stages=st, PERSISTENT=True, PROGRAMS_PER_SM=pps)
    for m, i, st, pps in [(256, 4, 3, 1), (128, 2, 3, 3), (128, 2, 3, 2)]]


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


def timed_peer(section, shape, impl, fn, ref, flops, deadline, need_s, clock=clean_flush_bench) -> dict:
    """Call a peer once (its tuning, if any), verify it, time it with the shape's clock; skip it if
    it no longer fits."""
    if deadline - time.perf_counter() < need_s:
        return row(section, shape, impl, flops, error=f"skipped: less than {need_s} s of the time budget left")
    try:
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        tuning_s = time.perf_counter() - t0
        verdict = check(out, ref)
        try:
            times = clock(fn, FULL)
        except Exception as exc:  # noqa: BLE001 - e.g. a peer that runs its own CUDA graphs
            print(f"{impl}: {clock_name(clock)} timing failed ({type(exc).__name__}); events instead", flush=True)
            clock, times = bench, bench(fn, FULL)
        return row(section, shape, impl, flops, times, tuning_s, verified=verdict.ok,
                   error=None if verdict.ok else verdict.reason, clock=clock_name(clock),
                   **other_clocks(fn, clock))
    except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
        traceback.print_exc()
        return row(section, shape, impl, flops, error=f"{type(exc).__name__}: {exc}"[:500])


# ---- our search: tuner/measure/inprocess.py (seeded TPE, parallel compile, verify, time) --------------
def tune_ours(section, label, tunable, problem, hw, args, until, warm, peer_of) -> tuple[dict, Search, object]:
    """Search until `until` (or --configs), re-time the three fastest in full, keep the best. The
    clock (events, or CUDA graphs for short kernels) is chosen from the library peer, peer_of(inputs)."""
    t0 = time.perf_counter()
    s = Search(tunable, problem, hw, args.seed, args.threads)
    clock = pick_clock(peer_of(s.inputs))
    s.timer = clock
    s.enqueue(warm)
    s.seed_sparse_space(args.configs)
    s.run(args.configs, until)
    best = s.best()
    tuning_s = time.perf_counter() - t0
    flops = tunable.kernel.flops(problem)
    counts = s.counts()
    if best is None:
        return row(section, label, "ours", flops, tuning_s=tuning_s, configs=counts,
                   error="no config verified correct", tried=s.results), s, clock
    r = row(section, label, "ours", flops, best["full"], tuning_s, verified=True,
            config=best["config"], configs=counts, clock=clock_name(clock), tried=s.results)
    out = s.spec.make_output(s.problem, s.inputs)
    r.update(other_clocks(lambda: s.spec.launch(s.inputs, out, best["config"]), clock))
    return r, s, clock


SHORT_KERNEL_MS = 0.05


def pick_clock(peer_fn):
    """CUDA-graph replay when the library peer runs under SHORT_KERNEL_MS, else events (module doc)."""
    peer_fn()
    return graph_bench if bench(peer_fn)[1] < SHORT_KERNEL_MS else clean_flush_bench


def clock_name(clock) -> str:
    return {graph_bench: "cuda graph", clean_flush_bench: "events, L2 emptied by reading, own write-back charged",
            bench: "do_bench (events, L2 emptied by zeroing)"}[clock]


def other_clocks(fn, clock) -> dict:
    """Beside the row's clock: a graph-timed row gets eager_cost; a clean-flush row do_bench's p50
    (the clock of the runs before clean_flush_bench, for comparison)."""
    if clock is graph_bench:
        return eager_cost(fn)
    return {"do_bench_ms": bench(fn)[1]} if clock is clean_flush_bench else {}


def eager_cost(fn) -> dict:
    """Beside a graph-timed row: what an eager Python caller sees (event-timed p50, host us per call)."""
    return {"events_ms": bench(fn)[1], "host_us": host_us(fn)}


# ---- the suite ----------------------------------------------------------------------------------
def gemm_shape(label, M, N, K, hw, args, search_until, deadline) -> list[dict]:
    problem = mm.MatmulProblem(M=M, N=N, K=K, dtype="bfloat16")
    ours, search, clock = tune_ours("gemm", label, s_mm.TUNABLE, problem, hw, args, search_until, WARM_GEMM,
                                    lambda inputs: (lambda: torch.matmul(*inputs)))
    (a, b), ref, flops = search.inputs, search.ref, mm.flops(problem)
    rows = [ours, timed_peer("gemm", label, "cuBLAS", lambda: torch.matmul(a, b), ref, flops, deadline, 2, clock)]
    torch._dynamo.reset()  # a fresh compile per shape: its tuning is what we measure
    compiled = torch.compile(lambda x, y: x @ y, mode="max-autotune", dynamic=False)
    rows.append(timed_peer("gemm", label, "torch.compile max-autotune", lambda: compiled(a, b), ref, flops,
                           deadline, 30, clock))
    rows.append(timed_peer("gemm", label, "triton autotune (tutorial configs)", lambda: tutorial_matmul(a, b),
                           ref, flops, deadline, 30, clock))
    return rows


def fused(label, fields, hw, args, search_until, deadline) -> list[dict]:
    problem = ge.FusedGemmProblem(dtype="bfloat16", **fields)
    ours, search, clock = tune_ours("fused", label, s_ge.TUNABLE, problem, hw, args, search_until, WARM_GEMM,
                                    lambda inputs: (lambda: ge.baseline(inputs)))
    inputs = search.inputs
    return [ours, timed_peer("fused", label, "torch eager (separate ops)", lambda: ge.baseline(inputs),
                             search.ref, ge.flops(problem), deadline, 2, clock)]


def conv(label, fields, hw, args, search_until, deadline) -> list[dict]:
    problem = cv.Conv2dProblem(dtype="bfloat16", **fields)
    ours, search, clock = tune_ours("conv", label, s_cv.TUNABLE, problem, hw, args, search_until, WARM_CONV,
                                    lambda inputs: (lambda: cv.baseline(inputs)))
    inputs = search.inputs
    return [ours, timed_peer("conv", label, "cuDNN F.conv2d channels_last", lambda: cv.baseline(inputs),
                             search.ref, cv.flops(problem), deadline, 2, clock)]


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
             f"p20/p50/p80 by events, L2 emptied by reading, own write-back charged (shapes whose peer runs "
             f"under {SHORT_KERNEL_MS * 1e3:.0f} us: CUDA-graph replay), ours and peers alike | wall {meta['wall_s']:.0f} s",
             "",
             "| section | shape | impl | p20 ms | p50 ms | p80 ms | TFLOP/s | tuning s | vs peer | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        t = lambda k, f="{:.4f}": f.format(r[k]) if k in r else "-"  # noqa: E731
        vs = ", ".join(f"{v:.2f}x {k}" for k, v in r.get("vs", {}).items()) or "-"
        note = r.get("error") or (json.dumps(r["config"], sort_keys=True) if r.get("config") else "")
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
    ap.add_argument("--out", required=True, help="folder for gemm_suite.md and gemm_suite.json")
    ap.add_argument("--budget-s", type=float, default=520.0, help="deadline for the whole run")
    ap.add_argument("--configs", type=int, default=40, help="our configs per shape, at most")
    ap.add_argument("--search-share", type=float, default=0.35,
                    help="part of a GEMM shape's time share our search may use (its peers tune too)")
    ap.add_argument("--min-search-s", type=float, default=8.0, help="our search's floor per shape")
    ap.add_argument("--threads", type=int, default=8, help="parallel compiles of our candidates")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="comma-separated sections (gemm, fused, conv) or parts of shape labels")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gemm_suite: needs a CUDA GPU", file=sys.stderr)
        return 2
    start = time.perf_counter()
    deadline = start + args.budget_s
    name = torch.cuda.get_device_name()
    hw = hardware.profile_for_gpu(name) or hardware.profile("h100")
    # (label, section, job(search_until, deadline)); GEMM jobs leave most of their share to their
    # two tuning peers, fused and conv jobs have one untuned peer and search longer
    jobs = [(lbl, "gemm", lambda su, dl, lbl=lbl, m=m, n=n, k=k: gemm_shape(lbl, m, n, k, hw, args, su, dl))
            for lbl, m, n, k in SHAPES]
    jobs += [(lbl, "fused", lambda su, dl, lbl=lbl, f=f: fused(lbl, f, hw, args, su, dl)) for lbl, f in FUSED]
    jobs += [(lbl, "conv", lambda su, dl, lbl=lbl, f=f: conv(lbl, f, hw, args, su, dl)) for lbl, f in CONV_LAYERS]
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        jobs = [j for j in jobs if any(w == j[1] or w in j[0] for w in wanted)]
        if not jobs:
            print(f"gemm_suite: --only {args.only!r} matches no shape or section", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (label, section, job) in enumerate(jobs):
        share = (deadline - time.perf_counter()) / (len(jobs) - i)
        search_s = max(args.min_search_s, share * (args.search_share if section == "gemm" else 0.8))
        reserve = NON_GEMM_RESERVE_S * sum(sec != "gemm" for _, sec, _ in jobs[i + 1:])
        print(f"[{time.perf_counter() - start:6.1f} s] {label}: search {search_s:.0f} s", flush=True)
        try:
            rows += job(time.perf_counter() + search_s, deadline - reserve)
        except Exception as exc:  # noqa: BLE001 - one shape's failure is reported and the run goes on
            traceback.print_exc()
            rows.append(row(section, label, "ours", 0.0, error=f"{type(exc).__name__}: {exc}"[:500]))
        torch.cuda.empty_cache()
        # rows so far, in case the machine's time limit ends the run early
        (out / "gemm_suite.partial.json").write_text(json.dumps(rows, indent=1, default=str))
    add_ratios(rows)
    ratios = [r["vs"]["cuBLAS"] for r in rows if r["section"] == "gemm" and "cuBLAS" in r.get("vs", {})]
    geomean = (math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else float("nan"), len(ratios))
    meta = {"gpu": name, "hardware_profile": hw.name, "torch": torch.__version__, "triton": triton.__version__,
            "wall_s": time.perf_counter() - start, "args": vars(args), "geomean_ours_over_cublas": geomean[0]}
    table = markdown(rows, geomean, meta)
    print(table)
    (out / "gemm_suite.md").write_text(table + "\n")
    (out / "gemm_suite.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
