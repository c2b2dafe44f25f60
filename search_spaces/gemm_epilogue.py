"""What the fused-GEMM (bias, activation, residual) sweep tries: exactly the matmul space.

The epilogue runs on the accumulator in registers, so it changes no tile or pipeline choice; the
only difference is what the template stores, and the constraints of search_spaces/matmul.py
(shared memory, registers, split-K, persistent, TMA alignment, warp specialization, epilogue
subtiling, flattening, maxnreg) apply as they are. With EPILOGUE_SUBTILE the epilogue runs on the
whole tile before it is split into the two stored halves. With split-K the epilogue moves into the split-K finish kernel.
"""
from __future__ import annotations

from kernelevolve.kernels.gemm_epilogue import SPEC, FusedGemmProblem
from kernelevolve.kernels.spec import element_size
from kernelevolve.search_spaces.gemm_rules import GemmShape
from kernelevolve.search_spaces.gemm_starts import gemm_starts
from kernelevolve.search_spaces.matmul import gemm_space
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Space


def no_warp_specialized_epilogue(cfg: dict):
    """no WARP_SPECIALIZE with a fused epilogue (wrong results on the H100, triton 3.6)"""
    # Found by tests/test_gemm_epilogue.py::test_fused_gelu_bf16_on_gpu[tma-ws] on the H100 with
    # triton 3.6 (2026-11-24): relative error 0.81 with bias + gelu + residual. Verification would
    # reject every such candidate anyway; excluding them saves their compile and GPU time.
    if cfg.get("WARP_SPECIALIZE", False):
        return "WARP_SPECIALIZE with a fused epilogue gave wrong results on the H100 (triton 3.6)"
    return None


def shape_of(problem: FusedGemmProblem) -> GemmShape:
    e = element_size(problem.dtype)
    return GemmShape(problem.M, problem.N, problem.K, e, e, tf32=problem.dtype == "float32", residual=problem.residual)


def space(problem: FusedGemmProblem, hw: Hardware) -> Space:
    base = gemm_space(shape_of(problem), hw, stage_a=True, stage_b=True)
    return Space(base.domains, base.constraints + (no_warp_specialized_epilogue,), base.notes, base.canonical,
                 base.defaults)


def start(problem: FusedGemmProblem, hw: Hardware) -> list[dict]:
    """The GEMM template's starts (search_spaces/gemm_starts.py): generic tiles and fitted ones."""
    return gemm_starts(space(problem, hw), hw, shape_of(problem), problem.dtype)


TUNABLE = Tunable(kernel=SPEC, space=space, start=start)
