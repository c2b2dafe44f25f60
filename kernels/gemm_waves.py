"""The GEMM family's tile-level cost model: how long an output tiling takes, by waves of programs.
It ranks tile shapes for a problem before anything is timed (search_spaces/matmul.py
fitted_starts gives the search the best-ranked ones to start from).

A program computes one tile (or one K slice of it, split-K); the GPU runs sm_count x
programs_per_sm of them at once. The busiest SM gets ceil(tiles / sm_count) of them; a pair of
programs sharing an SM (when shared memory and registers let two in) splits its MMA rate but
overlaps each one's fixed cost with the other's work. So

    time = ceil(n / c) x (min(c, n) x mma_time + overhead),   n = ceil(programs / sm_count)

with mma_time the tile's 2 x tile_m x tile_n x K flops at the SM's share of the chip's peak (times
MMA_EFFICIENCY), and overhead what a program costs besides: filling its pipeline and storing its
tile (TILE_OVERHEAD_S), less in a persistent loop, where the next tile's loads overlap this one's
store (PERSISTENT_TILE_OVERHEAD_S). A split adds its partial's round trip through memory.

Why a model rather than cuBLAS's own choice: cuBLAS's heuristic is not exposed through torch;
this is the arithmetic behind its non-power-of-two tiles (kernels/gemm_tile_parts.py): fewer,
fuller waves. Its three constants were fitted (least squares on log latency) to the 66 timings of
TMA tiles with host descriptors in benchmarks/data/probe_host_descriptors.json (1 x H200, triton
3.6: 13 shapes, tiles 64x128 to 192x128 and two persistent 128x256): 12% RMS error, and among
each shape's timed tiles the model's pick was within 0.4% of the fastest (geomean; at worst 4.4%).
Held out, on four H100 GEMM spaces recorded before it (benchmarks/data/recorded/h100, 2,000
configs each): it ranks the tilings' best latencies with a Spearman correlation of 0.62-0.92, and
its three best-ranked tilings hold a config within 1% of each space's fastest. On the 23 H200
timings made after the fit (benchmarks/data/probe_persistent_parts.json; its own picks among them,
so chosen where it is optimistic) its error is 26% RMS, 21% optimistic on average: tiles with a
part of 16 or 32 columns (128x80, 64x160, 192x96, 384x96) ran 1.1-1.7x slower than it said.
Charging such parts as 64 columns (refit: the overheads 2.8 and 2.0 us, the efficiency as is)
fits all 89 timings to 13% and ranks the H100 spaces at 0.89-0.97, but moves its picks to tiles never timed (320x64): not adopted before a GPU run
measures them.
On the 2,413 TMA candidates of three whole-suite runs and a 120-candidate run (1 x H200, 24
shapes; benchmarks/wave_model_check.py), its three best-ranked tilings hold one within 4.0% of
each shape's best measured tiling (geomean; 29% at worst, 62087x309x1672). Its four constants
refit on a grid, each shape left out in turn, did no better (4.6%): a refit that counts three
programs an SM finds 3600x2448x256's 2-stage 192x64 tile and loses 46848x1104x225's and
4720x528x1585's. (Those candidates were proposed partly from its own starts, which favours it.)
"""
from __future__ import annotations

import math

MMA_EFFICIENCY = 0.975  # of the SM's share of the chip's dense peak, in the K loop
TILE_OVERHEAD_S = 2.7e-6  # per program of one tile: pipeline fill, epilogue, store
PERSISTENT_TILE_OVERHEAD_S = 1.5e-6  # per tile of a persistent loop: loads overlap the last store
PROGRAMS_PER_SM_MAX = 2  # more than two GEMM programs an SM was not seen to help


def tiling_time_s(M: int, N: int, K: int, tile_m: int, tile_n: int, *, sm_count: int, flops_per_s: float,
                  block_k: int = 64, split_k: int = 1, persistent: bool = False, programs_per_sm: int = 1,
                  partial_bytes_per_s: float = 0.0) -> float:
    """Seconds the model gives one tiling (module docstring). flops_per_s: the chip's dense peak
    for the inputs' dtype; block_k: the K loop's step; partial_bytes_per_s: the chip's memory
    bandwidth, for a split's fp32 partials (0: splits cost nothing extra)."""
    tiles = math.ceil(M / tile_m) * math.ceil(N / tile_n)
    per_sm = math.ceil(tiles * split_k / sm_count)
    c = max(1, min(programs_per_sm, PROGRAMS_PER_SM_MAX))
    k = math.ceil(math.ceil(K / block_k) / split_k) * block_k  # the K loop runs whole blocks
    mma = 2.0 * tile_m * tile_n * k / (flops_per_s / sm_count) / MMA_EFFICIENCY
    overhead = PERSISTENT_TILE_OVERHEAD_S if persistent else TILE_OVERHEAD_S
    if split_k > 1 and partial_bytes_per_s:  # each slice writes its fp32 partial; the last reads them
        overhead += 2 * tile_m * tile_n * 4 / (partial_bytes_per_s / sm_count)
    return math.ceil(per_sm / c) * (min(c, per_sm) * mma + overhead)
