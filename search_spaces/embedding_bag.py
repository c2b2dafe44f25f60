"""What the EmbeddingBag sweeps (forward, backward) try, per target, and why.

Both are gathers bound by memory latency: the levers are how many row loads are in flight
(IDS_PER_STEP x BLOCK_D per program, times the programs in flight) and how much work a program
gets. The constraints reject, before any compile:
  * BLOCK_D above the padded embedding dim (lanes that only compute masked columns), and
    IDS_PER_STEP above the padded longest bag (2 x avg_bag_len): steps that gather nothing.
  * registers: the gathered [IDS_PER_STEP, BLOCK_D] tile past 128 fp32 values per thread spills.
  * idle threads: a tile smaller than the program's threads (32 x num_warps).
  * too few programs to fill the GPU (fewer than two per multiprocessor, or than the work allows).
The forward also chooses whether to prefetch the next step's ids while the rows are in flight.
Tried on the H100 and left out (docs/results/eb_probe_d_fastest.json, 118 configs): ordering the
grid so that a bag's column blocks are neighbouring programs (both halves of a 512-byte row fetched
together): the best such config was 1.6% slower than the best plain one (71.6 vs 70.5 us).
The backward adds the choice of scatter: atomics (into an fp32 workspace for 16-bit tables) or a
sort and segment sums (no atomics, each table row written once).
"""
from __future__ import annotations


from kernelevolve.kernels import embedding_bag as eb
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Bool, Choice, Const, Pow2, Space, bind_rule, next_pow2

REGS_PER_THREAD_MAX = 128


def tile_fits_problem(cfg, problem, hw):
    """BLOCK_D <= padded dim, IDS_PER_STEP <= padded longest bag"""
    if cfg["BLOCK_D"] > next_pow2(problem.dim, 16):
        return f"BLOCK_D={cfg['BLOCK_D']} > padded dim {next_pow2(problem.dim, 16)}"
    if cfg["IDS_PER_STEP"] > next_pow2(2 * problem.avg_bag_len):
        return f"IDS_PER_STEP={cfg['IDS_PER_STEP']} > padded longest bag {next_pow2(2 * problem.avg_bag_len)}"
    return None


def registers(cfg, problem, hw):
    """the gathered tile <= 128 fp32 registers per thread, and no idle threads"""
    if hw.interpreter:
        return None
    tile = cfg["IDS_PER_STEP"] * cfg["BLOCK_D"]
    threads = 32 * cfg["num_warps"]
    if tile / threads > REGS_PER_THREAD_MAX:
        return f"tile needs {tile / threads:.0f} registers/thread > {REGS_PER_THREAD_MAX}"
    if tile < threads:
        return f"tile of {tile} values leaves some of {threads} threads idle"
    return None


def enough_programs(cfg, problem, hw):
    """at least two programs per multiprocessor (or as many as the work allows)"""
    per = cfg.get("BAGS_PER_PROGRAM", cfg.get("ITEMS_PER_PROGRAM"))
    # bags, or (sorted backward) ids, about avg_bag_len per bag
    items = problem.num_bags * (problem.avg_bag_len if cfg.get("SORTED") else 1)
    d_blocks = -(-problem.dim // cfg["BLOCK_D"])
    programs = -(-items // per) * d_blocks
    want = min(items * d_blocks, 2 * (hw.sm_count or 1))
    return f"{programs} programs < {want}" if per > 1 and programs < want else None


RULES = (tile_fits_problem, registers, enough_programs)


def _space(problem: eb.EmbeddingBagProblem, hw: Hardware, backward: bool) -> Space:
    rules = tuple(bind_rule(r, problem, hw) for r in RULES)
    per = "ITEMS_PER_PROGRAM" if backward else "BAGS_PER_PROGRAM"
    head = (Bool("SORTED"),) if backward else ()
    prefetch = () if backward else (Bool("PREFETCH"), Choice("ROW_LOAD", tuple(eb.ROW_LOADS)))
    if hw.interpreter:
        return Space(
            domains=head + (Pow2("BLOCK_D", 16, 32), Pow2(per, 1, 4), Pow2("IDS_PER_STEP", 1, 8),
                            Const("num_warps", 4), Const("num_stages", 1)) + prefetch,
            constraints=rules, notes="interpreter: num_warps/num_stages fixed, tiles small")
    return Space(
        domains=head + (Pow2("BLOCK_D", 16, 512), Pow2(per, 1, 16), Pow2("IDS_PER_STEP", 1, 64),
                        Pow2("num_warps", 1, 8), Choice("num_stages", (1, 2, 3))) + prefetch,
        constraints=rules, notes="GPU: see search_spaces/embedding_bag.py for the constraints")


def forward_space(problem, hw):
    return _space(problem, hw, backward=False)


def backward_space(problem, hw):
    return _space(problem, hw, backward=True)


EMBEDDING_BAG_FWD = Tunable(kernel=eb.EMBEDDING_BAG_FWD, space=forward_space)
EMBEDDING_BAG_BWD = Tunable(kernel=eb.EMBEDDING_BAG_BWD, space=backward_space)
