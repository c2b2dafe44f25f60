"""What the row-softmax sweep tries, per target, and why.

BLOCK runs over powers of two up to the padded row. The constraints reject, before any compile:
  * in-registers (ONLINE=False) with BLOCK other than the padded row: smaller cannot hold the
    row, larger only computes masked lanes.
  * ONLINE with BLOCK covering the whole row: that is the in-registers kernel with a second read.
  * registers: the live [ROWS, BLOCK] fp32 tile is ROWS*BLOCK/(32*num_warps) values per thread;
    past 128 it spills.
  * too few programs: ROWS > 1 that leaves fewer programs than multiprocessors (or rows).
  * num_stages > 1 without a loop to pipeline (the in-registers kernel has none).
On the interpreter num_warps/num_stages are fixed and tiles small.
"""
from __future__ import annotations

from kernelevolve.kernels.softmax import SPEC, SoftmaxProblem
from kernelevolve.search_spaces.row_rules import block_mode, padded_row, register_spill
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Bool, Choice, Const, Pow2, Space, bind_rule


def block_matches_mode(cfg, problem, hw):
    """in registers: BLOCK = padded row; online: BLOCK < padded row"""
    return block_mode(cfg, problem.cols, "ONLINE", "in-registers", "a second read")


def registers(cfg, problem, hw):
    """the live fp32 tile <= 128 registers per thread"""
    return register_spill(cfg, hw, cfg["ROWS"] * cfg["BLOCK"], "tile ")


def enough_programs(cfg, problem, hw):
    """ROWS > 1 only while it leaves a program per multiprocessor"""
    programs = -(-problem.rows // cfg["ROWS"])
    want = min(problem.rows, hw.sm_count or 1)
    return f"ROWS={cfg['ROWS']} leaves {programs} programs < {want}" \
        if cfg["ROWS"] > 1 and programs < want else None


def stages_need_loop(cfg, problem, hw):
    """num_stages > 1 only for the online loops"""
    return "num_stages > 1 without a loop to pipeline" \
        if cfg["num_stages"] > 1 and not cfg["ONLINE"] else None


RULES = (block_matches_mode, registers, enough_programs, stages_need_loop)


def space(problem: SoftmaxProblem, hw: Hardware) -> Space:
    rules = tuple(bind_rule(r, problem, hw) for r in RULES)
    width = padded_row(problem.cols)
    if hw.interpreter:
        return Space(
            domains=(Bool("ONLINE"), Pow2("BLOCK", 16, min(width, 1024)), Pow2("ROWS", 1, 4),
                     Const("num_warps", 4), Const("num_stages", 1)),
            constraints=rules, notes="interpreter: num_warps/num_stages fixed, tiles small")
    return Space(
        domains=(Bool("ONLINE"), Pow2("BLOCK", 16, min(width, 65536)), Pow2("ROWS", 1, 16),
                 Pow2("num_warps", 1, 16), Choice("num_stages", (1, 2, 3))),
        constraints=rules, notes="GPU: see search_spaces/softmax.py for the constraints")


TUNABLE = Tunable(kernel=SPEC, space=space)
