"""What the jagged sweeps try (to padded, to jagged, softmax, jagged x dense bmm), and why.

Common constraints, checked before any compile:
  * tiles above the problem: BLOCK_L / BLOCK_M above the padded max_len, BLOCK_D / BLOCK_N /
    BLOCK_K above the padded dim / n / k compute only masked lanes.
  * registers: the live fp32 tile (copy and softmax: BLOCK_L x BLOCK_D; bmm: the BLOCK_M x BLOCK_N
    accumulator) past 128 values per thread spills; a tile smaller than the threads idles some.
  * softmax in registers (ONLINE=False) needs BLOCK_L = padded max_len; ONLINE with a BLOCK_L
    that covers max_len only adds a second read.
  * bmm shared memory: num_stages copies of an x tile and a y tile must fit a program's share.
"""
from __future__ import annotations


from kernelevolve.kernels import jagged, jagged_bmm, jagged_softmax
from kernelevolve.kernels.spec import element_size
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Bool, Choice, Const, IntRange, Pow2, Space, bind_rule, next_pow2

REGS_PER_THREAD_MAX = 128


def _limits(problem):
    """Each tile parameter's padded problem extent."""
    if isinstance(problem, jagged_bmm.JaggedBmmProblem):
        return {"BLOCK_M": problem.max_len, "BLOCK_N": problem.n, "BLOCK_K": problem.k}
    return {"BLOCK_L": problem.max_len, "BLOCK_D": problem.dim}


def tile_fits_problem(cfg, problem, hw):
    """no tile dimension above the problem's (padded to a power of two, at least 16)"""
    for name, extent in _limits(problem).items():
        if cfg[name] > next_pow2(extent, 16):
            return f"{name}={cfg[name]} > padded {next_pow2(extent, 16)}"
    return None


def registers(cfg, problem, hw):
    """live fp32 tile <= 128 registers per thread, and at least one value per thread"""
    if hw.interpreter:
        return None
    tile = cfg["BLOCK_M"] * cfg["BLOCK_N"] if "BLOCK_M" in cfg else cfg["BLOCK_L"] * cfg["BLOCK_D"]
    threads = 32 * cfg["num_warps"]
    if tile / threads > REGS_PER_THREAD_MAX:
        return f"tile needs {tile / threads:.0f} registers/thread > {REGS_PER_THREAD_MAX}"
    return f"tile of {tile} leaves threads of {threads} idle" if tile < threads else None


def softmax_block(cfg, problem, hw):
    """softmax in registers: BLOCK_L = padded max_len; ONLINE: BLOCK_L < padded max_len"""
    if "ONLINE" not in cfg:
        return None
    width = next_pow2(problem.max_len, 16)
    if not cfg["ONLINE"] and cfg["BLOCK_L"] != width:
        return f"in registers needs BLOCK_L = padded max_len {width}"
    if cfg["ONLINE"] and cfg["BLOCK_L"] >= width:
        return f"ONLINE with BLOCK_L >= padded max_len {width} only adds a second read"
    return None


def shared_memory(cfg, problem, hw):
    """bmm: num_stages * (BLOCK_M + BLOCK_N) * BLOCK_K * elem bytes <= the program's shared memory"""
    if "BLOCK_K" not in cfg or not hw.smem_per_block:
        return None
    tiles = (cfg["BLOCK_M"] + cfg["BLOCK_N"]) * cfg["BLOCK_K"] * element_size(problem.dtype)
    need = max(1, cfg["num_stages"]) * tiles
    return f"shared memory {need} B > {hw.smem_per_block} B" if need > hw.smem_per_block else None


RULES = (tile_fits_problem, registers, softmax_block, shared_memory)


def _rules(problem, hw):
    return tuple(bind_rule(r, problem, hw) for r in RULES)


def copy_space(problem: jagged.JaggedProblem, hw: Hardware) -> Space:
    """jagged <-> padded dense: LOOP_L, BLOCK_L, BLOCK_D"""
    if hw.interpreter:
        doms = (Bool("LOOP_L"), Pow2("BLOCK_L", 4, 16), Pow2("BLOCK_D", 16, 32),
                Const("num_warps", 4), Const("num_stages", 1))
    else:
        doms = (Bool("LOOP_L"), Pow2("BLOCK_L", 1, 128), Pow2("BLOCK_D", 16, 512),
                Pow2("num_warps", 1, 8), Choice("num_stages", (1, 2)))
    return Space(domains=doms, constraints=_rules(problem, hw), notes="see search_spaces/jagged.py")


def softmax_space(problem: jagged.JaggedProblem, hw: Hardware) -> Space:
    """jagged softmax: ONLINE, BLOCK_L, BLOCK_D"""
    width = next_pow2(problem.max_len, 16)
    if hw.interpreter:
        doms = (Bool("ONLINE"), Pow2("BLOCK_L", 4, min(width, 64)), Pow2("BLOCK_D", 16, 32),
                Const("num_warps", 4), Const("num_stages", 1))
    else:
        doms = (Bool("ONLINE"), Pow2("BLOCK_L", 4, min(width, 4096)), Pow2("BLOCK_D", 16, 256),
                Pow2("num_warps", 1, 8), Choice("num_stages", (1, 2)))
    return Space(domains=doms, constraints=_rules(problem, hw), notes="see search_spaces/jagged.py")


def bmm_space(problem: jagged_bmm.JaggedBmmProblem, hw: Hardware) -> Space:
    """jagged x dense bmm: LOOP_L, BLOCK_M/N/K"""
    if hw.interpreter:
        doms = (Bool("LOOP_L"), Pow2("BLOCK_M", 16, 32), Pow2("BLOCK_N", 16, 32), Pow2("BLOCK_K", 16, 32),
                Const("num_warps", 4), Const("num_stages", 1))
    else:
        doms = (Bool("LOOP_L"), Pow2("BLOCK_M", 16, 128), Pow2("BLOCK_N", 32, 256), Pow2("BLOCK_K", 16, 128),
                Pow2("num_warps", 4, 8), IntRange("num_stages", 2, 4))
    return Space(domains=doms, constraints=_rules(problem, hw), notes="see search_spaces/jagged.py")


JAGGED_TO_PADDED = Tunable(kernel=jagged.JAGGED_TO_PADDED, space=copy_space)
PADDED_TO_JAGGED = Tunable(kernel=jagged.PADDED_TO_JAGGED, space=copy_space)
JAGGED_SOFTMAX = Tunable(kernel=jagged_softmax.JAGGED_SOFTMAX, space=softmax_space)
JAGGED_DENSE_BMM = Tunable(kernel=jagged_bmm.JAGGED_DENSE_BMM, space=bmm_space)
