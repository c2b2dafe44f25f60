"""An fp16 GEMM that accumulates in fp16 (each BLOCK_K partial product is added to an fp16 sum):
cheaper registers, and at large K an error of several output roundings. Caught by the tolerance
scaled by the declared reduction length (K); the honest switch accumulates in fp32 and passes."""
import os
import sys

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

sys.path.insert(0, os.path.dirname(__file__))
from kernelevolve.kernels.spec import KernelSpec  # noqa: E402
from kernelevolve.tuner.experiment.registry import Tunable  # noqa: E402
from kernelevolve.tuner.search.space import Choice, Const, Space  # noqa: E402


class GemmProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    M: PositiveInt = 16
    N: PositiveInt = 16
    K: PositiveInt = 4096
    dtype: str = "float16"


@triton.jit
def gemm_kernel(a_ptr, b_ptr, c_ptr, M, N, K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_K: tl.constexpr, FP16_ACC: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    if FP16_ACC:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float16)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        a = tl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
        b = tl.load(b_ptr + (k + rk)[:, None] * N + rn[None, :])
        if FP16_ACC:
            acc = (acc.to(tl.float32) + tl.dot(a, b)).to(tl.float16)
        else:
            acc += tl.dot(a, b)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc.to(tl.float16))


def make_inputs(p, device, seed):
    g = torch.Generator(device=device).manual_seed(seed)
    return (torch.randn(p.M, p.K, generator=g, device=device).half(),
            torch.randn(p.K, p.N, generator=g, device=device).half())


def launch(inputs, out, cfg):
    a, b = inputs
    M, K = a.shape
    N = b.shape[1]
    return gemm_kernel[(M // 16, N // 16)](a, b, out, M, N, K, BLOCK_M=16, BLOCK_N=16, BLOCK_K=32,
                                           FP16_ACC=bool(cfg["cheat"]))


KERNEL = Tunable(
    KernelSpec(name="fp16_acc", description="attack: fp16 accumulation", problem=GemmProblem,
               make_inputs=make_inputs,
               make_output=lambda p, i: torch.empty(p.M, p.N, dtype=torch.float16, device=i[0].device),
               launch=launch, reference=lambda i: i[0].double() @ i[1].double(),
               baseline=lambda i: i[0] @ i[1], flops=lambda p: 2.0 * p.M * p.N * p.K,
               bytes_moved=lambda p: 2.0 * (p.M * p.K + p.K * p.N + p.M * p.N),
               reduction=lambda p: p.K),
    lambda problem, hw: Space((Choice("cheat", (False, True)), Const("BLOCK", 16))))
