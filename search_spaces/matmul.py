"""What the GEMM sweep tries, per target, and why (the fused-epilogue and fp8 spaces reuse it).

Parameters, by target:
  every target   BLOCK_M/N/K (powers of two), GROUP_M, SPLIT_K with SPLIT_K_REDUCE
                 ("atomic", "two_pass" or "in_kernel"), PERSISTENT, num_warps, num_stages;
                 SPLIT_K every count up to 8 on a GPU (powers of two on the interpreter);
                 PROGRAMS_PER_SM (1 or 2) on NVIDIA GPUs.
                 Not searched: SPLIT_TAIL (SEARCH_SPLIT_TAIL below says why)
  Hopper (sm90)  also TMA (tensor-descriptor loads/stores) and WARP_SPECIALIZE, and the transforms
                 of Triton's persistent-matmul tutorial: EPILOGUE_SUBTILE (the output tile stored
                 as two column halves), FLATTEN (the persistent tile loop flattened with its K
                 loop; not in spaces without the persistent loop) and maxnreg (the compile
                 option capping registers per thread: 0 = the compiler's choice, 128, 168, 232).
                 Each only when the installed Triton has it (kernels/gemm_tiles.py feature-detects
                 them: HAS_TENSOR_DESCRIPTORS, HAS_WARP_SPECIALIZE, HAS_LOOP_FLATTEN, HAS_MAXNREG).
                 Also EXTRA_M and EXTRA_N (0, 0.25, 0.5): tiles widened by a quarter or a half
                 of a block, to sides that are not powers of two (192x128, 128x160, ...), as
                 cuBLAS's are (SEARCH_TILE_PARTS says what they were measured to do).
                 Not searched, like maxnreg: num_ctas (clusters of two CTAs; SEARCH_CLUSTERS).
                 On other targets these keys are absent and the kernel runs with them off.
  odd K          STAGE_A (copy A to 128-byte aligned rows first), on every target, only when A's
                 rows are not 16-byte aligned (K x element size): elsewhere it would be a no-op.
  odd N          STAGE_B (copy B to 128-byte aligned rows first: TMA can read it, pointer loads
                 vectorize), on every target, only when B's rows are not 16-byte aligned (N x
                 element size). EPILOGUE_SUBTILE is pinned off there, which keeps the space's
                 raw size what it was (C was then stored by pointers, where it never applied;
                 C's rows are now padded and TMA-stored: searching it there is not measured).
  AMD (vendor "amd", e.g. mi300x)  also the AMD launch options waves_per_eu,
                 matrix_instr_nonkdim and kpack. AMD IS NOT TESTED HERE: the project has no AMD
                 machine; the ranges follow AMD's Triton tuning guide and are unmeasured.
  interpreter    small tiles, num_warps/num_stages fixed (TRITON_INTERPRET ignores them), so a
                 candidate takes seconds, not minutes; no TMA or warp specialization (the target
                 is not Hopper, though tensor descriptors do run on the interpreter: the tests
                 launch them directly).

Not in the space: the vendor path (IMPL="vendor", torch.mm / torch.addmm, kernels/gemm_vendor.py).
The kernel declares it (KernelSpec.vendor_configs) and every study evaluates it once, first, in the
same harness and outside the sampler (tuner/search/constrained.py `outside`): it is a whole other
implementation, not a value of any switch here, so no proposal is spent on it.

Constraints (search_spaces/gemm_rules.py; the resource models in gemm_resources.py) reject, before any compile:
  * shared memory: pipeline stages of A and B tiles, TMA barriers, the epilogue tile a persistent
    TMA or warp-specialized kernel keeps staged; more than the chip lets one program opt into is
    an OutOfResources at launch (a naive space lost 6 of 16 H100 trials to this).
  * registers: the fp32 accumulator past 192 registers per thread spills (256 did, 192 did not).
  * tiles far larger than the problem: rows and columns that are thrown away.
  * split-K only where it can help (fewer than two waves of tiles, a K block per split), and
    SPLIT_K_REDUCE varied only when there is a split.
  * PERSISTENT only when there are more tiles than programs (SMs, halved for clusters of two,
    doubled for PROGRAMS_PER_SM=2; else nothing to loop over) and no split-K; PROGRAMS_PER_SM=2
    only where two programs' shared memory and registers (the models below) fit one SM, and not
    with warp specialization (its producer warps are not counted); SPLIT_TAIL (in a config that sets it) only with it,
    without warp specialization, and where the last wave leaves enough programs idle to cut each
    of its tiles into two or more K slices of two blocks or more.
  * num_ctas=2 not with warp specialization or EPILOGUE_SUBTILE (fail to compile), split-K or SPLIT_TAIL, and with
    64 rows or more of the tile a CTA; shared memory and registers counted per CTA (half a tile).
  * widened tiles (EXTRA_M / EXTRA_N) only on whole tiles, one per program (the launcher runs them
    in the persistent loop too, which is not searched: slower in 36 of 36 pairs timed; no split-K,
    tail split, warp specialization, subtiled store or clusters), with extra parts of 16 or more
    (extra rows of 64 or more on Hopper: fewer compile to mma.sync), and only along a side the
    problem is longer than its block.
  * Hopper's warpgroup MMA works on 64-row slices: BLOCK_M below 64 (when M allows 64) is not tried.
  * TMA only with 16-byte aligned row strides (odd K or N in 16-bit types cannot use it), unless
    the operand is staged (STAGE_A, STAGE_B); a staged B's misaligned C is stored by pointers.
  * warp specialization only where Triton 3.6-3.9 compiles it for sm90 and does not drop it.
  * EPILOGUE_SUBTILE only on the stores that stage the output tile in shared memory (persistent
    or warp-specialized TMA, SPLIT_K=1); FLATTEN only with PERSISTENT and without warp
    specialization (a flattened loop loses it); maxnreg only below what num_warps gets anyway and
    never below the accumulator's registers + 40 (it would spill).
"""
from __future__ import annotations

from kernelevolve.kernels.gemm_tile_parts import EXTRA_FRACTIONS
from kernelevolve.kernels.gemm_tiles import (HAS_LOOP_FLATTEN, HAS_MAXNREG, HAS_TENSOR_DESCRIPTORS,
                                             HAS_WARP_SPECIALIZE)
from kernelevolve.kernels.matmul import SPEC, SPLIT_K_REDUCES, SWITCH_DEFAULTS, MatmulProblem
from kernelevolve.kernels.spec import element_size
from kernelevolve.search_spaces.gemm_rules import RULES, TMA_ALIGN_BYTES, GemmShape, rules
from kernelevolve.search_spaces.gemm_starts import GENERIC_TILES, generic_starts, gemm_starts  # noqa: F401
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Bool, Choice, Const, IntRange, Pow2, Space


# maxnreg values searched: 0 is the compiler's own choice (a plain int: a config is an MLflow param);
# 168 is what Triton gives a warp-specialized kernel on Hopper, 232 a cap just below the 255 a
# thread may use, 128 the one that lets 4-warp programs of 64-register accumulators pack densest.
MAXNREG_VALUES = (0, 128, 168, 232)
# ... but not searched: its four values made the H100 spaces' valid sets 4x larger (55,040 valid
# configs of 4096^3 against 14,344; 4.8 s to enumerate against 1.0 s on 2 cores), and the set is
# enumerated for every GEMM study at the start of a sweep, in the driver. The template and the
# launcher take it (a plug-in space that searches it can set it); the rules keep it sound.
SEARCH_MAXNREG = False

# Also not searched: SPLIT_TAIL (kernels/gemm_split_tail.py), the last, partial wave of a persistent
# loop cut into K slices. Built for the small K % 16 GEMMs whose best tiles left a last wave
# mostly idle, and measured on them through the engine (1 x H200, triton 3.6;
# benchmarks/data/probe_split_tail.json, docs/benchmarks.md): cut, the persistent loop lost to
# the same tile uncut in 6 of 7 pairs (by 2-39%) and gained 6% in one, and on all four shapes a
# one-tile-per-program kernel beat both (21.3 against 24.8-29.2 us on 5472x416x1488).
# Searched, it made the valid sets 26-32% larger with configs that lose. A plug-in space that
# searches it can still set it; the launcher and the rules take it.
SEARCH_SPLIT_TAIL = False

# PROGRAMS_PER_SM=2: two persistent loops to an SM where both fit, so that one's store overlaps
# the other's K loop (cuBLAS's ping-pong kernels overlap two warpgroups so on Hopper). Measured
# through the engine on five many-tile GEMMs of the generated suite, K 128-768 (1 x H200, triton
# 3.6; benchmarks/data/probe_programs_per_sm.json, docs/benchmarks.md): the same persistent tile
# two to an SM was faster in 25 of 25 pairs, 1.01-1.44x (median 1.20x), and within 1-4% of the
# shape's best kernel on three (3600x2448x256: 14.6 against 14.3 us), the best on none: the
# tiles that fit twice (128x128, 64x256) are smaller than the best ones. Searched: it makes the
# persistent kernels of 128x128 competitive where they were 15-50% behind; 21-32% more valid
# configs on the shapes with enough tiles for it.
SEARCH_PROGRAMS_PER_SM = True

# Nor num_ctas=2 (each program a cluster of two CTAs, Triton splitting its tile between them; the
# launcher and the rules take it, tests/test_gemm_sm90_compile.py compiles it). Measured through
# the engine on the 13 K % 16 GEMMs of the generated suite (1 x H200, triton 3.6;
# benchmarks/data/probe_clusters.json, docs/benchmarks.md): the same tile in clusters was 12-21%
# slower in each of 5 pairs, a tile twice as tall in clusters (the same tile a CTA) from 2% faster
# to 14% slower in 5 more, and no cluster config beat a shape's best unclustered kernel.
# Triton 3.6-3.9 multicasts nothing between the two CTAs (no operand tile is shared), so a cluster
# buys only co-scheduling. Searched, it was 35-45% of the valid configs.
SEARCH_CLUSTERS = False

# EXTRA_M / EXTRA_N: tiles widened by a quarter or a half of a block (kernels/gemm_tile_parts.py).
# Measured through the engine on the 13 K % 16 GEMMs of the generated suite (1 x H200, triton 3.6;
# benchmarks/data/probe_tile_parts.json, probe_host_descriptors.json; docs/benchmarks.md): with
# descriptors built on the device they beat the shape's best power-of-two kernel on 1 of 13; with
# host descriptors on 3 of 13, by 9-27% (5472x416x1488: 15.3 against 21.0 us, cuBLAS 16.4;
# 10304x192x432: 7.1 against 7.9; 2944x768x400: 7.1 against 7.7). 28% of the valid configs.
SEARCH_TILE_PARTS = True


def hopper_switches(hw: Hardware, *, persistent: bool = True, epilogue_subtile: bool = True,
                    clusters: bool = True, tile_parts: bool = True) -> tuple:
    """TMA, warp specialization, clusters, widened tiles and the persistent-matmul tutorial's
    transforms: domains only on Hopper, and only where Triton has them. persistent /
    epilogue_subtile / clusters / tile_parts False leave out FLATTEN / EPILOGUE_SUBTILE / num_ctas /
    EXTRA_M and EXTRA_N (a template without the persistent loop, the halved store, a launcher
    checked in clusters, or widened tiles)."""
    if hw.arch != "sm90":
        return ()
    # num_ctas: every Triton 3.x compiles clusters of two for sm90 (checked with 3.6 and 3.9)
    out = (Choice("num_ctas", (1, 2)),) if clusters and SEARCH_CLUSTERS else ()
    if HAS_TENSOR_DESCRIPTORS:
        out += (Bool("TMA"),)
        if HAS_WARP_SPECIALIZE:
            out += (Bool("WARP_SPECIALIZE"),)
        if epilogue_subtile:  # searched on TMA stores only (gemm_rules: epilogue_subtile)
            out += (Bool("EPILOGUE_SUBTILE"),)
    if persistent and HAS_LOOP_FLATTEN:
        out += (Bool("FLATTEN"),)
    if tile_parts and SEARCH_TILE_PARTS:  # after the switches they exclude: the walk prunes them early
        out += (Choice("EXTRA_M", EXTRA_FRACTIONS), Choice("EXTRA_N", EXTRA_FRACTIONS))
    if HAS_MAXNREG and SEARCH_MAXNREG:
        out += (Choice("maxnreg", MAXNREG_VALUES),)
    return out


# Switches the GEMM spaces gained after H100 recordings (benchmarks/data/recorded/h100), tuned
# tables and experiment files of them were written: a config without them launches with the
# kernel's default, and the tuner reads it so (Space.defaults), so those stay usable as priors,
# warm starts and start points. (A recorded config of an odd-N shape ran with B unstaged.)
LATER_SWITCHES = ("EPILOGUE_SUBTILE", "FLATTEN", "maxnreg", "STAGE_B", "SPLIT_TAIL", "num_ctas", "EXTRA_M",
                  "EXTRA_N", "PROGRAMS_PER_SM")


def later_switch_defaults(domains: tuple) -> dict:
    """Space.defaults for a GEMM-family space: the LATER_SWITCHES it searches, with their defaults."""
    names = {d.name for d in domains}
    return {k: SWITCH_DEFAULTS[k] for k in LATER_SWITCHES if k in names}


def amd_launch_options(hw: Hardware) -> tuple:
    """AMD's launch options (not tested here: no AMD machine). waves_per_eu: occupancy hint, 0 lets
    the compiler choose; matrix_instr_nonkdim: 16x16 or 32x32 MFMA; kpack: K elements per LDS read."""
    if hw.vendor != "amd":
        return ()
    return (Choice("waves_per_eu", (0, 1, 2, 4)), Choice("matrix_instr_nonkdim", (16, 32)),
            Choice("kpack", (1, 2)))


def gemm_domains(hw: Hardware, *, split_k: bool = True, persistent: bool = True,
                 epilogue_subtile: bool = True, clusters: bool = True, tile_parts: bool = True) -> tuple:
    """The GEMM template's parameters on one target. split_k / persistent / epilogue_subtile /
    clusters / tile_parts False leave those switches out (the kernel then runs with its defaults:
    one split, one tile per program, one store per tile, one CTA per program, power-of-two tiles)."""
    # every split count up to 8 on a GPU, not only powers of two: what a split is for is filling the
    # SMs (the split_k rule keeps, between powers of two, only the count that fills one wave: 42
    # tiles in 3 slices are 126 programs of 132 SMs). Timed through the engine (1 x H200, triton
    # 3.6; benchmarks/data/probe_split_fill.json, docs/benchmarks.md): on 128x672x5456, 64x32x128
    # tiles in 3 slices ran 8.2 us against 8.7 for the best power-of-two split (cuBLAS 7.7); on
    # 192x576x3552 and 1152x144x864 the filling counts' larger tiles lost (9.7-15 us against 7.3
    # and 3.8). 8-12% more valid configs on the shapes that can split.
    splits = (Pow2("SPLIT_K", 1, 4) if hw.interpreter else IntRange("SPLIT_K", 1, 8),
              Choice("SPLIT_K_REDUCE", SPLIT_K_REDUCES)) if split_k else ()
    loop = (Bool("PERSISTENT"),) if persistent else ()
    if hw.interpreter:  # (SPLIT_TAIL not searched: the interpreter's 4 programs have no waves to speak of)
        return (Pow2("BLOCK_M", 16, 64), Pow2("BLOCK_N", 16, 64), Pow2("BLOCK_K", 16, 64),
                Choice("GROUP_M", (1, 4, 8)), *splits, *loop,
                Const("num_warps", 4), Const("num_stages", 1))
    loop += (Bool("SPLIT_TAIL"),) if persistent and SEARCH_SPLIT_TAIL else ()
    if hw.vendor == "amd":  # LDS is 64 KiB and the stream pipeliner wants few stages
        return (Pow2("BLOCK_M", 16, 256), Pow2("BLOCK_N", 16, 256), Pow2("BLOCK_K", 16, 128),
                Choice("GROUP_M", (1, 4, 8, 16)), *splits, *loop,
                Pow2("num_warps", 4, 8), IntRange("num_stages", 1, 3), *amd_launch_options(hw))
    # (NVIDIA only: the rules count two programs' registers with NVIDIA's 32 lanes a warp)
    loop += (Choice("PROGRAMS_PER_SM", (1, 2)),) if persistent and SEARCH_PROGRAMS_PER_SM else ()
    # num_stages stops at 5: deeper pipelines (6, 8; cuBLAS ran 128x672x5456 fp16 in 64x64x64 tiles
    # of 13 stages) were slower than 4 stages in each of 9 pairs timed through the engine on the
    # small split-K GEMMs (1 x H200, triton 3.6; benchmarks/data/probe_deep_pipelines.json,
    # docs/benchmarks.md), and with them the valid sets grew by 35-42%
    return (Pow2("BLOCK_M", 16, 256), Pow2("BLOCK_N", 16, 256), Pow2("BLOCK_K", 16, 128),
            Choice("GROUP_M", (1, 4, 8, 16)), *splits, *loop,
            *hopper_switches(hw, persistent=persistent, epilogue_subtile=epilogue_subtile, clusters=clusters,
                             tile_parts=tile_parts),
            Pow2("num_warps", 4, 8), IntRange("num_stages", 2, 5))


def space_notes(hw: Hardware) -> str:
    if hw.interpreter:
        return "interpreter: num_warps/num_stages are ignored by TRITON_INTERPRET and fixed"
    if hw.vendor == "amd":
        return "AMD: NOT tested here (no AMD machine); see search_spaces/matmul.py"
    return "GPU: see search_spaces/matmul.py and gemm_rules.py for why each constraint exists"


def gemm_space(shape: GemmShape, hw: Hardware, *, split_k: bool = True, persistent: bool = True,
               stage_a: bool = False, stage_b: bool = False, epilogue_subtile: bool = True,
               clusters: bool = True, tile_parts: bool = True, host_descriptors: bool = True) -> Space:
    """stage_a / stage_b: the template's launcher takes STAGE_A / STAGE_B (kernels/matmul.py
    launch_gemm); each searched only where that operand's rows are misaligned. epilogue_subtile /
    clusters / tile_parts / host_descriptors: the template has EPILOGUE_SUBTILE / takes num_ctas /
    widens tiles / takes HOST_DESCRIPTORS, whose rules the space lists (bmm's has none of them)."""
    # a rule about a switch the space leaves out is left out with it
    kinds = tuple(k for k in RULES if (split_k or k != "split_k")
                  and (persistent or k not in ("persistent", "flatten", "split_tail", "programs_per_sm"))
                  and (epilogue_subtile or k != "epilogue_subtile") and (clusters or k != "clusters")
                  and (tile_parts or k != "tile_parts") and (host_descriptors or k != "host_descriptors"))
    # True first: a config that does not name STAGE_A (every warm config: they were written for
    # aligned shapes) is tried staged, which is what won on the H100 (1000x1000x383: 9.7 us staged
    # with TMA, 13-16 us unstaged, in CUDA graphs; docs/benchmarks.md)
    staging = (Choice("STAGE_A", (True, False)),) if stage_a and (shape.K * shape.in_bytes) % TMA_ALIGN_BYTES else ()
    if stage_b and (shape.N * shape.in_bytes) % TMA_ALIGN_BYTES:
        staging += (Bool("STAGE_B"),)
    domains = gemm_domains(hw, split_k=split_k, persistent=persistent, epilogue_subtile=epilogue_subtile,
                           clusters=clusters, tile_parts=tile_parts)
    if (shape.N * shape.out_bytes) % TMA_ALIGN_BYTES:
        # EPILOGUE_SUBTILE pinned off (module docstring): as a constant it does not double the raw
        # space STAGE_B doubles
        domains = tuple(Const(d.name, False) if d.name == "EPILOGUE_SUBTILE" else d for d in domains)
    return Space(domains=domains + staging,
                 constraints=rules(shape, hw, kinds), notes=space_notes(hw), canonical=(one_split_reduce,),
                 defaults=later_switch_defaults(domains + staging))


def one_split_reduce(cfg: dict) -> dict:
    """Without a split there is nothing to reduce: SPLIT_K=1 takes SPLIT_K_REDUCE="atomic", the one
    value the split_k rule accepts (Space.canonical)."""
    if cfg.get("SPLIT_K", 1) == 1 and cfg.get("SPLIT_K_REDUCE", "atomic") != "atomic":
        return {**cfg, "SPLIT_K_REDUCE": "atomic"}
    return cfg


def shape_of(problem: MatmulProblem) -> GemmShape:
    e = element_size(problem.dtype)
    return GemmShape(problem.M, problem.N, problem.K, e, e, tf32=problem.dtype == "float32")


def space(problem: MatmulProblem, hw: Hardware) -> Space:
    return gemm_space(shape_of(problem), hw, stage_a=True, stage_b=True)


def start(problem: MatmulProblem, hw: Hardware) -> list[dict]:
    return gemm_starts(space(problem, hw), hw, shape_of(problem), problem.dtype)


TUNABLE = Tunable(kernel=SPEC, space=space, start=start)
