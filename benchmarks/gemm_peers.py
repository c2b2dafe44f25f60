"""The GEMM suite's peers (benchmarks/gemm_suite.py's docstring says what each is and how its tuning
time and candidates are counted): cuBLAS, torch.compile max-autotune, @triton.autotune over the
tutorial's configs, Helion's autotuner (benchmarks/helion_peer.py, imported only when asked), and
for the fused layers torch eager and torch.compile max-autotune.

of(job, args) -> [(impl, make(inputs) -> {fn, tuning_s?, candidates?, extra?}, seconds it needs)];
a make that cannot run here raises NotRun with the row's reason.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernelevolve.kernels import conv2d as cv, gemm_epilogue as ge


class NotRun(Exception):
    """A peer that cannot run here: its row says why, no traceback."""


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


# ---- the peers ----------------------------------------------------------------------------------
def _gpu_only(what: str):
    if not torch.cuda.is_available():
        raise NotRun(f"not run: needs a GPU ({what})")


def compiled(fn, *args):
    """torch.compile max-autotune of fn, fresh per shape; candidates from inductor's counter.
    Mode `max-autotune-no-cudagraphs`: the same autotuning and kernels as `max-autotune`, without
    its own CUDA graphs around the call, which the shape's clock cannot capture in its graph. On a
    kernel under 50 us the other rows are timed as graph replays and max-autotune's call would be
    timed with its launch from Python instead (measured: 5-10x slower than the kernel); this way
    every row of a shape replays in the same kind of graph."""
    _gpu_only("max-autotune tunes on CUDA")
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # a fresh compile per shape: its tuning is what we measure
    counters.clear()
    c = torch.compile(fn, mode="max-autotune-no-cudagraphs", dynamic=False)
    return {"fn": lambda: c(*args),
            "candidates": lambda: counters["inductor"].get("select_algorithm_num_precompiles") or None}


def tutorial_peer(i):
    _gpu_only("@triton.autotune times on CUDA")
    return {"fn": lambda: tutorial_matmul(i[0], i[1]), "candidates": len(tutorial_configs())}


def helion_peer_of(args):
    def make(i):
        try:
            from benchmarks import helion_peer as hp
        except Exception as exc:  # noqa: BLE001
            raise NotRun(f"not run: helion_peer failed to import ({type(exc).__name__}: {exc})") from exc
        if hp.available():
            raise NotRun(hp.available())
        effort = args.helion_effort if torch.cuda.is_available() else "none"
        fn, tuning_s, cand, extra = hp.tune(i[0], i[1], effort, args.seed)
        return {"fn": fn, "tuning_s": tuning_s, "candidates": cand,
                "extra": {"config": extra.pop("config", None), "helion": {"effort": effort, **extra}}}
    return make


def fused_eager(i):
    return {"fn": lambda: ge.baseline(i), "candidates": None}


def fused_compiled(i):
    a, b, bias, _, activation = i
    act = ge._TORCH_ACTIVATIONS[activation]
    return compiled(lambda x, y, z: act(x @ y + z), a, b, bias)


def of(job, args) -> list[tuple[str, object, float]]:
    """[(impl, make(inputs) -> {fn, tuning_s?, candidates?, extra?}, seconds it needs)]; the first
    is the library peer that picks the shape's clock."""
    if job.section == "gemm":
        out = [("cuBLAS", lambda i: {"fn": lambda: torch.matmul(i[0], i[1]), "candidates": None}, 2),
               ("torch.compile max-autotune", lambda i: compiled(lambda x, y: x @ y, i[0], i[1]), 30),
               ("triton autotune (tutorial configs)", tutorial_peer, 30)]
        if job.index < args.helion_shapes:
            out.append((f"Helion autotune ({args.helion_effort if torch.cuda.is_available() else 'none'})",
                        helion_peer_of(args), 150))
        return out
    if job.section == "fused":
        return [("torch eager (separate ops)", fused_eager, 2), ("torch.compile max-autotune", fused_compiled, 30)]
    return [("cuDNN F.conv2d channels_last", lambda i: {"fn": lambda: cv.baseline(i)}, 2)]
