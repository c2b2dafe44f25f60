"""What the DLRM dot-interaction sweep tries, per target, and why.

Per sample the work is one F x F x D product, small: the levers are the D slice per step, how
many samples a program takes (amortising index math and keeping enough loads in flight) and
whether the product runs on tensor cores (F padded to >= 16) or on CUDA cores. The constraints
reject, before any compile:
  * BLOCK_D above the padded dim.
  * registers: the CUDA-core path holds an [F_PAD, F_PAD, BLOCK_D] fp32 product, the tensor-core
    path an [F_PAD, F_PAD] accumulator plus the [F_PAD, BLOCK_D] tile; past 128 fp32 values per
    thread they spill.
  * too few programs: SAMPLES_PER_PROGRAM leaving fewer than two programs per multiprocessor.
"""
from __future__ import annotations


from kernelevolve.kernels.interaction import SPEC, InteractionProblem, padded_features
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Bool, Choice, Const, Pow2, Space, bind_rule, next_pow2

REGS_PER_THREAD_MAX = 128


def block_fits_dim(cfg, problem, hw):
    """BLOCK_D <= padded dim"""
    padded = next_pow2(problem.dim, 16)
    return f"BLOCK_D={cfg['BLOCK_D']} > padded dim {padded}" if cfg["BLOCK_D"] > padded else None


def registers(cfg, problem, hw):
    """live fp32 values <= 128 registers per thread"""
    if hw.interpreter:
        return None
    f_pad = padded_features(problem.features, cfg["USE_DOT"])
    live = f_pad * f_pad * (1 if cfg["USE_DOT"] else cfg["BLOCK_D"]) + f_pad * cfg["BLOCK_D"]
    regs = live / (32 * cfg["num_warps"])
    return f"needs {regs:.0f} registers/thread > {REGS_PER_THREAD_MAX}" if regs > REGS_PER_THREAD_MAX else None


def enough_programs(cfg, problem, hw):
    """SAMPLES_PER_PROGRAM > 1 only while two programs per multiprocessor remain"""
    programs = -(-problem.batch // cfg["SAMPLES_PER_PROGRAM"])
    want = min(problem.batch, 2 * (hw.sm_count or 1))
    return f"{programs} programs < {want}" if cfg["SAMPLES_PER_PROGRAM"] > 1 and programs < want else None


RULES = (block_fits_dim, registers, enough_programs)


def space(problem: InteractionProblem, hw: Hardware) -> Space:
    rules = tuple(bind_rule(r, problem, hw) for r in RULES)
    if hw.interpreter:
        return Space(
            domains=(Bool("USE_DOT"), Pow2("BLOCK_D", 16, 64), Pow2("SAMPLES_PER_PROGRAM", 1, 4),
                     Const("num_warps", 4), Const("num_stages", 1)),
            constraints=rules, notes="interpreter: num_warps/num_stages fixed, tiles small")
    return Space(
        domains=(Bool("USE_DOT"), Pow2("BLOCK_D", 16, 256), Pow2("SAMPLES_PER_PROGRAM", 1, 16),
                 Pow2("num_warps", 1, 8), Choice("num_stages", (1, 2, 3))),
        constraints=rules, notes="GPU: see search_spaces/interaction.py for the constraints")


TUNABLE = Tunable(kernel=SPEC, space=space)
