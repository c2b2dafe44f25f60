"""What the GEMM sweep tries, per target, and why.

Tiles are powers of two. On a GPU the constraints below reject, before any compile:
  * shared memory: the pipeline keeps num_stages copies of an A tile and a B tile; more than the
    chip lets one program opt into is an OutOfResources at launch (a naive space lost 6 of 16
    H100 trials to this).
  * registers: the fp32 accumulator is BLOCK_M*BLOCK_N/(32*num_warps) registers per thread; past
    128 the rest of the kernel spills (255 is the hardware cap, and addresses and the loaded
    operands need the remainder).
  * tiles far larger than the problem: a BLOCK_M above the next power of two of M computes rows
    that are thrown away.
  * split-K only where it can help: when the output has fewer tiles than two waves of the GPU's
    multiprocessors, and with at least one K block per split.
  * Hopper's warpgroup MMA works on 64-row slices: BLOCK_M below 64 (when M allows 64) drops to
    the older, slower MMA path, so it is not tried.
On the interpreter (CPU) num_warps and num_stages mean nothing and stay fixed; tiles stay small so
a candidate takes seconds, not minutes.
"""
from __future__ import annotations

from kernels.matmul import SPEC, MatmulProblem
from kernels.spec import element_size
from tuner.hardware import Hardware
from tuner.registry import Tunable
from tuner.space import Choice, Const, IntRange, Pow2, Space

ACC_REGS_PER_THREAD_MAX = 128


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def shared_memory_bytes(config: dict, dtype: str) -> int:
    """The pipeline's shared memory: num_stages buffers of an A tile plus a B tile."""
    tile = (config["BLOCK_M"] + config["BLOCK_N"]) * config["BLOCK_K"] * element_size(dtype)
    return max(1, config["num_stages"]) * tile


def accumulator_regs(config: dict) -> float:
    return config["BLOCK_M"] * config["BLOCK_N"] / (32 * config["num_warps"])


def _constraints(problem: MatmulProblem, hw: Hardware) -> tuple:
    # Closures would not pickle; bind the problem and hardware through a small callable class.
    return tuple(_Rule(kind, problem, hw) for kind in _RULES)


class _Rule:
    def __init__(self, kind, problem, hw):
        self.kind, self.problem, self.hw = kind, problem, hw
        self.__doc__ = _RULES[kind]

    def __call__(self, cfg: dict):
        return getattr(self, "_" + self.kind)(cfg, self.problem, self.hw)

    @staticmethod
    def _tile_fits_problem(cfg, p, hw):
        for blk, dim in (("BLOCK_M", p.M), ("BLOCK_N", p.N), ("BLOCK_K", p.K)):
            if cfg[blk] > max(16, _next_pow2(dim)):
                return f"{blk}={cfg[blk]} exceeds the problem ({dim} padded to {max(16, _next_pow2(dim))})"
        return None

    @staticmethod
    def _split_k(cfg, p, hw):
        s = cfg["SPLIT_K"]
        if s == 1:
            return None
        if s * cfg["BLOCK_K"] > p.K:
            return f"SPLIT_K={s} x BLOCK_K={cfg['BLOCK_K']} > K={p.K}: some splits get no K block"
        tiles = -(-p.M // cfg["BLOCK_M"]) * -(-p.N // cfg["BLOCK_N"])
        if hw.sm_count and tiles >= 2 * hw.sm_count:
            return f"SPLIT_K={s} with {tiles} output tiles: already two waves of {hw.sm_count} SMs"
        return None

    @staticmethod
    def _shared_memory(cfg, p, hw):
        if not hw.smem_per_block:
            return None
        need = shared_memory_bytes(cfg, p.dtype)
        if need > hw.smem_per_block:
            return f"shared memory {need} B > {hw.smem_per_block} B per program on {hw.name}"
        return None

    @staticmethod
    def _registers(cfg, p, hw):
        if hw.interpreter:
            return None
        regs = accumulator_regs(cfg)
        if regs > ACC_REGS_PER_THREAD_MAX:
            return f"accumulator needs {regs:.0f} registers/thread > {ACC_REGS_PER_THREAD_MAX}"
        return None

    @staticmethod
    def _hopper_mma_rows(cfg, p, hw):
        if hw.arch == "sm90" and cfg["BLOCK_M"] < 64 <= p.M:
            return f"BLOCK_M={cfg['BLOCK_M']} < 64 leaves Hopper's warpgroup MMA unused"
        return None


_RULES = {
    "tile_fits_problem": "no tile dimension above the problem's (padded to a power of two)",
    "split_k": "SPLIT_K > 1 only with one K block per split and fewer than two waves of tiles",
    "shared_memory": "num_stages * (BLOCK_M + BLOCK_N) * BLOCK_K * elem bytes <= the program's shared memory",
    "registers": "fp32 accumulator <= 128 registers per thread",
    "hopper_mma_rows": "on Hopper, BLOCK_M >= 64 when M allows it",
}


def space(problem: MatmulProblem, hw: Hardware) -> Space:
    if hw.interpreter:
        return Space(
            domains=(
                Pow2("BLOCK_M", 16, 64), Pow2("BLOCK_N", 16, 64), Pow2("BLOCK_K", 16, 64),
                Choice("GROUP_M", (1, 4, 8)), Pow2("SPLIT_K", 1, 4),
                Const("num_warps", 4), Const("num_stages", 1),
            ),
            constraints=_constraints(problem, hw),
            notes="interpreter: num_warps/num_stages are ignored by TRITON_INTERPRET and fixed",
        )
    return Space(
        domains=(
            Pow2("BLOCK_M", 16, 256), Pow2("BLOCK_N", 16, 256), Pow2("BLOCK_K", 16, 128),
            Choice("GROUP_M", (1, 4, 8, 16)), Pow2("SPLIT_K", 1, 8),
            Pow2("num_warps", 4, 8), IntRange("num_stages", 2, 5),
        ),
        constraints=_constraints(problem, hw),
        notes="GPU: see search_spaces/matmul.py for why each constraint exists",
    )


TUNABLE = Tunable(kernel=SPEC, space=space)
