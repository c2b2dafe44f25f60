"""SPLIT_TAIL: a persistent GEMM's last, partial wave of tiles split along K across the programs
that would otherwise sit idle through it (the data-parallel + split-K hybrid of stream-K).

Why: a GEMM of T output tiles on P programs (one per SM) runs ceil(T / P) waves, the last of
T % P tiles; through it P - T % P SMs idle. On two of the ranking suite's small GEMMs the best
Triton kernel lost to cuBLAS about what that tail leaves idle (4 x H200, docs/benchmarks.md):
5472x416x1488 fp16 at 128x128 tiles is 172 tiles on 132 SMs, two waves the second 30% full (172
of 264 tile slots busy: 65%), and ran at 0.684x cuBLAS; 2944x768x400 fp16 at 64x128 is 276
tiles, three waves the last 9% full (70%), 0.754x. Here the first T - T % P tiles run whole, as in any persistent kernel,
and each of the last T % P tiles is cut into interleaved K slices, one per idle program,
so the tail wave takes about a slice's share of a tile's time instead of a whole one.

The slices of a tile meet as split-K's in-kernel reduce does (kernels/matmul.py, SPLIT_K_REDUCE
"in_kernel"), through the same code (gemm_tiles.meet_partials): each stores its fp32 partial in
its own slot of a workspace, counts its arrival on the tile's counter (gemm_tiles.arrival_counters,
left at zero for the next launch), and the last to arrive sums the slots in slice order, applies
the epilogue and stores C by pointers. The workspace holds only the tail's slices, at most one tile
per program. Stream-K proper (every program an equal share of all the K iterations, tiles cut at
arbitrary points) balances better still but makes every tile a possible meeting point; the tail
is where the idle SMs are.

Timed on an H200 (docs/benchmarks.md, "The tail wave cut, and clusters of two CTAs, timed"), it
did not help: the persistent loop itself lost to one tile a program on those shapes, cut or not.
So no built-in space searches it (search_spaces/matmul.py SEARCH_SPLIT_TAIL).

Not with WARP_SPECIALIZE: Triton's warp-specialized code dropped the reset of split-K's arrival
counters (kernels/matmul.py refuses in_kernel with it), and the slices count on the same ones.
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernelevolve.kernels.gemm_tiles import accumulate_descriptors, accumulate_pointers, meet_partials, tile_coords

# A slice gets at least this many K blocks: a slice of one block has nothing to pipeline, and its
# partial's store and reload would cost more than the block's MMAs.
MIN_K_BLOCKS_PER_SLICE = 2


def tail_plan(tiles: int, programs: int, k_blocks: int) -> tuple[int, int]:
    """(tail tiles, slices per tail tile) of a persistent launch of `programs` programs over
    `tiles` tiles of `k_blocks` K blocks each; (0, 1) where nothing splits: no partial last
    wave, or too few idle programs or K blocks for two slices a tile."""
    tail = tiles % programs if tiles > programs else 0
    if not tail:
        return 0, 1
    slices = min(programs // tail, k_blocks // MIN_K_BLOCKS_PER_SLICE)
    return (tail, slices) if slices >= 2 else (0, 1)


@triton.jit
def tail_slice(unit, first_tail_tile, a_ptr, b_ptr, c_ptr, a_desc, b_desc, ws_ptr, arrivals_ptr,
               bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr, M, N, K, b_cols,
               stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_rm, stride_rn,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
               TMA: tl.constexpr, EVEN_K: tl.constexpr,
               B_KMAJOR: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
               ACTIVATION: tl.constexpr, HAS_RESIDUAL: tl.constexpr, SLICES: tl.constexpr):
    """Work unit `unit` of the tail: K slice unit % SLICES of tail tile unit // SLICES. Its partial
    goes to workspace slot `unit`; the tile's last slice to arrive stores C (module docstring)."""
    tail_index = unit // SLICES
    tile_id = first_tail_tile + tail_index
    pid_m, pid_n = tile_coords(tile_id, M, N, BLOCK_M, BLOCK_N, GROUP_M)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if TMA:
        acc = accumulate_descriptors(acc, a_desc, b_desc, pid_m, pid_n, K, unit % SLICES, SLICES,
                                     BLOCK_M, BLOCK_N, BLOCK_K, B_KMAJOR, False)
    else:
        acc = accumulate_pointers(acc, a_ptr, b_ptr, pid_m, pid_n, M, b_cols, K, stride_am, stride_ak,
                                  stride_bk, stride_bn, unit % SLICES, SLICES, BLOCK_M, BLOCK_N, BLOCK_K,
                                  EVEN_K)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    # the tile's slots: SLICES whole tiles, one after another, from the tile's first
    in_tile = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    meet_partials(acc, ws_ptr + tail_index * SLICES * (BLOCK_M * BLOCK_N) + in_tile, unit % SLICES,
                  BLOCK_M * BLOCK_N, arrivals_ptr, tile_id, c_ptr, offs_m, offs_n, M, N, stride_cm, stride_cn,
                  bias_ptr, residual_ptr, stride_rm, stride_rn, scale_a_ptr, scale_b_ptr, SLICES,
                  HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL)
