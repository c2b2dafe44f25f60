"""What the conv2d (NHWC implicit GEMM) sweep tries, per target, and why.

The implicit GEMM is M = N*P*Q output pixels by C_out output channels, reduced over R*S taps of
C_in channels; a K step is BLOCK_K input channels of one tap. Parameters:
  BLOCK_M/N/K, GROUP_M, num_warps, num_stages   as for matmul
  FLAT_K     one pipelined loop over (tap, channel block) or a tap loop around a channel loop
  SPLIT_K    1, 2, 3, 4, 6, 9 (interpreter: 1, 2, 3): the K steps of a tile dealt to that many
             programs, partial sums atomically added in fp32 (divisors and multiples of the 9
             taps of a 3x3 filter, so the splits get equal work)
  TMA        (Hopper only) weight tiles by tensor descriptor
  X_TMA      (Hopper only) activation tiles as 4-D tensor-descriptor boxes of BLOCK_P x BLOCK_Q
             output pixels (zero-filled padding) instead of a masked pointer gather
  BLOCK_Q    (Hopper only) 8..64, the box's width in output columns with X_TMA
  BLOCK_I    (Hopper only) 1..8 images per X_TMA box, dividing N (less thrown-away work on
             images whose sides are not powers of two)
  STAGE_X    (Hopper only) a bordered copy of x read as shifted 2-D boxes (kernels/conv2d.py)
  SWAP_AB    (Hopper only) the MMA computes y^T: weights as its A, pixels as its B, so a multi-row
             X_TMA box stays in shared memory; pixel tiles may then be as small as 16 (the rows
             rule moves to BLOCK_N)
  PERSISTENT, PROGRAMS_PER_SM (1..4)   (GPU targets) programs that each walk many tiles in one
             flat loop, software-pipelined across tile boundaries (3x3 over 64 channels gives a
             tile only 9 K steps, so a program per tile spends much of its life filling and
             draining its pipeline; H100: 56x56x64 29.1 -> 25.6 us, slower on the 28x28x128 and
             14x14x256 layers, whose tiles have 18-36 K steps)
  AMD        waves_per_eu, matrix_instr_nonkdim, kpack (NOT tested here: no AMD machine)
Constraints: the matmul ones (search_spaces/gemm_rules.py) on the implicit GEMM, with the
reduction seen per tap (BLOCK_K is compared with C_in, not R*S*C_in); TMA only when the
weight's [C_out, R*S*C_in] rows are 16-byte aligned; and
  * FLAT_K only matters with more than one tap or channel block: kept False for a 1x1 filter
    whose channels fit one block (the same loop either way).
  * X_TMA only with stride 1 and 16-byte aligned pixels (C_in * element size); BLOCK_Q divides
    BLOCK_M and the box is no wider or taller than the output (each padded to a power of two);
    without X_TMA, BLOCK_Q is pinned to its smallest value (the kernel ignores it).
  * STAGE_X only with stride 1, 16-byte aligned pixels and weight rows; it runs its own kernel
    (flat K loop, weights by descriptor), so FLAT_K=True, TMA=True, X_TMA=False, SPLIT_K=1 are
    pinned with it: other values would time the same kernel again.
  Pinned values are also where a sampler's point lands (canonical_switches, Space.canonical):
  raw points with other values are decoded to their pinned twin instead of rejected, which lifts
  the share of valid points on the H100 from 0.7% to 15% (56x56x64) and from 3.5% to 33% (14x14x256).
  * SPLIT_K > 1 only while the output has fewer than two waves of tiles, and never more splits
    than K steps (with the tap loop, than taps).
  * PERSISTENT only with FLAT_K and SPLIT_K=1 (one flat loop over whole tiles); PROGRAMS_PER_SM
    pinned to 1 without it, PERSISTENT pinned False with STAGE_X (its own kernel).
Measured on the H100 (triton 3.6, bf16, N=32, GPU time per launch with L2 flushed): X_TMA won
4-10% on the three ResNet layers (14x14x256 with BLOCK_K=128, 28x28x128 with num_warps=4,
56x56x64 with BLOCK_M=256); SPLIT_K lost on all three (the 14x14 layer's 98 tiles of 128x128:
2 splits took 47 us against 28 us unsplit, atomics and the zero-fill/cast passes included), so
the rule lets it be tried but a sweep should not expect it to win at these sizes.
"""
from __future__ import annotations

from kernelevolve.kernels.conv2d import SPEC, Conv2dProblem
from kernelevolve.kernels.gemm_tiles import HAS_TENSOR_DESCRIPTORS
from kernelevolve.kernels.spec import element_size
from kernelevolve.search_spaces.gemm_rules import TMA_ALIGN_BYTES, GemmShape, rules
from kernelevolve.search_spaces.matmul import amd_launch_options, space_notes
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Bool, Choice, Const, IntRange, Pow2, Space, next_pow2

CONV_RULES = ("tile_fits_problem", "shared_memory", "registers", "hopper_mma_rows")
BLOCK_Q_MIN, BLOCK_Q_MAX = 8, 64
SPLIT_K_GPU = (1, 2, 3, 4, 6, 9)
SPLIT_K_INTERPRETER = (1, 2, 3)


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


def descriptor_input(p: Conv2dProblem, switch: str) -> str | None:
    """Why x cannot be read as descriptor boxes (X_TMA's, or STAGE_X's over the bordered copy):
    a box covers consecutive input pixels, so stride 1; the descriptor's pixel stride is 16-byte
    aligned (H and N strides, and the weight rows R*S*C_in, are then multiples of it)."""
    if p.stride != 1:
        return f"{switch} needs stride 1, the problem has stride {p.stride}"
    pixel = p.C_in * element_size(p.dtype)
    if pixel % TMA_ALIGN_BYTES:
        return f"{switch} needs {TMA_ALIGN_BYTES}-byte aligned pixels: C_in x element = {pixel} B"
    return None


class ActivationBoxes:
    """X_TMA only with stride 1 and 16-byte aligned pixels (C_in * element size); BLOCK_I divides N,
    BLOCK_Q x BLOCK_I divides BLOCK_M and the BLOCK_P x BLOCK_Q box fits the output (padded to
    powers of two); BLOCK_Q and BLOCK_I pinned to their smallest values without X_TMA"""

    def __init__(self, problem: Conv2dProblem):
        self.problem = problem

    def __call__(self, cfg: dict):
        p = self.problem
        bq, bi = cfg.get("BLOCK_Q", BLOCK_Q_MIN), cfg.get("BLOCK_I", 1)
        if not cfg.get("X_TMA", False):
            # the kernel ignores BLOCK_Q and BLOCK_I without X_TMA: other values would time the same kernel
            if bi != 1:
                return f"BLOCK_I={bi} varies only with X_TMA"
            return None if bq == BLOCK_Q_MIN else f"BLOCK_Q={bq} varies only with X_TMA"
        if p.N % bi:
            return f"BLOCK_I={bi} does not divide the batch N={p.N}"
        if cfg["BLOCK_M"] % (bq * bi):
            return f"BLOCK_Q={bq} x BLOCK_I={bi} does not divide BLOCK_M={cfg['BLOCK_M']}"
        why = descriptor_input(p, "X_TMA")
        if why:
            return why
        # a box past the output in both directions only multiplies zeros: the other shape is tried
        if bq > next_pow2(p.Q, BLOCK_Q_MIN):
            return f"BLOCK_Q={bq} is wider than the output row (Q={p.Q})"
        if cfg["BLOCK_M"] // (bq * bi) > next_pow2(p.P):
            return f"BLOCK_P={cfg['BLOCK_M'] // (bq * bi)} is taller than the output (P={p.P})"
        return None


class StagedInput:
    """STAGE_X only with stride 1 and 16-byte aligned pixels (which align the weight rows too); with
    it FLAT_K and TMA are pinned True, X_TMA and SWAP_AB False and SPLIT_K 1 (its kernel has no other
    variant)"""

    def __init__(self, problem: Conv2dProblem):
        self.problem = problem

    def __call__(self, cfg: dict):
        if not cfg.get("STAGE_X", False):
            return None
        why = descriptor_input(self.problem, "STAGE_X")
        if why:
            return why
        pinned = {"FLAT_K": True, "TMA": True, "X_TMA": False, "SPLIT_K": 1, "SWAP_AB": False,
                  "PERSISTENT": False}
        off = [k for k, v in pinned.items() if k in cfg and cfg[k] != v]
        return f"STAGE_X runs one kernel: {', '.join(off)} pinned" if off else None


class SplitKWhereItHelps:
    """SPLIT_K > 1 only with fewer than two waves of output tiles, and no more splits than K
    steps (with FLAT_K: taps x channel blocks; with the tap loop, which splits whole taps: taps)"""

    def __init__(self, problem: Conv2dProblem, hw: Hardware):
        self.problem, self.hw = problem, hw

    def __call__(self, cfg: dict):
        p, n = self.problem, cfg.get("SPLIT_K", 1)
        if n == 1:
            return None
        steps = p.R * p.S * (-(-p.C_in // cfg["BLOCK_K"]) if cfg.get("FLAT_K", True) else 1)
        if n > steps:
            return f"SPLIT_K={n} > {steps} K steps: some splits would get no work"
        if cfg.get("X_TMA", False):
            bq, bi = cfg.get("BLOCK_Q", BLOCK_Q_MIN), cfg.get("BLOCK_I", 1)
            m_tiles = p.N // bi * -(-p.P // max(1, cfg["BLOCK_M"] // (bq * bi))) * -(-p.Q // bq)
        else:
            m_tiles = -(-p.N * p.P * p.Q // cfg["BLOCK_M"])
        tiles = m_tiles * -(-p.C_out // cfg["BLOCK_N"])
        if self.hw.sm_count and tiles >= 2 * self.hw.sm_count:
            return f"SPLIT_K={n} with {tiles} output tiles: already two waves of {self.hw.sm_count} SMs"
        return None


class PersistentTiles:
    """PERSISTENT only with FLAT_K and SPLIT_K=1: a program walks whole tiles in one flat loop"""

    def __call__(self, cfg: dict):
        if not cfg.get("PERSISTENT", False):
            return None
        if not cfg.get("FLAT_K", True):
            return "PERSISTENT walks tiles in one flat K loop: it takes FLAT_K=True"
        if cfg.get("SPLIT_K", 1) != 1:
            return f"PERSISTENT runs whole tiles: it takes SPLIT_K=1, got {cfg['SPLIT_K']}"
        return None


def canonical_switches(cfg: dict) -> dict:
    """The one config of each family that times the same kernel: with STAGE_X its pinned switches
    set, without X_TMA the smallest BLOCK_Q and one image per box, without PERSISTENT one program
    per SM (Space.canonical: a sampler's point lands here instead of being rejected by StagedInput
    or ActivationBoxes)."""
    fixed = {}
    if cfg.get("STAGE_X"):
        fixed.update(FLAT_K=True, TMA=True, X_TMA=False, SPLIT_K=1, SWAP_AB=False, PERSISTENT=False)
    if not fixed.get("X_TMA", cfg.get("X_TMA", False)):
        fixed.update(BLOCK_Q=BLOCK_Q_MIN, BLOCK_I=1)
    if not fixed.get("PERSISTENT", cfg.get("PERSISTENT", False)):
        fixed.update(PROGRAMS_PER_SM=1)
    return {**cfg, **{k: v for k, v in fixed.items() if k in cfg}}


def space(problem: Conv2dProblem, hw: Hardware) -> Space:
    p, e = problem, element_size(problem.dtype)
    shape = GemmShape(p.N * p.P * p.Q, p.C_out, p.C_in, e, e, tf32=p.dtype == "float32")
    hopper = (Bool("TMA"), Bool("X_TMA"), Pow2("BLOCK_Q", BLOCK_Q_MIN, BLOCK_Q_MAX), Pow2("BLOCK_I", 1, 8),
              Bool("STAGE_X"), Bool("SWAP_AB")) \
        if hw.arch == "sm90" and HAS_TENSOR_DESCRIPTORS else ()
    if hw.interpreter:
        domains = (Pow2("BLOCK_M", 16, 64), Pow2("BLOCK_N", 16, 64), Pow2("BLOCK_K", 16, 32),
                   Choice("GROUP_M", (1, 8)), Bool("FLAT_K"), Choice("SPLIT_K", SPLIT_K_INTERPRETER),
                   Const("num_warps", 4), Const("num_stages", 1))
    else:
        domains = (Pow2("BLOCK_M", 16, 256), Pow2("BLOCK_N", 16, 256), Pow2("BLOCK_K", 16, 128),
                   Choice("GROUP_M", (1, 8)), Bool("FLAT_K"), Choice("SPLIT_K", SPLIT_K_GPU), *hopper,
                   Bool("PERSISTENT"), IntRange("PROGRAMS_PER_SM", 1, 4),
                   Pow2("num_warps", 4, 8),
                   IntRange("num_stages", 1 if hw.vendor == "amd" else 2, 3 if hw.vendor == "amd" else 5),
                   *amd_launch_options(hw))
    constraints = rules(shape, hw, CONV_RULES) + (FlatKNeedsSteps(p), TmaWeightAlignment(p),
                                                  ActivationBoxes(p), StagedInput(p), SplitKWhereItHelps(p, hw),
                                                  PersistentTiles())
    return Space(domains=domains, constraints=constraints, notes=space_notes(hw), canonical=(canonical_switches,))


TUNABLE = Tunable(kernel=SPEC, space=space)
