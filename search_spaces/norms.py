"""What the LayerNorm / RMSNorm sweeps try (forward and backward), per target, and why.

The constraints reject, before any compile:
  * row in registers (LOOPED=False) with BLOCK other than the padded row: smaller cannot hold
    the row, larger only computes masked lanes; LOOPED with BLOCK covering the row only adds
    passes.
  * registers: forward keeps a [ROWS, BLOCK] fp32 tile live, backward x, dy and two fp32
    accumulators of BLOCK; past 128 values per thread they spill.
  * too few programs: forward ROWS or backward ROWS_PER_PROGRAM leaving fewer programs than
    multiprocessors (or rows).
  * backward partial buffers (programs x cols fp32, summed afterwards) larger than x itself:
    ROWS_PER_PROGRAM that small spends more bandwidth on the dweight reduction than on dx.
  * num_stages > 1 without a loop to pipeline.
"""
from __future__ import annotations

from kernelevolve.kernels import norms
from kernelevolve.kernels.spec import element_size
from kernelevolve.search_spaces.row_rules import block_mode, padded_row, register_spill
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Bool, Choice, Const, Pow2, Space, bind_rule


def _rows_per_program(cfg):
    return cfg.get("ROWS", cfg.get("ROWS_PER_PROGRAM"))


def block_matches_mode(cfg, problem, hw):
    """row in registers: BLOCK = padded row; LOOPED: BLOCK < padded row"""
    return block_mode(cfg, problem.cols, "LOOPED", "row in registers", "passes")


def registers(cfg, problem, hw):
    """live fp32 values <= 128 registers per thread"""
    return register_spill(cfg, hw, cfg["ROWS"] * cfg["BLOCK"] if "ROWS" in cfg else 4 * cfg["BLOCK"])


def enough_programs(cfg, problem, hw):
    """rows per program > 1 only while it leaves a program per multiprocessor"""
    per = _rows_per_program(cfg)
    programs = -(-problem.rows // per)
    want = min(problem.rows, hw.sm_count or 1)
    return f"{per} rows per program leaves {programs} programs < {want}" if per > 1 and programs < want else None


def partial_buffer_size(cfg, problem, hw):
    """backward: dweight partials (programs x cols fp32) no larger than x"""
    if "ROWS_PER_PROGRAM" not in cfg:
        return None
    programs = -(-problem.rows // cfg["ROWS_PER_PROGRAM"])
    if programs > 1 and programs * 4 > problem.rows * element_size(problem.dtype):
        return f"{programs} partial rows of fp32 outweigh x; raise ROWS_PER_PROGRAM"
    return None


def stages_need_loop(cfg, problem, hw):
    """num_stages > 1 only where a loop pipelines (LOOPED, or the backward's row loop)"""
    return "num_stages > 1 without a loop to pipeline" \
        if cfg["num_stages"] > 1 and not cfg["LOOPED"] and "ROWS" in cfg else None


RULES = (block_matches_mode, registers, enough_programs, partial_buffer_size, stages_need_loop)


def _space(problem: norms.NormProblem, hw: Hardware, rows_name: str) -> Space:
    rules = tuple(bind_rule(r, problem, hw) for r in RULES)
    width = padded_row(problem.cols)
    if hw.interpreter:
        return Space(
            domains=(Bool("LOOPED"), Pow2("BLOCK", 16, min(width, 1024)), Pow2(rows_name, 1, 4),
                     Const("num_warps", 4), Const("num_stages", 1)),
            constraints=rules, notes="interpreter: num_warps/num_stages fixed, tiles small")
    rows_high = 16 if rows_name == "ROWS" else 256
    return Space(
        domains=(Bool("LOOPED"), Pow2("BLOCK", 16, min(width, 65536)), Pow2(rows_name, 1, rows_high),
                 Pow2("num_warps", 1, 16), Choice("num_stages", (1, 2, 3))),
        constraints=rules, notes="GPU: see search_spaces/norms.py for the constraints")


def forward_space(problem, hw):
    return _space(problem, hw, "ROWS")


def backward_space(problem, hw):
    return _space(problem, hw, "ROWS_PER_PROGRAM")


LAYER_NORM_FWD = Tunable(kernel=norms.LAYER_NORM_FWD, space=forward_space)
LAYER_NORM_BWD = Tunable(kernel=norms.LAYER_NORM_BWD, space=backward_space)
RMS_NORM_FWD = Tunable(kernel=norms.RMS_NORM_FWD, space=forward_space)
RMS_NORM_BWD = Tunable(kernel=norms.RMS_NORM_BWD, space=backward_space)
