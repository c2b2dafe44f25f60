"""What the fused-GEMM (bias, activation, residual) sweep tries: exactly the matmul space.

The epilogue runs on the accumulator in registers, so it changes no tile or pipeline choice; the
only difference is what the template stores, and the constraints of search_spaces/matmul.py
(shared memory, registers, split-K, persistent, TMA alignment, warp specialization) apply as
they are. With split-K the epilogue moves into the split-K finish kernel.
"""
from __future__ import annotations

from kernels.gemm_epilogue import SPEC, FusedGemmProblem
from kernels.spec import element_size
from search_spaces.gemm_rules import GemmShape
from search_spaces.matmul import gemm_space
from tuner.hardware import Hardware
from tuner.registry import Tunable
from tuner.space import Space


def space(problem: FusedGemmProblem, hw: Hardware) -> Space:
    e = element_size(problem.dtype)
    return gemm_space(GemmShape(problem.M, problem.N, problem.K, e, e, tf32=problem.dtype == "float32"), hw)


TUNABLE = Tunable(kernel=SPEC, space=space)
