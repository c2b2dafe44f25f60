"""What the flash-attention forward sweep tries, per target, and why.

Ranges follow what fits an H100 for head_dim 64 and 128 (the Triton tutorial's own space, plus
the SPLIT_MASKED switch). The constraints reject, before any compile:
  * tiles above the sequence (padded to a power of two, at least 16).
  * registers: the fp32 output accumulator (BLOCK_M x head_dim) plus the score tile
    (BLOCK_M x BLOCK_N) per thread; past 192 values per thread the kernel spills (each thread
    also holds pointers, the softmax state and the Q fragment).
  * shared memory: the Q tile plus num_stages copies of a K and a V tile.
  * SPLIT_MASKED when nothing needs masking apart (non-causal with a sequence that is a whole
    number of key blocks: the unmasked copy of the loop would be the only one).
"""
from __future__ import annotations

from kernelevolve.kernels.attention import SPEC, AttentionProblem
from kernelevolve.kernels.spec import element_size
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Bool, Choice, Const, Pow2, Space, bind_rule, next_pow2

REGS_PER_THREAD_MAX = 192


def tile_fits_sequence(cfg, problem, hw):
    """BLOCK_M, BLOCK_N <= padded sequence length"""
    padded = next_pow2(problem.seq_len, 16)
    for name in ("BLOCK_M", "BLOCK_N"):
        if cfg[name] > padded:
            return f"{name}={cfg[name]} > padded sequence {padded}"
    return None


def registers(cfg, problem, hw):
    """accumulator + score tile <= 192 fp32 registers per thread"""
    if hw.interpreter:
        return None
    regs = cfg["BLOCK_M"] * (problem.head_dim + cfg["BLOCK_N"]) / (32 * cfg["num_warps"])
    return f"needs {regs:.0f} registers/thread > {REGS_PER_THREAD_MAX}" if regs > REGS_PER_THREAD_MAX else None


def shared_memory(cfg, problem, hw):
    """(BLOCK_M + 2 * num_stages * BLOCK_N) * head_dim * elem bytes <= shared memory"""
    if not hw.smem_per_block:
        return None
    rows = cfg["BLOCK_M"] + 2 * max(1, cfg["num_stages"]) * cfg["BLOCK_N"]
    need = rows * problem.head_dim * element_size(problem.dtype)
    return f"shared memory {need} B > {hw.smem_per_block} B" if need > hw.smem_per_block else None


def split_has_work(cfg, problem, hw):
    """SPLIT_MASKED only when some key blocks need a mask and some do not"""
    if cfg["SPLIT_MASKED"] and not problem.causal and problem.seq_len % cfg["BLOCK_N"] == 0:
        return "non-causal with whole key blocks: nothing is masked, SPLIT_MASKED changes nothing"
    return None


RULES = (tile_fits_sequence, registers, shared_memory, split_has_work)


def space(problem: AttentionProblem, hw: Hardware) -> Space:
    rules = tuple(bind_rule(r, problem, hw) for r in RULES)
    if hw.interpreter:
        return Space(
            domains=(Pow2("BLOCK_M", 16, 32), Pow2("BLOCK_N", 16, 32), Bool("SPLIT_MASKED"),
                     Const("num_warps", 4), Const("num_stages", 1)),
            constraints=rules, notes="interpreter: num_warps/num_stages fixed, tiles small")
    return Space(
        domains=(Pow2("BLOCK_M", 64, 128), Pow2("BLOCK_N", 32, 128), Bool("SPLIT_MASKED"),
                 Pow2("num_warps", 4, 8), Choice("num_stages", (2, 3, 4))),
        constraints=rules, notes="GPU: see search_spaces/attention.py for the constraints")


TUNABLE = Tunable(kernel=SPEC, space=space)
