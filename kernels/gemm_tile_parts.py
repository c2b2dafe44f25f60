"""Output tiles of 1.25x or 1.5x a power of two (EXTRA_M, EXTRA_N): the GEMM template's tiles
whose sides are not powers of two, each computed as up to four power-of-two parts.

Why: Triton's blocks are powers of two on every side, and cuBLAS's are not. On an H200 (torch
2.11, cuBLAS's nvjet kernels named by torch.profiler) cuBLAS ran the suite's aligned GEMMs with
tiles of 160x128, 192x96, 192x192, 256x144, 256x160, 64x112, 64x40: sizes that fill the GPU's
132 SMs in fewer, fuller waves. A 5472x416 output in 128x128 tiles is 172 tiles, two waves of
which the second is a third full; in 192x128 tiles it is 116, one wave, and each SM does 25% less.

Measured through the engine (1 x H200, triton 3.6; benchmarks/data/probe_tile_parts.json and
probe_host_descriptors.json, docs/benchmarks.md): on the 13 K % 16 GEMMs of the generated suite,
with descriptors built by every program on the device (up to eight here, one per part's block
shape) the widened tiles beat the shape's best power-of-two kernel on 1 of 13; with descriptors
made on the host (HOST_DESCRIPTORS, now the launcher's default) on 3 of 13, by 9-27%
(5472x416x1488: 15.3 against 21.0 us, cuBLAS 16.4). The Hopper spaces search them
(search_spaces/matmul.py SEARCH_TILE_PARTS).

How: a tile of (BLOCK_M + EXTRA_M) x (BLOCK_N + EXTRA_N) keeps one accumulator per part (main,
extra rows, extra columns, the corner) and one K loop that loads each operand part once and feeds
it to every dot that uses it: the extra rows' A part meets the same B tile as the main rows. Every
part is a power of two, so each is an ordinary tl.dot, TMA block and store. EXTRA_M is BLOCK_M/2
or BLOCK_M/4 (so 192, 160, 96, 80 rows), EXTRA_N likewise, either or both (on Hopper the rules
keep extra rows to 64 or more: a part of 32 rows compiles to mma.sync, not the warpgroup MMA).

One tile per program, or (PERSISTENT) one program per SM looping over the tiles, its tile loop
flattened with the K loop or not (FLATTEN), as the template's power-of-two tiles. The persistent
loop was built for the many-wave GEMMs where cuBLAS ran 256x160, 192x192 and 256x144 tiles and
the template's best was a persistent 128x256 or 128x128 kernel; timed beside those (1 x H200,
benchmarks/data/probe_persistent_parts.json) it was slower in 36 of 36 pairs, so the search does
not propose it (search_spaces/gemm_rules.py SEARCH_PERSISTENT_PARTS); the launcher takes it.

What it leaves out (the launcher refuses these, the rules never propose them): split-K, the tail
split, warp specialization, the subtiled store and clusters. Each is a reduction, a partition or
a store written for one accumulator.
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernelevolve.kernels.gemm_tiles import (apply_epilogue, b_descriptor, host_descriptor, persistent_programs,
                                             tile_coords)

EXTRA_FRACTIONS = (0, 0.25, 0.5)  # the extra rows (columns) of a tile, as a share of BLOCK_M (BLOCK_N)


def extra_size(block: int, fraction) -> int:
    """The rows (columns) a tile adds past its power-of-two block: block x fraction; 0 for none."""
    if fraction not in EXTRA_FRACTIONS:
        raise ValueError(f"EXTRA_M / EXTRA_N must be one of {EXTRA_FRACTIONS} (a share of the block), "
                         f"got {fraction!r}")
    return int(block * fraction)


def has_extra(config) -> bool:
    return bool(config.get("EXTRA_M", 0) or config.get("EXTRA_N", 0))


def excludes_extra(config) -> bool:
    """Whether the config sets a switch a widened tile is not written for (module docstring): the
    launcher refuses these, the rules never propose them."""
    return bool(config.get("SPLIT_K", 1) > 1 or config.get("SPLIT_TAIL", False)
                or config.get("WARP_SPECIALIZE", False) or config.get("EPILOGUE_SUBTILE", False)
                or config.get("num_ctas", 1) > 1)


def tile_size(config) -> tuple[int, int]:
    """(rows, columns) of one output tile: BLOCK_M x BLOCK_N, widened by EXTRA_M / EXTRA_N."""
    bm, bn = config["BLOCK_M"], config["BLOCK_N"]
    return bm + extra_size(bm, config.get("EXTRA_M", 0)), bn + extra_size(bn, config.get("EXTRA_N", 0))


@triton.jit
def _load_a(a_ptr, a_desc, off_m, kb, M, K, stride_am, stride_ak,
            ROWS: tl.constexpr, BLOCK_K: tl.constexpr, TMA: tl.constexpr, EVEN_K: tl.constexpr):
    """A[off_m : off_m + ROWS, K block kb]: by its descriptor, or by pointers whose rows wrap at M
    (as gemm_tiles.accumulate_pointers: unmasked loads, the store masks)."""
    if TMA:
        a = a_desc.load([off_m, kb * BLOCK_K])
    else:
        rows = (off_m + tl.arange(0, ROWS)) % M
        k = kb * BLOCK_K + tl.arange(0, BLOCK_K)
        ptrs = a_ptr + rows[:, None] * stride_am + k[None, :] * stride_ak
        if EVEN_K:
            a = tl.load(ptrs)
        else:
            a = tl.load(ptrs, mask=k[None, :] < K, other=0.0)
    return a


@triton.jit
def _load_b(b_ptr, b_desc, off_n, kb, b_cols, K, stride_bk, stride_bn,
            COLS: tl.constexpr, BLOCK_K: tl.constexpr, TMA: tl.constexpr, EVEN_K: tl.constexpr,
            B_KMAJOR: tl.constexpr):
    """B[K block kb, off_n : off_n + COLS], columns wrapping at b_cols (a staged B's pitch, else N)."""
    if TMA:
        if B_KMAJOR:
            b = b_desc.load([off_n, kb * BLOCK_K]).T
        else:
            b = b_desc.load([kb * BLOCK_K, off_n])
    else:
        cols = (off_n + tl.arange(0, COLS)) % b_cols
        k = kb * BLOCK_K + tl.arange(0, BLOCK_K)
        ptrs = b_ptr + k[:, None] * stride_bk + cols[None, :] * stride_bn
        if EVEN_K:
            b = tl.load(ptrs)
        else:
            b = tl.load(ptrs, mask=k[:, None] < K, other=0.0)
    return b


@triton.jit
def _store_part(acc, c_ptr, c_desc, off_m, off_n, M, N, stride_cm, stride_cn, bias_ptr, residual_ptr,
                stride_rm, stride_rn, scale_a_ptr, scale_b_ptr,
                ROWS: tl.constexpr, COLS: tl.constexpr, TMA_STORE: tl.constexpr, HAS_SCALE: tl.constexpr,
                HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, HAS_RESIDUAL: tl.constexpr):
    """One part of the tile through the epilogue into C (by its descriptor, which clips at the
    edge, or by masked pointer stores)."""
    offs_m = off_m + tl.arange(0, ROWS)
    offs_n = off_n + tl.arange(0, COLS)
    acc = apply_epilogue(acc, offs_m, offs_n, M, N, bias_ptr, residual_ptr, stride_rm, stride_rn,
                         scale_a_ptr, scale_b_ptr, HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL)
    if TMA_STORE:
        c_desc.store([off_m, off_n], acc.to(c_desc.dtype))
    else:
        mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        tl.store(c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn,
                 acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _parted_tile(tile_id, store_tile_id, a_ptr, b_ptr, c_ptr, a_desc, a2_desc, b_desc, b2_desc,
                 c_desc, c_desc_m, c_desc_n, c_desc_mn, bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr,
                 M, N, K, b_cols, stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                 stride_rm, stride_rn,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 EXTRA_M: tl.constexpr, EXTRA_N: tl.constexpr, GROUP_M: tl.constexpr,
                 TMA: tl.constexpr, TMA_STORE: tl.constexpr, EVEN_K: tl.constexpr, B_KMAJOR: tl.constexpr,
                 HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
                 HAS_RESIDUAL: tl.constexpr, FLATTEN: tl.constexpr):
    """One widened tile: its parts' K loop, then their stores. store_tile_id is the same tile,
    counted apart in a flattened loop (as kernels/matmul.py's _gemm_tile says why)."""
    TILE_M: tl.constexpr = BLOCK_M + EXTRA_M
    TILE_N: tl.constexpr = BLOCK_N + EXTRA_N
    pid_m, pid_n = tile_coords(tile_id, M, N, TILE_M, TILE_N, GROUP_M)
    off_m = pid_m * TILE_M
    off_n = pid_n * TILE_N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if EXTRA_M > 0:
        acc_m = tl.zeros((EXTRA_M, BLOCK_N), dtype=tl.float32)
    if EXTRA_N > 0:
        acc_n = tl.zeros((BLOCK_M, EXTRA_N), dtype=tl.float32)
        if EXTRA_M > 0:
            acc_mn = tl.zeros((EXTRA_M, EXTRA_N), dtype=tl.float32)
    for kb in tl.range(0, tl.cdiv(K, BLOCK_K)):
        a = _load_a(a_ptr, a_desc, off_m, kb, M, K, stride_am, stride_ak, BLOCK_M, BLOCK_K, TMA, EVEN_K)
        b = _load_b(b_ptr, b_desc, off_n, kb, b_cols, K, stride_bk, stride_bn, BLOCK_N, BLOCK_K, TMA,
                    EVEN_K, B_KMAJOR)
        acc = tl.dot(a, b, acc)
        if EXTRA_M > 0:  # the extra rows meet the same B tile
            a2 = _load_a(a_ptr, a2_desc, off_m + BLOCK_M, kb, M, K, stride_am, stride_ak, EXTRA_M, BLOCK_K,
                         TMA, EVEN_K)
            acc_m = tl.dot(a2, b, acc_m)
        if EXTRA_N > 0:  # the extra columns meet the same A tiles
            b2 = _load_b(b_ptr, b2_desc, off_n + BLOCK_N, kb, b_cols, K, stride_bk, stride_bn, EXTRA_N,
                         BLOCK_K, TMA, EVEN_K, B_KMAJOR)
            acc_n = tl.dot(a, b2, acc_n)
            if EXTRA_M > 0:
                acc_mn = tl.dot(a2, b2, acc_mn)
    if FLATTEN:
        pid_m, pid_n = tile_coords(store_tile_id, M, N, TILE_M, TILE_N, GROUP_M)
        off_m = pid_m * TILE_M
        off_n = pid_n * TILE_N
    _store_part(acc, c_ptr, c_desc, off_m, off_n, M, N, stride_cm, stride_cn, bias_ptr, residual_ptr,
                stride_rm, stride_rn, scale_a_ptr, scale_b_ptr, BLOCK_M, BLOCK_N, TMA_STORE, HAS_SCALE,
                HAS_BIAS, ACTIVATION, HAS_RESIDUAL)
    if EXTRA_M > 0:
        _store_part(acc_m, c_ptr, c_desc_m, off_m + BLOCK_M, off_n, M, N, stride_cm, stride_cn, bias_ptr,
                    residual_ptr, stride_rm, stride_rn, scale_a_ptr, scale_b_ptr, EXTRA_M, BLOCK_N, TMA_STORE,
                    HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL)
    if EXTRA_N > 0:
        _store_part(acc_n, c_ptr, c_desc_n, off_m, off_n + BLOCK_N, M, N, stride_cm, stride_cn, bias_ptr,
                    residual_ptr, stride_rm, stride_rn, scale_a_ptr, scale_b_ptr, BLOCK_M, EXTRA_N, TMA_STORE,
                    HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL)
        if EXTRA_M > 0:
            _store_part(acc_mn, c_ptr, c_desc_mn, off_m + BLOCK_M, off_n + BLOCK_N, M, N, stride_cm, stride_cn,
                        bias_ptr, residual_ptr, stride_rm, stride_rn, scale_a_ptr, scale_b_ptr, EXTRA_M,
                        EXTRA_N, TMA_STORE, HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL)


@triton.jit
def parted_kernel(a_ptr, b_ptr, c_ptr, bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr, M, N, K, b_cols,
                  stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_rm, stride_rn,
                  a_hd, a2_hd, b_hd, b2_hd, c_hd, cm_hd, cn_hd, cmn_hd,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  EXTRA_M: tl.constexpr, EXTRA_N: tl.constexpr, GROUP_M: tl.constexpr,
                  TMA: tl.constexpr, TMA_STORE: tl.constexpr, EVEN_K: tl.constexpr, B_KMAJOR: tl.constexpr,
                  HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
                  HAS_RESIDUAL: tl.constexpr, HOST_DESCRIPTORS: tl.constexpr, PERSISTENT: tl.constexpr,
                  FLATTEN: tl.constexpr):
    """(BLOCK_M + EXTRA_M) x (BLOCK_N + EXTRA_N) tiles in up to four parts (module docstring): one
    per program, or with PERSISTENT one program per SM looping over them (FLATTEN: the tile loop
    flattened with the K loop, so the next tile's loads overlap this one's stores). An EXTRA_* of 0
    leaves its parts out at compile time."""
    tl.static_assert(not FLATTEN or PERSISTENT, "FLATTEN flattens the persistent tile loop")
    a_desc = None
    a2_desc = None
    b_desc = None
    b2_desc = None
    if TMA and HOST_DESCRIPTORS:  # made on the host (launch_parted), passed as launch parameters
        a_desc = a_hd
        a2_desc = a2_hd
        b_desc = b_hd
        b2_desc = b2_hd
    elif TMA:  # built on the device, one per part's block shape (scratch from tma_allocator)
        a_desc = tl.make_tensor_descriptor(a_ptr, shape=[M, K], strides=[stride_am, 1],
                                           block_shape=[BLOCK_M, BLOCK_K])
        b_desc = b_descriptor(b_ptr, K, N, stride_bk, stride_bn, BLOCK_N, BLOCK_K, B_KMAJOR)
        if EXTRA_M > 0:
            a2_desc = tl.make_tensor_descriptor(a_ptr, shape=[M, K], strides=[stride_am, 1],
                                                block_shape=[EXTRA_M, BLOCK_K])
        if EXTRA_N > 0:
            b2_desc = b_descriptor(b_ptr, K, N, stride_bk, stride_bn, EXTRA_N, BLOCK_K, B_KMAJOR)
    # one C descriptor per part's block shape (None where C is stored by pointers)
    c_desc = None
    c_desc_m = None
    c_desc_n = None
    c_desc_mn = None
    if TMA_STORE and HOST_DESCRIPTORS:
        c_desc = c_hd
        c_desc_m = cm_hd
        c_desc_n = cn_hd
        c_desc_mn = cmn_hd
    elif TMA_STORE:
        c_desc = tl.make_tensor_descriptor(c_ptr, shape=[M, N], strides=[stride_cm, 1],
                                           block_shape=[BLOCK_M, BLOCK_N])
        if EXTRA_M > 0:
            c_desc_m = tl.make_tensor_descriptor(c_ptr, shape=[M, N], strides=[stride_cm, 1],
                                                 block_shape=[EXTRA_M, BLOCK_N])
        if EXTRA_N > 0:
            c_desc_n = tl.make_tensor_descriptor(c_ptr, shape=[M, N], strides=[stride_cm, 1],
                                                 block_shape=[BLOCK_M, EXTRA_N])
            if EXTRA_M > 0:
                c_desc_mn = tl.make_tensor_descriptor(c_ptr, shape=[M, N], strides=[stride_cm, 1],
                                                      block_shape=[EXTRA_M, EXTRA_N])
    if PERSISTENT:
        num_tiles = tl.cdiv(M, BLOCK_M + EXTRA_M) * tl.cdiv(N, BLOCK_N + EXTRA_N)
        if FLATTEN:  # the store's tile counter, one step behind until the loop adds it
            store_tile_id = tl.program_id(0) - tl.num_programs(0)
            for tile_id in tl.range(tl.program_id(0), num_tiles, tl.num_programs(0), flatten=True):
                store_tile_id += tl.num_programs(0)
                _parted_tile(tile_id, store_tile_id, a_ptr, b_ptr, c_ptr, a_desc, a2_desc, b_desc, b2_desc,
                             c_desc, c_desc_m, c_desc_n, c_desc_mn, bias_ptr, residual_ptr, scale_a_ptr,
                             scale_b_ptr, M, N, K, b_cols, stride_am, stride_ak, stride_bk, stride_bn,
                             stride_cm, stride_cn, stride_rm, stride_rn, BLOCK_M, BLOCK_N, BLOCK_K,
                             EXTRA_M, EXTRA_N, GROUP_M, TMA, TMA_STORE, EVEN_K, B_KMAJOR, HAS_SCALE,
                             HAS_BIAS, ACTIVATION, HAS_RESIDUAL, FLATTEN)
        else:
            for tile_id in range(tl.program_id(0), num_tiles, tl.num_programs(0)):
                _parted_tile(tile_id, tile_id, a_ptr, b_ptr, c_ptr, a_desc, a2_desc, b_desc, b2_desc,
                             c_desc, c_desc_m, c_desc_n, c_desc_mn, bias_ptr, residual_ptr, scale_a_ptr,
                             scale_b_ptr, M, N, K, b_cols, stride_am, stride_ak, stride_bk, stride_bn,
                             stride_cm, stride_cn, stride_rm, stride_rn, BLOCK_M, BLOCK_N, BLOCK_K,
                             EXTRA_M, EXTRA_N, GROUP_M, TMA, TMA_STORE, EVEN_K, B_KMAJOR, HAS_SCALE,
                             HAS_BIAS, ACTIVATION, HAS_RESIDUAL, FLATTEN)
    else:
        _parted_tile(tl.program_id(0), tl.program_id(0), a_ptr, b_ptr, c_ptr, a_desc, a2_desc, b_desc, b2_desc,
                     c_desc, c_desc_m, c_desc_n, c_desc_mn, bias_ptr, residual_ptr, scale_a_ptr,
                     scale_b_ptr, M, N, K, b_cols, stride_am, stride_ak, stride_bk, stride_bn,
                     stride_cm, stride_cn, stride_rm, stride_rn, BLOCK_M, BLOCK_N, BLOCK_K,
                     EXTRA_M, EXTRA_N, GROUP_M, TMA, TMA_STORE, EVEN_K, B_KMAJOR, HAS_SCALE,
                     HAS_BIAS, ACTIVATION, HAS_RESIDUAL, FLATTEN)


def launch_parted(a, b, out, cfg: dict, b_cols: int, b_kmajor: bool, tma_store: bool, even_k: bool,
                  epilogue, launch_options: dict, host_descriptors: bool = False):
    """out = epilogue(a @ b) with one widened tile per program; a and b already staged and checked
    by the template's launcher (kernels/matmul.py launch_gemm), which calls this."""
    M, K = a.shape
    N = b.shape[1]
    tile_m, tile_n = tile_size(cfg)
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    em, en = extra_size(bm, cfg.get("EXTRA_M", 0)), extra_size(bn, cfg.get("EXTRA_N", 0))
    descs = [None] * 8  # a, a2, b, b2, c, c's extra rows, extra columns, corner
    if host_descriptors:
        descs[0] = host_descriptor(a, [bm, bk])
        descs[2] = host_descriptor(b, [bk, bn], kmajor=b_kmajor)
        if em:
            descs[1] = host_descriptor(a, [em, bk])
        if en:
            descs[3] = host_descriptor(b, [bk, en], kmajor=b_kmajor)
        if tma_store:
            descs[4] = host_descriptor(out, [bm, bn])
            descs[5] = host_descriptor(out, [em, bn]) if em else None
            descs[6] = host_descriptor(out, [bm, en]) if en else None
            descs[7] = host_descriptor(out, [em, en]) if em and en else None
    res = epilogue.residual
    rstrides = (res.stride(0), res.stride(1)) if res is not None else (0, 0)
    tiles = triton.cdiv(M, tile_m) * triton.cdiv(N, tile_n)
    persistent = bool(cfg.get("PERSISTENT", False))
    grid = (persistent_programs(tiles, a.device, cfg) if persistent else tiles,)
    return parted_kernel[grid](
        a, b, out, epilogue.bias, res, epilogue.scale_a, epilogue.scale_b, M, N, K, b_cols,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1), *rstrides, *descs,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, EXTRA_M=em, EXTRA_N=en, GROUP_M=cfg["GROUP_M"],
        TMA=bool(cfg["TMA"]), TMA_STORE=tma_store, EVEN_K=even_k, B_KMAJOR=b_kmajor,
        HAS_SCALE=epilogue.scale_a is not None, HAS_BIAS=epilogue.bias is not None,
        ACTIVATION=epilogue.activation, HAS_RESIDUAL=res is not None, HOST_DESCRIPTORS=host_descriptors,
        PERSISTENT=persistent, FLATTEN=bool(cfg.get("FLATTEN", False)), **launch_options)
