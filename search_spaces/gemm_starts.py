"""Where a GEMM search starts (Tunable.start of the GEMM family's spaces): the template's
shape-generic tiles, and tiles fitted to the problem by the wave model.

The sweep evaluates a study's starts first (unless the experiment file says
`search.kernel_starts: false`); a sampler that starts from a few strong points spends its budget
near them. Both kinds are configs of the study's own space, checked against its rules; nothing
here names a shape.
"""
from __future__ import annotations

import itertools
import math

from kernelevolve.kernels.gemm_tile_parts import EXTRA_FRACTIONS, tile_size
from kernelevolve.kernels.gemm_waves import tiling_time_s
from kernelevolve.search_spaces.gemm_resources import programs_by_regs, programs_by_smem, shared_memory_bytes
from kernelevolve.search_spaces.gemm_rules import GemmShape
from kernelevolve.tuner.experiment.hardware import Hardware, ceiling_for
from kernelevolve.tuner.search.space import Space

# Shape-generic tiles, as Triton's tutorial list and Inductor's mm configs are, here the ones that
# won most often on the H100. Why: measured there (docs/benchmarks.md, "B's misaligned rows,
# staged"), a 42-candidate TPE search of a 35k-config space never reached the TMA configs with
# both operands staged that ran 1.3-1.9x faster than what it found. Nothing here names a shape:
# TMA tiles stage whichever operands the space stages (TMA needs them aligned), pointer tiles
# stage B only (a staged A slowed pointer kernels on the H100: its copy is the larger); a tile the
# space's rules reject for a shape is left out.
GENERIC_TILES = (
    # Triton's persistent-matmul tutorial's Hopper kernel: persistent TMA tiles, the epilogue stored
    # in halves, the tile loop flattened; and its warp-specialized one. Large outputs need them:
    # through the engine on an H100 (benchmarks/data/hopper_tiles_plan.json, docs/benchmarks.md) the
    # first ran 62112x3312x768 in 0.49 ms and 20640x2448x128 in 47 us, where the non-persistent
    # 128x256x64 below took 0.65 ms and 96 us and a 42-candidate search had found 0.57 ms and 60 us.
    {"TMA": True, "PERSISTENT": True, "EPILOGUE_SUBTILE": True, "FLATTEN": True, "BLOCK_M": 128, "BLOCK_N": 256,
     "BLOCK_K": 64, "GROUP_M": 8, "num_stages": 3, "num_warps": 8},
    {"TMA": True, "PERSISTENT": True, "WARP_SPECIALIZE": True, "BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64,
     "GROUP_M": 8, "num_stages": 4, "num_warps": 4},
    {"TMA": True, "BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "GROUP_M": 8, "num_stages": 3, "num_warps": 8},
    {"TMA": True, "BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_stages": 4, "num_warps": 8},
    {"TMA": True, "BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_stages": 4, "num_warps": 4},
    # a 192 x 128 tile (kernels/gemm_tile_parts.py), cuBLAS's kind of size: of the widened tiles
    # timed on the 13 K % 16 GEMMs (host descriptors), within 10% of the best widened one on each of
    # the 4 shapes where a widened tile won or came within 10% of the shape's best
    {"TMA": True, "EXTRA_M": 0.5, "BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_stages": 4,
     "num_warps": 4},
    {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_stages": 3, "num_warps": 8},
    {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_stages": 4, "num_warps": 4},
    # split along K, where the rules let a split help (fewer than two waves of tiles: long K),
    # reduced in the kernel by each tile's last split: of the three reduces the fastest at 5 of
    # the 6 (shape, split) pairs tried on 128x672x5456 and 192x576x3552 fp16, 1% behind two-pass
    # at the sixth (4 x H200, benchmarks/probe_configs.py, docs/benchmarks.md): one launch where
    # two-pass takes two and atomic three
    {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 128, "GROUP_M": 8, "num_stages": 3, "num_warps": 4, "SPLIT_K": 4,
     "SPLIT_K_REDUCE": "in_kernel"},
)
NEUTRAL = {"SPLIT_K": 1, "SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "TMA": False, "WARP_SPECIALIZE": False,
           "EPILOGUE_SUBTILE": False, "FLATTEN": False, "maxnreg": 0, "STAGE_A": False, "STAGE_B": False,
           "SPLIT_TAIL": False, "num_ctas": 1, "EXTRA_M": 0, "EXTRA_N": 0, "PROGRAMS_PER_SM": 1}


def as_config(space: Space, tile: dict) -> dict | None:
    """A start's keys as a config of `space`: every parameter set (the tile's, else NEUTRAL's,
    else the domain's first value), or None where the space cannot express it (a switch this
    target lacks, a value outside a domain) or its rules reject it."""
    names = {d.name for d in space.domains}
    if any(k not in names and v != NEUTRAL.get(k) for k, v in tile.items()):
        return None  # a switch this target's space lacks (TMA off Hopper)
    cfg = {}
    for d in space.domains:
        if d.name in ("STAGE_A", "STAGE_B"):
            value = d.name == "STAGE_B" or tile.get("TMA", False)  # TMA reads staged operands only
        else:
            value = tile.get(d.name, NEUTRAL.get(d.name, d.values()[0]))
        if value not in d.values():
            return None  # a tile this target's space cannot express
        cfg[d.name] = value
    return None if space.violations(cfg) else cfg


def generic_starts(space: Space, hw: Hardware) -> list[dict]:
    """GENERIC_TILES as configs of `space`, the ones its rules accept, in order. None on the
    interpreter: its timings say nothing of a GPU's tiles."""
    if hw.interpreter:
        return []
    out = []
    for tile in GENERIC_TILES:
        cfg = as_config(space, tile)
        if cfg is not None and cfg not in out:
            out.append(cfg)
    return out


# Tiles fitted to the problem: the wave model (kernels/gemm_waves.py) ranks every tile shape the
# space can express (power-of-two blocks, widened by EXTRA_M / EXTRA_N, split along K) by its
# waves on this GPU, and the FITTED_STARTS best-ranked shapes are started from. Why: the generic
# tiles are the same for every shape, and a 40-candidate TPE search of a 30k-config space rarely
# lands on the one tiling that fills the SMs in one wave: on the 13 K % 16 GEMMs of the generated
# suite (1 x H200) its best Triton kernel stayed 10% behind cuBLAS on 5472x416x1488, 10304x192x432
# and 2944x768x400, where cuBLAS ran 160x128, 64x256 and 192x96 tiles.
FITTED_STARTS = 3
# a persistent loop only for tilings of this many waves or more: on the few-wave K % 16 GEMMs a
# one-tile-per-program kernel beat every persistent one timed (search_spaces/matmul.py
# SEARCH_SPLIT_TAIL), on the many-wave ones a persistent kernel was the best found
PERSISTENT_MIN_WAVES = 4
FITTED_BLOCKS_M = (64, 128, 256)
FITTED_BLOCKS_N = (64, 128, 256)
# the model's constants were fitted on tiles of 64 to 256 a side, 8K to 32K elements; cuBLAS's
# largest on the suite was 256 x 160: no fitted start is larger, nor has a side under 64 (the
# warpgroup MMA's rows; narrower columns were never timed against the model)
FITTED_MIN_SIDE = 64
FITTED_MAX_ELEMENTS = 256 * 160
FITTED_BLOCK_K = 64
FITTED_STAGES = (4, 3)  # the deepest pipeline the rules let the tile have (short K loops: short_loop_depth)
FOUR_WARPS_MAX_REGS = 160  # a wider accumulator takes 8 warps (192x128 in 4 is a generic tile)


def launched_per_sm(shape: GemmShape, tile_m: int, tile_n: int, split: int, hw: Hardware) -> int:
    """The programs a launch of this tiling and split gives its busiest SM: ceil(programs /
    sm_count), also its waves at one program an SM."""
    return math.ceil(math.ceil(shape.M / tile_m) * math.ceil(shape.N / tile_n) * split / hw.sm_count)


def programs_per_sm(cfg: dict, shape: GemmShape, hw: Hardware) -> int:
    """How many of this config's programs one SM holds at once, by shared memory and registers
    (a persistent loop's: no more than it launches to an SM, PROGRAMS_PER_SM)."""
    smem = shared_memory_bytes(cfg, shape.in_bytes, shape.out_bytes, shape.residual)
    by_smem = programs_by_smem(smem, hw.smem_per_block) if hw.smem_per_block else 1
    by_regs = programs_by_regs(cfg, hw.regs_per_sm) if hw.regs_per_sm else 1
    fit = max(1, min(by_smem, by_regs))
    return min(fit, cfg.get("PROGRAMS_PER_SM", 1)) if cfg.get("PERSISTENT", False) else fit


def _fitted_config(space: Space, shape: GemmShape, tile: dict, split: int, persistent: bool) -> dict | None:
    """The tile as a config of `space`: by TMA where the space has it (Hopper: a large tile by
    pointers is no start worth a candidate), else by pointers; 4 warps for an accumulator of
    FOUR_WARPS_MAX_REGS or fewer, else 8; the deepest pipeline the rules allow it (shared memory)."""
    tm, tn = tile_size(tile)
    tma = any(d.name == "TMA" for d in space.domains)
    for stages in FITTED_STAGES:
        cfg = as_config(space, {**tile, "BLOCK_K": min(FITTED_BLOCK_K, max(16, 1 << (shape.K - 1).bit_length())),
                                "GROUP_M": 8, "SPLIT_K": split, "SPLIT_K_REDUCE": "in_kernel" if split > 1 else "atomic",
                                "PERSISTENT": persistent, "FLATTEN": persistent and tma, "TMA": tma,
                                "num_warps": 4 if tm * tn / 128 <= FOUR_WARPS_MAX_REGS else 8,
                                "num_stages": stages})
        if cfg is not None:
            return cfg
    return None


def _mma_peak(hw: Hardware, dtype: str) -> float | None:
    """The dense MMA peak the wave model divides by: the profile's bf16 ceiling for 16-bit inputs
    (measured on the H100 and H200, and the one the model's constants were fitted with; fp16 runs
    at the same rate on Hopper, and the H100 profile's fp16 figure is the datasheet's), its fp32
    (tf32) ceiling for fp32, else half the bf16 one."""
    bf16 = ceiling_for(hw, "bfloat16_flops")
    if dtype == "float32":
        tf32 = ceiling_for(hw, "float32_flops")
        return tf32.value if tf32 else (bf16.value / 2 if bf16 else None)
    return bf16.value if bf16 else None


def modelled_time_s(cfg: dict, shape: GemmShape, hw: Hardware, dtype: str) -> float | None:
    """The wave model's seconds for one config of a GEMM space on `hw` (its tiling, split,
    persistent loop and the programs an SM holds of it); None without a FLOP ceiling."""
    peak = _mma_peak(hw, dtype)
    if not peak or not hw.sm_count:
        return None
    tm, tn = tile_size(cfg)
    copy = ceiling_for(hw, "copy_bytes")
    return tiling_time_s(shape.M, shape.N, shape.K, tm, tn, sm_count=hw.sm_count, flops_per_s=peak,
                         block_k=cfg["BLOCK_K"], split_k=cfg.get("SPLIT_K", 1),
                         persistent=bool(cfg.get("PERSISTENT", False)),
                         programs_per_sm=programs_per_sm(cfg, shape, hw),
                         partial_bytes_per_s=copy.value if copy else 0.0)


def fitted_starts(space: Space, hw: Hardware, shape: GemmShape, dtype: str) -> list[dict]:
    """The FITTED_STARTS tilings the wave model ranks fastest for this problem on `hw`, each as a
    config `space` accepts (one per tile shape and split). Hopper only: the model's constants were
    fitted there (kernels/gemm_waves.py), and another chip's would be a guess."""
    if hw.arch != "sm90" or not hw.sm_count or not _mma_peak(hw, dtype):
        return []
    domains = {d.name: d.values() for d in space.domains}
    extras = EXTRA_FRACTIONS if "EXTRA_M" in domains else (0,)
    splits = list(domains.get("SPLIT_K", (1,)))
    ranked = []
    for bm, em, bn, en, split in itertools.product(FITTED_BLOCKS_M, extras, FITTED_BLOCKS_N, extras, splits):
        tile = {"BLOCK_M": bm, "EXTRA_M": em, "BLOCK_N": bn, "EXTRA_N": en}
        tm, tn = tile_size(tile)
        if min(tm, tn) < FITTED_MIN_SIDE or tm * tn > FITTED_MAX_ELEMENTS:
            continue
        waves = launched_per_sm(shape, tm, tn, split, hw)
        persistent = split == 1 and "PERSISTENT" in domains and waves >= PERSISTENT_MIN_WAVES
        cfg = _fitted_config(space, shape, tile, split, persistent)
        if cfg is None:
            continue
        ranked.append((modelled_time_s(cfg, shape, hw, dtype), (tm, tn, split), cfg))
    out, seen = [], set()
    for _, key, cfg in sorted(ranked, key=lambda r: r[0]):
        if key not in seen:
            seen.add(key)
            out.append(cfg)
        if len(out) == FITTED_STARTS:
            break
    return out


# A start's pipeline depth on a short K loop. Why: a stage is a shared-memory buffer of an A and a
# B tile; where a program's K loop has few steps, the loads its stages would run ahead are few and
# its pipeline's fill is paid whatever its depth, while each buffer costs programs an SM, whose
# fills and stores overlap one another's MMAs, where the launch has programs enough to fill them.
# Timed through the engine (1 x H200, docs/benchmarks.md "Shallow pipelines on short K",
# docs/results/gemm_short_k_depths_1xh200/): on six short-K GEMMs of 1,000-1,500 tiles, five
# outside the generated suite, the 18 of 24 (tile, shape) pairs this moves ran 1.06-1.58x faster
# than at 4 stages in 17 (4% slower in one); on loops of 2 and 8 steps, 1.03-1.76x in 4 of 4 (on
# one, 3 stages 13% faster still); the 14 suite starts it moves (3600x2448x256, 2944x768x400,
# 10304x192x432, 16624x4048x144) 1.06-1.41x in 14 of 14. Where the launch has too few programs to
# fill more an SM the depth buys nothing: a whole-suite run whose rule did not count the launch
# had its searches' best kernels 4-16% slower than in the five runs before on 160x1872x144,
# 2944x768x400, 10304x192x432 and 224x3376x368 (90-243 tiles of their fitted starts on 132 SMs),
# the 4-stage tiles beating the 2-stage ones; counted, those tiles keep 4. The suite's recorded
# sweeps, split the same way (benchmarks/pipeline_depth_check.py): on loops of 8 steps or fewer a
# shallower depth running more programs an SM was faster in 23 of 23 pairs, and 2 stages running
# no more than 3 or 4 did in 0 of 11; in loops of 9 steps or more 4 stages beat 3 (53 of 77
# pairs, 8%): there a start keeps its depth.
SHORT_LOOP_MAX_STEPS = 8
SHORT_LOOP_DEPTHS = (3, 2)  # the deepest first: a shallower one only for more programs an SM


def k_loop_steps(cfg: dict, K: int) -> int:
    """The steps of one program's K loop: ceil(ceil(K / BLOCK_K) / SPLIT_K)."""
    return -(-(-(-K // cfg["BLOCK_K"])) // cfg.get("SPLIT_K", 1))


def programs_running(cfg: dict, shape: GemmShape, hw: Hardware) -> int:
    """How many of this config's programs an SM runs at once: as many as it holds
    (programs_per_sm), or as the launch gives it, whichever is fewer."""
    return min(programs_per_sm(cfg, shape, hw), launched_per_sm(shape, *tile_size(cfg), cfg.get("SPLIT_K", 1), hw))


def short_loop_depth(space: Space, hw: Hardware, shape: GemmShape, cfg: dict) -> dict:
    """`cfg` at the depth its K loop calls for: where the loop has SHORT_LOOP_MAX_STEPS steps or
    fewer, the deepest of SHORT_LOOP_DEPTHS shallower than its own that runs more programs an SM
    at once (programs_running), if one does; else `cfg`. Persistent loops keep theirs: a flattened
    one pipelines across its tiles, and none was timed at these depths."""
    if (cfg.get("PERSISTENT", False) or not hw.sm_count
            or k_loop_steps(cfg, shape.K) > SHORT_LOOP_MAX_STEPS):
        return cfg
    best, running = cfg, programs_running(cfg, shape, hw)
    for depth in SHORT_LOOP_DEPTHS:
        shallower = {**cfg, "num_stages": depth}
        if depth >= cfg["num_stages"] or space.violations(shallower):
            continue
        more = programs_running(shallower, shape, hw)
        if more > running:
            best, running = shallower, more
    return best


def gemm_starts(space: Space, hw: Hardware, shape: GemmShape, dtype: str) -> list[dict]:
    """A GEMM study's starts: the fitted ones first (a search of fewer samples than starts keeps
    the ones chosen for its shape), then the generic tiles they do not already hold; each at the
    depth its K loop calls for (short_loop_depth)."""
    out = []
    for cfg in fitted_starts(space, hw, shape, dtype) + generic_starts(space, hw):
        cfg = short_loop_depth(space, hw, shape, cfg)
        if cfg not in out:
            out.append(cfg)
    return out
