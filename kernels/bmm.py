"""Batched GEMM: C[b] = A[b] @ B[b] for A [B, M, K], B [B, K, N], one template.

Grid axis 1 is the batch; each program offsets its base pointers to its batch and then runs the
same tile code as kernels/matmul.py (kernels/gemm_tiles.py). Switches:
  BLOCK_M/N/K, GROUP_M   tiles and the L2 swizzle, within each batch
  TMA                    tensor-descriptor loads and store; the descriptors are built per batch on
                         the device, over that batch's [M, K], [K, N] and [M, N] matrices, so a
                         tile never reads across a batch boundary (Hopper in the search space)
  WARP_SPECIALIZE        producer/consumer warps in the K loop (Hopper, with TMA)
  num_warps/num_stages   launch options (and AMD's, when the config has them)
Set by the launcher: EVEN_K (no K masks when K % BLOCK_K == 0). No split-K and no persistent
loop: the batch already multiplies the programs.
Not a switch: IMPL="vendor" runs torch.bmm (cuBLAS's batched GEMM) into the same output instead,
the candidate every bmm study also times so that nothing slower than it is dispatched
(kernels/gemm_vendor.py).
"""
from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels import tuned
from kernelevolve.kernels.gemm_vendor import is_vendor, vendor_config
from kernelevolve.kernels.gemm_tiles import (TMA_ALIGN_BYTES, accumulate_descriptors, accumulate_pointers,
                                launch_options, tile_coords, tma_allocator, tma_compatible)
from kernelevolve.kernels.spec import DTYPES, KernelSpec, element_size


class BmmProblem(BaseModel):
    """One batched GEMM as an experiment file names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    B: PositiveInt
    M: PositiveInt
    N: PositiveInt
    K: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@triton.jit
def bmm_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
               stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn,
               stride_cb, stride_cm, stride_cn,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
               GROUP_M: tl.constexpr, TMA: tl.constexpr, WARP_SPECIALIZE: tl.constexpr,
               EVEN_K: tl.constexpr):
    batch = tl.program_id(1).to(tl.int64)  # batch * stride can pass 2**31 elements
    a_ptr += batch * stride_ab
    b_ptr += batch * stride_bb
    c_ptr += batch * stride_cb
    pid_m, pid_n = tile_coords(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if TMA:
        a_desc = tl.make_tensor_descriptor(a_ptr, shape=[M, K], strides=[stride_am, 1],
                                           block_shape=[BLOCK_M, BLOCK_K])
        b_desc = tl.make_tensor_descriptor(b_ptr, shape=[K, N], strides=[stride_bk, 1],
                                           block_shape=[BLOCK_K, BLOCK_N])
        c_desc = tl.make_tensor_descriptor(c_ptr, shape=[M, N], strides=[stride_cm, 1],
                                           block_shape=[BLOCK_M, BLOCK_N])
        acc = accumulate_descriptors(acc, a_desc, b_desc, pid_m, pid_n, K, 0, 1,
                                     BLOCK_M, BLOCK_N, BLOCK_K, False, WARP_SPECIALIZE)
        c_desc.store([pid_m * BLOCK_M, pid_n * BLOCK_N], acc.to(c_desc.dtype))
    else:
        acc = accumulate_pointers(acc, a_ptr, b_ptr, pid_m, pid_n, M, N, K, stride_am, stride_ak,
                                  stride_bk, stride_bn, 0, 1, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty),
                 mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


DEFAULT_CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8, "TMA": False,
                  "WARP_SPECIALIZE": False, "num_warps": 4, "num_stages": 3}


def launch(inputs, out: torch.Tensor, config) -> object:
    a, b = inputs
    if is_vendor(config):  # cuBLAS's batched GEMM through torch: no Triton kernel
        torch.bmm(a, b, out=out)
        return None
    cfg = {"TMA": False, "WARP_SPECIALIZE": False, **config}
    batch, M, K = a.shape
    N = b.shape[2]
    if cfg["WARP_SPECIALIZE"] and not cfg["TMA"]:
        raise ValueError("WARP_SPECIALIZE=True needs TMA=True (the producer warp issues TMA copies)")
    if cfg["TMA"]:
        for name, t in (("a", a), ("b", b), ("out", out)):
            why = tma_compatible(t[0])
            if why or t.stride(-1) != 1 or (t.stride(0) * t.element_size()) % TMA_ALIGN_BYTES:
                raise ValueError(f"TMA=True cannot read {name} {tuple(t.shape)}: "
                                 f"{why or 'needs row-major matrices 16-byte aligned per batch'}")
        tma_allocator(a.device)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]), batch)
    return bmm_kernel[grid](
        a, b, out, M, N, K, *a.stride(), *b.stride(), *out.stride(),
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
        GROUP_M=cfg["GROUP_M"], TMA=bool(cfg["TMA"]), WARP_SPECIALIZE=bool(cfg["WARP_SPECIALIZE"]),
        EVEN_K=K % cfg["BLOCK_K"] == 0, **launch_options(cfg),
    )


def bmm(a: torch.Tensor, b: torch.Tensor, config=None) -> torch.Tensor:
    """Public entry point: torch.bmm(a, b) with the Triton template."""
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"bmm takes [B, M, K] and [B, K, N], got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype or a.dtype not in DTYPES.values():
        raise TypeError(f"bmm takes two tensors of one dtype among float16, bfloat16, float32; "
                        f"got {a.dtype} and {b.dtype}")
    out = torch.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=a.dtype, device=a.device)
    if not config:  # the tuned table's config (kernels/tuned.py), else DEFAULT_CONFIG
        def usable(cfg):  # a config tuned for a neighbouring shape may ask for TMA these cannot take
            return not cfg.get("TMA") or all(
                not tma_compatible(t[0]) and t.stride(-1) == 1
                and (t.stride(0) * t.element_size()) % TMA_ALIGN_BYTES == 0 for t in (a, b, out))

        config = tuned.config_for("bmm", {"B": a.shape[0], "M": a.shape[1], "N": b.shape[2],
                                          "K": a.shape[2]}, a.dtype, a.device, DEFAULT_CONFIG, usable)
    launch((a, b), out, config)
    return out


def make_inputs(problem: BmmProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    dtype = DTYPES[problem.dtype]
    p = problem
    a = torch.randn((p.B, p.M, p.K), generator=gen, device=device, dtype=torch.float32)
    b = torch.randn((p.B, p.K, p.N), generator=gen, device=device, dtype=torch.float32)
    return a.to(dtype), b.to(dtype)


def make_output(problem: BmmProblem, inputs) -> torch.Tensor:
    a = inputs[0]
    return torch.empty((problem.B, problem.M, problem.N), dtype=a.dtype, device=a.device)


def reference(inputs) -> torch.Tensor:
    a, b = inputs
    return torch.bmm(a.double(), b.double())


def baseline(inputs) -> torch.Tensor:
    a, b = inputs
    return torch.bmm(a, b)


def flops(problem: BmmProblem) -> float:
    return 2.0 * problem.B * problem.M * problem.N * problem.K


def bytes_moved(problem: BmmProblem) -> float:
    p = problem
    return float(p.B * (p.M * p.K + p.K * p.N + p.M * p.N) * element_size(p.dtype))


SPEC = KernelSpec(
    name="bmm",
    description="batched GEMM [B, M, K] x [B, K, N]: tiles, GROUP_M, TMA and warp specialization",
    problem=BmmProblem,
    make_inputs=make_inputs,
    make_output=make_output,
    launch=launch,
    reference=reference,
    baseline=baseline,
    flops=flops,
    bytes_moved=bytes_moved,
    reduction=lambda p: p.K,  # products summed per output element
    vendor_configs=lambda problem: [vendor_config()],  # torch.bmm, timed beside the Triton candidates
)
