"""fp8 GEMM (Hopper): out = (A * scale_a) @ (B * scale_b) with e4m3 inputs and per-tensor scales.

fp8 tensor cores exist from Hopper (sm90) on, so its search space exists only for sm90 targets.
What is verified where: the Triton interpreter (triton 3.9) runs this kernel with fp16 output and
its numbers are checked on the CPU (tests/test_gemm_fp8.py), which covers the indexing, the
scales and the K-major B; the Hopper code path (fp8 wgmma, TMA) is checked to compile for sm90
without a GPU (tests/test_gemm_sm90_compile.py) and is run and verified ON THE GPU ONLY
(the tests marked gpu in tests/test_gemm_fp8.py), bf16 output included.

It is the GEMM template of kernels/matmul.py with HAS_SCALE on: the fp32 accumulator is
multiplied by scale_a * scale_b (read on the device: no host sync) before the cast to bf16/fp16.
B is stored as [N, K], K contiguous, the layout fp8 tensor cores read without a transpose and the
one torch._scaled_mm (the cuBLASLt peer) wants for its second operand; the template sees the
transposed view and its descriptors read B as [N, K] tiles (B_KMAJOR).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.gemm_tiles import output_for
from kernelevolve.kernels.matmul import Epilogue, launch_gemm
from kernelevolve.kernels.spec import DTYPES, KernelSpec, element_size

E4M3_MAX = 448.0  # largest finite float8_e4m3fn value


class Fp8GemmProblem(BaseModel):
    """One fp8 GEMM: A [M, K] and B [N, K] in float8_e4m3fn, output in out_dtype."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    M: PositiveInt
    N: PositiveInt
    K: PositiveInt
    out_dtype: Literal["bfloat16", "float16"] = "bfloat16"


def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor e4m3 quantization: x ~= q * scale, with the largest |x| mapped to E4M3_MAX."""
    scale = (x.abs().amax().float() / E4M3_MAX).clamp(min=1e-12)
    q = (x / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale.reshape(())


def make_inputs(problem: Fp8GemmProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    a = torch.randn((problem.M, problem.K), generator=gen, device=device)
    b_t = torch.randn((problem.N, problem.K), generator=gen, device=device)
    a8, scale_a = quantize(a)
    b8_t, scale_b = quantize(b_t)
    return a8, b8_t, scale_a, scale_b, DTYPES[problem.out_dtype]


def make_output(problem: Fp8GemmProblem, inputs) -> torch.Tensor:
    return output_for(problem.M, problem.N, inputs[0], dtype=inputs[4])


def launch(inputs, out: torch.Tensor, config) -> object:
    a8, b8_t, scale_a, scale_b, _ = inputs
    return launch_gemm(a8, b8_t.t(), out, config, Epilogue(scale_a=scale_a, scale_b=scale_b))


def reference(inputs) -> torch.Tensor:
    a8, b8_t, scale_a, scale_b, _ = inputs
    return (a8.double() * scale_a.double()) @ (b8_t.double() * scale_b.double()).t()


def baseline(inputs) -> torch.Tensor:
    """cuBLASLt's fp8 GEMM with the same per-tensor scales and output dtype."""
    a8, b8_t, scale_a, scale_b, out_dtype = inputs
    return torch._scaled_mm(a8, b8_t.t(), scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype)


def flops(problem: Fp8GemmProblem) -> float:
    return 2.0 * problem.M * problem.N * problem.K


def bytes_moved(problem: Fp8GemmProblem) -> float:
    p = problem
    return float(p.M * p.K + p.K * p.N + p.M * p.N * element_size(p.out_dtype))


SPEC = KernelSpec(
    name="gemm_fp8",
    description="fp8 e4m3 GEMM with per-tensor scales (Hopper only) on the matmul template",
    problem=Fp8GemmProblem,
    make_inputs=make_inputs,
    make_output=make_output,
    launch=launch,
    reference=reference,
    baseline=baseline,
    flops=flops,
    bytes_moved=bytes_moved,
    reduction=lambda p: p.K,  # products summed per output element
)
