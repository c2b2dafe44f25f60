"""GEMM: C[M, N] = A[M, K] @ B[K, N], one Triton template with its transforms as constexpr switches.

Switches the search space flips:
  BLOCK_M/N/K   the output tile and the K step each program works on
  GROUP_M       programs are swizzled in groups of GROUP_M tile-rows so that neighbours in launch
                order share A and B tiles in L2 (GROUP_M=1 is plain row-major order)
  SPLIT_K       the K loop is split across SPLIT_K programs per tile; partial sums meet in an
                fp32 workspace by atomic add, then one cast writes C (helps when M*N tiles are
                too few to fill the GPU and K is long)
  num_warps / num_stages   Triton launch options: warps per program, software-pipeline depth

The file also holds the launcher, the input checks of the public entry point, the float64
reference, the cuBLAS peer (torch.matmul) and the cost model, so tests and benchmarks import
one source of truth.
"""
from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernels.spec import DTYPES, KernelSpec, element_size


class MatmulProblem(BaseModel):
    """One GEMM problem as an experiment file names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    M: PositiveInt
    N: PositiveInt
    K: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@triton.jit
def matmul_kernel(
    a_ptr, b_ptr, c_ptr,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # GROUP_M swizzle: walk GROUP_M tile-rows column by column so that consecutive programs
    # reuse the same B columns (and nearby A rows) while they are still in L2.
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    # Rows and columns past the edge wrap around (modulo) instead of being masked: the loads stay
    # in bounds and unmasked, which keeps the pipelined loads simple; the store below is masked.
    offs_am = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_bn = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    # Program pid_k of SPLIT_K takes K blocks pid_k, pid_k + SPLIT_K, ...
    for kb in range(pid_k, tl.cdiv(K, BLOCK_K), SPLIT_K):
        k0 = kb * BLOCK_K
        a = tl.load(a_ptr + offs_am[:, None] * stride_am + (k0 + offs_k)[None, :] * stride_ak,
                    mask=(k0 + offs_k)[None, :] < K, other=0.0)
        b = tl.load(b_ptr + (k0 + offs_k)[:, None] * stride_bk + offs_bn[None, :] * stride_bn,
                    mask=(k0 + offs_k)[:, None] < K, other=0.0)
        acc = tl.dot(a, b, acc)

    offs_cm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_cn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + offs_cm[:, None] * stride_cm + offs_cn[None, :] * stride_cn
    c_mask = (offs_cm[:, None] < M) & (offs_cn[None, :] < N)
    if SPLIT_K == 1:
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=c_mask)
    else:
        tl.atomic_add(c_ptrs, acc, mask=c_mask)  # c_ptr is the fp32 workspace here


# The config the public entry point uses when it is given none: a middle-of-the-road tile that
# compiles on every NVIDIA GPU Triton supports and on the interpreter.
DEFAULT_CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8, "SPLIT_K": 1,
                  "num_warps": 4, "num_stages": 3}


def launch(inputs, out: torch.Tensor, config) -> object:
    """Run the template for one config, writing `out`. Returns Triton's compiled-kernel handle."""
    a, b = inputs
    M, K = a.shape
    N = b.shape[1]
    split_k = int(config["SPLIT_K"])
    grid = (triton.cdiv(M, config["BLOCK_M"]) * triton.cdiv(N, config["BLOCK_N"]), split_k)
    # Split-K partial sums need a zeroed fp32 buffer to add into; one copy casts it into `out`.
    target = out if split_k == 1 else torch.zeros((M, N), dtype=torch.float32, device=out.device)
    handle = matmul_kernel[grid](
        a, b, target, M, N, K,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), target.stride(0), target.stride(1),
        BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"],
        GROUP_M=config["GROUP_M"], SPLIT_K=split_k,
        num_warps=config["num_warps"], num_stages=config["num_stages"],
    )
    if split_k > 1:
        out.copy_(target)
    return handle


def check_inputs(a: torch.Tensor, b: torch.Tensor) -> None:
    """Clear errors for inputs the template cannot take."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"matmul takes two tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"matmul takes 2-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: inner dimensions differ: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    if a.dtype != b.dtype or a.dtype not in DTYPES.values():
        raise TypeError(f"matmul takes two tensors of one dtype among float16, bfloat16, float32; "
                        f"got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"matmul: inputs are on different devices ({a.device}, {b.device})")
    if 0 in a.shape or 0 in b.shape:
        raise ValueError(f"matmul: empty input, shapes {tuple(a.shape)} and {tuple(b.shape)}")


def matmul(a: torch.Tensor, b: torch.Tensor, config=None) -> torch.Tensor:
    """Public entry point: a @ b with the Triton template (DEFAULT_CONFIG unless one is given)."""
    check_inputs(a, b)
    out = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    launch((a, b), out, config or DEFAULT_CONFIG)
    return out


def make_inputs(problem: MatmulProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    dtype = DTYPES[problem.dtype]
    a = torch.randn((problem.M, problem.K), generator=gen, device=device, dtype=torch.float32)
    b = torch.randn((problem.K, problem.N), generator=gen, device=device, dtype=torch.float32)
    return a.to(dtype), b.to(dtype)


def make_output(problem: MatmulProblem, inputs) -> torch.Tensor:
    a = inputs[0]
    return torch.empty((problem.M, problem.N), dtype=a.dtype, device=a.device)


def reference(inputs) -> torch.Tensor:
    a, b = inputs
    return a.double() @ b.double()


def baseline(inputs) -> torch.Tensor:
    a, b = inputs
    return torch.matmul(a, b)


def flops(problem: MatmulProblem) -> float:
    return 2.0 * problem.M * problem.N * problem.K


def bytes_moved(problem: MatmulProblem) -> float:
    # Each input read once and the output written once: what a perfect kernel moves.
    return float((problem.M * problem.K + problem.K * problem.N + problem.M * problem.N)
                 * element_size(problem.dtype))


SPEC = KernelSpec(
    name="matmul",
    description="GEMM C = A @ B with tile sizes, GROUP_M swizzle and split-K as switches",
    problem=MatmulProblem,
    make_inputs=make_inputs,
    make_output=make_output,
    launch=launch,
    reference=reference,
    baseline=baseline,
    flops=flops,
    bytes_moved=bytes_moved,
)
