"""What the row-kernel spaces (row softmax, LayerNorm / RMSNorm) share: a row is BLOCK wide, held
in registers whole or looped over in blocks under a mode switch (softmax ONLINE, norms LOOPED).

  * padded_row: the padded row width (a power of two, at least 16).
  * block_mode: in registers, BLOCK must be the padded row (smaller cannot hold it, larger only
    computes masked lanes); looped, BLOCK covering the whole row only costs extra reads.
  * register_spill: live fp32 values past 128 per thread spill (not checked on the interpreter).
Each space keeps its own rules (their docstrings are what `kernelevolve kernels` prints) and
calls these for the checks and their messages.
"""
from __future__ import annotations

from kernelevolve.tuner.search.space import next_pow2

REGS_PER_THREAD_MAX = 128


def padded_row(n: int) -> int:
    return next_pow2(n, 16)


def block_mode(cfg, cols: int, switch: str, in_registers: str, looped_cost: str):
    """cfg[switch] False (the row in registers, `in_registers` names it): BLOCK = padded row;
    True: BLOCK < padded row, else it `only adds {looped_cost}`."""
    width = padded_row(cols)
    if not cfg[switch] and cfg["BLOCK"] != width:
        return f"{in_registers} needs BLOCK = padded row {width}, got {cfg['BLOCK']}"
    if cfg[switch] and cfg["BLOCK"] >= width:
        return f"{switch} with BLOCK={cfg['BLOCK']} >= padded row {width} only adds {looped_cost}"
    return None


def register_spill(cfg, hw, live: float, prefix: str = ""):
    """live fp32 values per thread (32 * num_warps threads) past 128 spill; none checked on the
    interpreter. `prefix` starts the message ("tile ")."""
    if hw.interpreter:
        return None
    regs = live / (32 * cfg["num_warps"])
    return f"{prefix}needs {regs:.0f} registers/thread > {REGS_PER_THREAD_MAX}" if regs > REGS_PER_THREAD_MAX else None
