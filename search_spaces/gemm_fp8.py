"""What the fp8 (e4m3, per-tensor scales) GEMM sweep tries: Hopper only.

fp8 tensor cores exist from Hopper (sm90) on. On an sm90 target the space is the matmul space
(search_spaces/matmul.py: tiles, GROUP_M, split-K, persistent, TMA, warp specialization,
EPILOGUE_SUBTILE, FLATTEN, maxnreg; the scales are applied before the store, subtiled or not) with
1-byte operands in its shared-memory and alignment models, and BLOCK_K up to 256 (an fp8 K step
of 256 moves as many bytes as a 16-bit one of 128). On any other target it has one config and a
constraint that rejects it with the reason, so `kernelevolve kernels` can still list it and a
sweep of it ends at once with every candidate `invalid`.
"""
from __future__ import annotations

from kernelevolve.kernels.gemm_fp8 import SPEC, Fp8GemmProblem
from kernelevolve.kernels.gemm_tiles import HAS_FP8_E4M3
from kernelevolve.kernels.matmul import DEFAULT_CONFIG
from kernelevolve.kernels.spec import element_size
from kernelevolve.search_spaces.gemm_rules import GemmShape, rules
from kernelevolve.search_spaces.matmul import gemm_domains, later_switch_defaults, one_split_reduce, space_notes
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Choice, Pow2, Space


class NeedsHopper:
    """fp8 e4m3 tensor cores: Hopper (sm90) targets only"""

    def __init__(self, hw: Hardware):
        self.hw = hw

    def __call__(self, cfg: dict):
        if not HAS_FP8_E4M3:
            return "this Triton/torch has no float8 e4m3 type"
        return f"fp8 GEMM needs Hopper (sm90); target {self.hw.name} is {self.hw.arch or 'the CPU interpreter'}"


def space(problem: Fp8GemmProblem, hw: Hardware) -> Space:
    if hw.arch != "sm90" or not HAS_FP8_E4M3:
        # one-option choices, not constants: the Optuna adapter needs a searched parameter
        return Space(domains=tuple(Choice(k, (v,)) for k, v in DEFAULT_CONFIG.items()),
                     constraints=(NeedsHopper(hw),),
                     notes="fp8 GEMM exists only for sm90 targets")
    domains = tuple(Pow2("BLOCK_K", 32, 256) if d.name == "BLOCK_K" else d for d in gemm_domains(hw))
    shape = GemmShape(problem.M, problem.N, problem.K, 1, element_size(problem.out_dtype))
    return Space(domains=domains, constraints=rules(shape, hw), notes=space_notes(hw),
                 canonical=(one_split_reduce,), defaults=later_switch_defaults(domains))


TUNABLE = Tunable(kernel=SPEC, space=space)
