"""The search space of the row L2-normalize plug-in, and the `Tunable` an experiment names.

An experiment file names this object as `plugin.py:TUNABLE` (a path relative to the YAML). The
plug-in's folder is put first on sys.path when it is loaded, as `python plugin.py` would, so the
kernel module beside it is imported by its plain name; `kernelevolve reproduce` hashes both files
(and any other module of this folder they import) to tell whether the code changed since the sweep.

What is tried, and why:
  BLOCK  columns per step: powers of two up to the padded row (larger only computes masked lanes).
  ROWS   rows per program: short rows leave lanes idle otherwise.
  num_warps / num_stages   fixed on the interpreter; searched on a GPU.
"""
from __future__ import annotations

from l2norm_kernel import SPEC, L2NormProblem
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Choice, Const, Pow2, Space, bind_rule, next_pow2


def block_fits_row(cfg, problem, hw):
    """BLOCK <= the padded row (a wider step only computes masked lanes)"""
    width = next_pow2(problem.cols, 16)
    return f"BLOCK={cfg['BLOCK']} > padded row {width}" if cfg["BLOCK"] > width else None


def tile_in_registers(cfg, problem, hw):
    """ROWS*BLOCK <= 64 fp32 values per thread (past that the tile spills)"""
    per_thread = cfg["ROWS"] * cfg["BLOCK"] // (32 * cfg["num_warps"])
    return f"{per_thread} values per thread > 64" if per_thread > 64 else None


def space(problem: L2NormProblem, hw: Hardware) -> Space:
    rules = tuple(bind_rule(r, problem, hw) for r in (block_fits_row, tile_in_registers))
    if hw.interpreter:
        return Space(domains=(Pow2("BLOCK", 16, 256), Pow2("ROWS", 1, 8),
                              Const("num_warps", 4), Const("num_stages", 1)),
                     constraints=rules, notes="interpreter: num_warps/num_stages fixed, tiles small")
    return Space(domains=(Pow2("BLOCK", 64, 8192), Pow2("ROWS", 1, 16),
                          Pow2("num_warps", 1, 16), Choice("num_stages", (1, 2, 3))),
                 constraints=rules, notes="GPU: see examples/row_l2norm/plugin.py")


TUNABLE = Tunable(kernel=SPEC, space=space)
