"""Fused GEMM: out = act(A @ B + bias) + residual, the epilogue applied in registers.

The GEMM template of kernels/matmul.py (every switch: tiles, GROUP_M, split-K atomic or
two-pass, persistent, TMA, warp specialization) with its epilogue constexprs switched on: the
fp32 accumulator gets the bias, the activation (relu, exact-erf gelu, silu) and the residual
before the one cast and store. With split-K the epilogue runs in the split-K finish kernel.
The peer is torch eager doing the same as separate ops (cuBLAS GEMM, then an add, an
activation and an add, each a round trip of C through memory).

The vendor candidate (IMPL="vendor", kernels/gemm_vendor.py) is that same epilogue through torch
into the harness's buffer: torch.addmm (cuBLASLt's bias epilogue), then in-place activation and
residual; it is timed in every study beside the Triton configs.

Which epilogue is part of the problem, not of the config: the activation travels in the inputs
tuple (a, b, bias, residual, activation) because launchers see only inputs and config.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.gemm_vendor import vendor_configs
from kernelevolve.kernels.gemm_tiles import output_for
from kernelevolve.kernels.matmul import Epilogue, launch_gemm
from kernelevolve.kernels.spec import DTYPES, KernelSpec, element_size

Activation = Literal["none", "relu", "gelu", "silu"]


class FusedGemmProblem(BaseModel):
    """One fused GEMM as an experiment file names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    M: PositiveInt
    N: PositiveInt
    K: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "bfloat16"
    activation: Activation = "gelu"
    bias: bool = True
    residual: bool = False


def make_inputs(problem: FusedGemmProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    dtype = DTYPES[problem.dtype]

    def randn(*shape):
        return torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dtype)

    a, b = randn(problem.M, problem.K), randn(problem.K, problem.N)
    bias = randn(problem.N) if problem.bias else None
    # scaled like the GEMM's output (std sqrt(K)) so that the residual matters to the result
    residual = (randn(problem.M, problem.N) * problem.K ** 0.5).to(dtype) if problem.residual else None
    return a, b, bias, residual, problem.activation


def make_output(problem: FusedGemmProblem, inputs) -> torch.Tensor:
    return output_for(problem.M, problem.N, inputs[0])


def launch(inputs, out: torch.Tensor, config) -> object:
    a, b, bias, residual, activation = inputs
    return launch_gemm(a, b, out, config, Epilogue(bias=bias, activation=activation, residual=residual))


_TORCH_ACTIVATIONS = {"none": lambda x: x, "relu": F.relu, "gelu": F.gelu, "silu": F.silu}


def reference(inputs) -> torch.Tensor:
    a, b, bias, residual, activation = inputs
    y = a.double() @ b.double()
    if bias is not None:
        y = y + bias.double()
    y = _TORCH_ACTIVATIONS[activation](y)
    return y + residual.double() if residual is not None else y


def baseline(inputs) -> torch.Tensor:
    """torch eager, one op at a time: what the fused kernel saves is these round trips."""
    a, b, bias, residual, activation = inputs
    y = torch.matmul(a, b)
    if bias is not None:
        y = y + bias
    y = _TORCH_ACTIVATIONS[activation](y)
    return y + residual if residual is not None else y


def flops(problem: FusedGemmProblem) -> float:
    return 2.0 * problem.M * problem.N * problem.K


def bytes_moved(problem: FusedGemmProblem) -> float:
    p = problem
    n = p.M * p.K + p.K * p.N + p.M * p.N + (p.N if p.bias else 0) + (p.M * p.N if p.residual else 0)
    return float(n * element_size(p.dtype))


SPEC = KernelSpec(
    name="gemm_epilogue",
    description="fused GEMM act(A @ B + bias) + residual (relu/gelu/silu) on the matmul template",
    problem=FusedGemmProblem,
    make_inputs=make_inputs,
    make_output=make_output,
    launch=launch,
    reference=reference,
    baseline=baseline,
    flops=flops,
    bytes_moved=bytes_moved,
    reduction=lambda p: p.K,  # products summed per output element
    vendor_configs=vendor_configs,  # torch.addmm + in-place activation and residual (padded too)
)
