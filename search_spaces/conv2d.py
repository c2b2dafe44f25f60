"""What the conv2d (NHWC implicit GEMM) sweep tries, per target, and why.

The implicit GEMM is M = N*P*Q output pixels by C_out output channels, reduced over R*S taps of
C_in channels; a K step is BLOCK_K input channels of one tap. Parameters:
  BLOCK_M/N/K, GROUP_M, num_warps, num_stages   as for matmul
  FLAT_K     one pipelined loop over (tap, channel block) or nested tap/channel loops
  TMA        (Hopper only) weight tiles by tensor descriptor; activations are always gathered
  AMD        waves_per_eu, matrix_instr_nonkdim, kpack (NOT tested here: no AMD machine)
Constraints: the matmul ones (search_spaces/gemm_rules.py) on the implicit GEMM, with the
reduction seen per tap (BLOCK_K is compared with C_in, not R*S*C_in); TMA only when the
weight's [C_out, R*S*C_in] rows are 16-byte aligned; and
  * FLAT_K only matters with more than one tap or channel block: kept False for a 1x1 filter
    whose channels fit one block (the same loop either way).
"""
from __future__ import annotations

from kernels.conv2d import SPEC, Conv2dProblem
from kernels.gemm_tiles import HAS_TENSOR_DESCRIPTORS
from kernels.spec import element_size
from search_spaces.gemm_rules import GemmShape, rules
from search_spaces.matmul import amd_launch_options, space_notes
from tuner.hardware import Hardware
from tuner.registry import Tunable
from tuner.space import Bool, Choice, Const, IntRange, Pow2, Space

CONV_RULES = ("tile_fits_problem", "shared_memory", "registers", "hopper_mma_rows")


class FlatKNeedsSteps:
    """FLAT_K only when the reduction has more than one K step"""

    def __init__(self, problem: Conv2dProblem):
        self.problem = problem

    def __call__(self, cfg: dict):
        p = self.problem
        if cfg.get("FLAT_K", False) and p.R * p.S * -(-p.C_in // cfg["BLOCK_K"]) == 1:
            return "FLAT_K with a single K step (1x1 filter, one channel block): same loop as nested"
        return None


class TmaWeightAlignment:
    """TMA only with 16-byte aligned weight rows (R*S*C_in elements)"""

    def __init__(self, problem: Conv2dProblem):
        self.problem = problem

    def __call__(self, cfg: dict):
        p = self.problem
        row = p.R * p.S * p.C_in * element_size(p.dtype)
        if cfg.get("TMA", False) and row % 16:
            return f"TMA needs 16-byte aligned weight rows: R*S*C_in = {row} B"
        return None


def space(problem: Conv2dProblem, hw: Hardware) -> Space:
    p, e = problem, element_size(problem.dtype)
    shape = GemmShape(p.N * p.P * p.Q, p.C_out, p.C_in, e, e, tf32=p.dtype == "float32")
    tma = (Bool("TMA"),) if hw.arch == "sm90" and HAS_TENSOR_DESCRIPTORS else ()
    if hw.interpreter:
        domains = (Pow2("BLOCK_M", 16, 64), Pow2("BLOCK_N", 16, 64), Pow2("BLOCK_K", 16, 32),
                   Choice("GROUP_M", (1, 8)), Bool("FLAT_K"), Const("num_warps", 4),
                   Const("num_stages", 1))
    else:
        domains = (Pow2("BLOCK_M", 32, 256), Pow2("BLOCK_N", 16, 256), Pow2("BLOCK_K", 16, 128),
                   Choice("GROUP_M", (1, 8)), Bool("FLAT_K"), *tma, Pow2("num_warps", 4, 8),
                   IntRange("num_stages", 1 if hw.vendor == "amd" else 2, 3 if hw.vendor == "amd" else 5),
                   *amd_launch_options(hw))
    return Space(domains=domains, constraints=rules(shape, hw, CONV_RULES) + (FlatKNeedsSteps(p), TmaWeightAlignment(p)),
                 notes=space_notes(hw))


TUNABLE = Tunable(kernel=SPEC, space=space)
