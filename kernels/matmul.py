"""GEMM: C[M, N] = A[M, K] @ B[K, N], one Triton template with its transforms as switches.

Switches the search space flips (config keys; those not in a config take the default in
SWITCH_DEFAULTS, so configs written before a switch existed still launch):
  BLOCK_M/N/K     the output tile and the K step each program works on
  GROUP_M         tiles are swizzled in groups of GROUP_M tile-rows so that neighbours in launch
                  order share A and B tiles in L2 (GROUP_M=1 is plain row-major order)
  SPLIT_K         the K loop is split across SPLIT_K programs per tile (helps when the output has
                  too few tiles to fill the GPU and K is long); the partial sums meet either
  SPLIT_K_REDUCE  "atomic": by fp32 atomic adds into one zeroed [M, N] workspace, or
                  "two_pass": each split stores its own slab of a [SPLIT_K, M, N] workspace and a
                  second kernel sums the slabs (no zero-fill, no atomics, deterministic), or
                  "in_kernel": the slabs as two_pass's, and the last split of a tile to arrive
                  (a per-tile arrival counter, reset by that split for the next launch) sums them
                  in order, applies the epilogue and stores C: one launch instead of two or three,
                  for the small GEMMs split-K is for, where a launch is a fair share of the time
  PERSISTENT      launch one program per SM, each looping over tiles (vs one tile per program):
                  launch cost paid once per SM
  PROGRAMS_PER_SM 1 or 2, PERSISTENT=True only: the persistent loop launches that many programs per
                  SM, so that where two fit in its shared memory and registers one's epilogue
                  (its store) overlaps the other's K loop, as cuBLAS's ping-pong kernels overlap
                  two warpgroups' (gemm_tiles.persistent_programs)
  SPLIT_TAIL      PERSISTENT=True only, not with WARP_SPECIALIZE: the loop's last, partial wave
                  of tiles is cut into K slices, one per program that would idle through it,
                  met in the kernel as in_kernel's splits meet (kernels/gemm_split_tail.py)
  TMA             tensor-descriptor loads and stores (TMA on Hopper) instead of pointer loads
  WARP_SPECIALIZE producer/consumer warps in the K loop (Hopper, with TMA; Triton feature-detected)
  EPILOGUE_SUBTILE the output tile is stored as two column halves (Triton's persistent-matmul
                  tutorial): the staged copy of a TMA store (or the layout change before a
                  pointer store) holds half the tile, shared memory the pipeline can use, and the
                  first half's store overlaps the second's conversion. SPLIT_K=1 only (split-K
                  partials go to the workspace; the finish kernel stores C)
  FLATTEN         the persistent tile loop is flattened with its K loop into one loop
                  (tl.range(..., flatten=True); Triton feature-detected), so Triton's software
                  pipeline runs across tile boundaries: the next tile's loads are issued while
                  this tile's last MMAs and its store run. PERSISTENT=True only
  maxnreg         NVIDIA compile option: the most registers a thread may use (ptx .maxnreg);
                  0, like a config without it, leaves it to the compiler (Triton feature-detected)
  num_ctas        Triton launch option (Hopper): each program runs as a cluster of that many CTAs
                  (2 at most here), Triton splitting its tile between them along its longer side;
                  a persistent loop then launches one program per two SMs. SPLIT_K=1 only, no
                  SPLIT_TAIL (a split's counters count programs, and both CTAs would arrive), no
                  WARP_SPECIALIZE (fails to compile)
  STAGE_A         copy A first into a buffer whose rows start 128-byte aligned (gemm_tiles.aligned_rows),
                  for an A whose row stride is not a multiple of 16 bytes (odd K in fp16/bf16): its
                  loads then vectorize and pipeline asynchronously, and TMA can read it. The copy's
                  time is part of the candidate's measured latency. A no-op for an aligned A.
  STAGE_B         the same for B: copied first into a buffer whose rows start 128-byte aligned, for a B
                  whose rows are not 16-byte aligned (N, or K for a transposed view, odd in fp16/bf16).
                  The copy keeps B's layout (a K-major B stays K-major). TMA then reads B through
                  its descriptor; the pointer loads of a staged row-major B wrap their columns at
                  the buffer's pitch instead of at N (b_cols), so they stay contiguous and vectorize.
                  C keeps N: where its rows are misaligned it is stored by pointers (TMA_STORE).
                  The copy is part of the measured latency, as STAGE_A's. A no-op for an aligned B.
  EXTRA_M/N       0, 0.25 or 0.5: the tile is widened by that share of BLOCK_M (BLOCK_N), to sizes
                  that are not powers of two (192 x 128, 128 x 160, ...), as cuBLAS's tiles are;
                  computed in power-of-two parts by kernels/gemm_tile_parts.py, one tile per
                  program or in its persistent loop (PERSISTENT, FLATTEN): not with SPLIT_K,
                  SPLIT_TAIL, WARP_SPECIALIZE, EPILOGUE_SUBTILE or num_ctas (the launcher refuses them)
  HOST_DESCRIPTORS "auto" (the default), True or False: TMA's tensor descriptors made on the host
                  and passed as launch parameters (gemm_tiles.host_descriptor), or built by every
                  program on the device. "auto" makes them on the host wherever that compiles
                  (TMA, no WARP_SPECIALIZE, num_ctas=1): timed tile for tile through the engine
                  (1 x H200, triton 3.6; benchmarks/data/probe_host_descriptors.json,
                  docs/benchmarks.md) it was faster in 27 of 28 pairs, 1.07-2.16x (median 1.45x)
                  with one tile per program, 1.02-1.07x persistent, and 1.3% slower in one. Not a
                  search-space parameter: a choice that loses nearly everywhere costs trials
  num_warps / num_stages   Triton launch options; on AMD also waves_per_eu,
                  matrix_instr_nonkdim, kpack
  IMPL            not a switch of the template and never searched: "vendor" runs cuBLAS/cuBLASLt
                  through torch instead (kernels/gemm_vendor.py; with PAD_BYTES on zero-padded
                  copies of misaligned operands), the candidates every GEMM study also times; a
                  config without IMPL is a Triton config
Not searched, set by the launcher from the shapes:
  EVEN_K          K is a multiple of BLOCK_K: the K masks of the pointer loads are dropped
  B_KMAJOR        B is a transposed view (K contiguous): descriptors read it as [N, K]
  b_cols          (an argument, not a constexpr) the columns B's pointer loads may read and wrap at:
                  N, or a staged row-major B's pitch (stage_b)
  TMA_STORE       TMA=True and C's rows are 16-byte aligned (SPLIT_K=1): C is stored through its
                  descriptor; otherwise (odd N with a staged B) by pointers, the loads still by TMA
The same template carries the fused epilogue (kernels/gemm_epilogue.py) and fp8 per-tensor scales
(kernels/gemm_fp8.py) as constexprs, applied to the fp32 accumulator before the store (before
the split into halves with EPILOGUE_SUBTILE).

The file also holds the launcher, the input checks of the public entry point, the float64
reference, the cuBLAS peer (torch.matmul) and the cost model, so tests and benchmarks import
one source of truth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels import tuned
from kernelevolve.kernels.gemm_split_tail import tail_plan, tail_slice
from kernelevolve.kernels.gemm_tile_parts import excludes_extra, has_extra, launch_parted
from kernelevolve.kernels.gemm_vendor import is_vendor, launch_vendor, vendor_configs
from kernelevolve.kernels.gemm_tiles import (HAS_LOOP_FLATTEN, accumulate_descriptors, accumulate_pointers,
                                aligned_rows, b_descriptor, apply_epilogue, arrival_counters, host_descriptor,
                                host_descriptors_compile, launch_options,
                                meet_partials,
                                output_for,
                                persistent_programs, store_halves, tile_coords, tma_allocator, tma_compatible,
                                tma_storable)
from kernelevolve.kernels.spec import DTYPES, KernelSpec, element_size


class MatmulProblem(BaseModel):
    """One GEMM problem as an experiment file names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    M: PositiveInt
    N: PositiveInt
    K: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@triton.jit
def _gemm_tile(tile_id, store_tile_id, pid_k, a_ptr, b_ptr, c_ptr, a_desc, b_desc, c_desc,
               bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr, ws_ptr, arrivals_ptr, M, N, K, b_cols,
               stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
               stride_rm, stride_rn, stride_ws,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
               GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr, TWO_PASS: tl.constexpr, IN_KERNEL: tl.constexpr,
               TMA: tl.constexpr, TMA_STORE: tl.constexpr, WARP_SPECIALIZE: tl.constexpr,
               EVEN_K: tl.constexpr, B_KMAJOR: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
               ACTIVATION: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
               EPILOGUE_SUBTILE: tl.constexpr, FLATTEN: tl.constexpr):
    """One output tile (or its pid_k-th K slice): accumulate, then store or hand on the sum.
    store_tile_id is the same tile, counted apart from tile_id in a flattened loop (FLATTEN)."""
    pid_m, pid_n = tile_coords(tile_id, M, N, BLOCK_M, BLOCK_N, GROUP_M)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if TMA:
        acc = accumulate_descriptors(acc, a_desc, b_desc, pid_m, pid_n, K, pid_k, SPLIT_K,
                                     BLOCK_M, BLOCK_N, BLOCK_K, B_KMAJOR, WARP_SPECIALIZE)
    else:
        # B's columns wrap at b_cols, not N: a staged B's pitch is a multiple of 16, so the
        # wrapped offsets stay provably contiguous (an odd N would make every load scalar)
        acc = accumulate_pointers(acc, a_ptr, b_ptr, pid_m, pid_n, M, b_cols, K, stride_am, stride_ak,
                                  stride_bk, stride_bn, pid_k, SPLIT_K, BLOCK_M, BLOCK_N, BLOCK_K,
                                  EVEN_K)
    if FLATTEN:
        # As in Triton's persistent-matmul tutorial: the flattened loop is software-pipelined
        # across tiles, so the store's coordinates come from their own counter rather than from
        # values the next tile's loads (issued earlier, in another pipeline stage) also use.
        pid_m, pid_n = tile_coords(store_tile_id, M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if SPLIT_K == 1:
        # the epilogue (scales, bias, activation, residual) runs on the whole fp32 tile before
        # any store, subtiled or not
        acc = apply_epilogue(acc, offs_m, offs_n, M, N, bias_ptr, residual_ptr, stride_rm, stride_rn,
                             scale_a_ptr, scale_b_ptr, HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL)
        if EPILOGUE_SUBTILE:
            store_halves(acc, c_ptr, c_desc, pid_m * BLOCK_M, pid_n * BLOCK_N, M, N, stride_cm,
                         stride_cn, BLOCK_M, BLOCK_N, TMA_STORE)
        elif TMA_STORE:  # the descriptor store clips the tile at the matrix edge: no mask needed
            c_desc.store([pid_m * BLOCK_M, pid_n * BLOCK_N], acc.to(c_desc.dtype))
        else:
            c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
            tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=c_mask)
    elif IN_KERNEL:  # c_ptr is C; this split's partial goes to its slab of the workspace
        meet_partials(acc, ws_ptr + offs_m[:, None] * N + offs_n[None, :], pid_k, stride_ws, arrivals_ptr,
                      tile_id, c_ptr, offs_m, offs_n, M, N, stride_cm, stride_cn, bias_ptr, residual_ptr,
                      stride_rm, stride_rn, scale_a_ptr, scale_b_ptr, SPLIT_K, HAS_SCALE, HAS_BIAS,
                      ACTIVATION, HAS_RESIDUAL)
    else:  # c_ptr is the fp32 workspace; splitk_finish_kernel applies the epilogue
        ws_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
        if TWO_PASS:
            tl.store(ws_ptrs + pid_k * stride_ws, acc, mask=c_mask)
        else:
            tl.atomic_add(ws_ptrs, acc, mask=c_mask)


@triton.jit
def matmul_kernel(
    a_ptr, b_ptr, c_ptr, bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr, ws_ptr, arrivals_ptr,
    M, N, K, b_cols,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_rm, stride_rn,
    stride_ws, tail_tiles, a_host_desc, b_host_desc, c_host_desc,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr, TWO_PASS: tl.constexpr, IN_KERNEL: tl.constexpr,
    PERSISTENT: tl.constexpr, TMA: tl.constexpr, TMA_STORE: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr, EVEN_K: tl.constexpr, B_KMAJOR: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr, EPILOGUE_SUBTILE: tl.constexpr, FLATTEN: tl.constexpr,
    SPLIT_TAIL: tl.constexpr, TAIL_SLICES: tl.constexpr, HOST_DESCRIPTORS: tl.constexpr,
):
    tl.static_assert(not (PERSISTENT and SPLIT_K > 1), "persistent tiles are never split along K")
    tl.static_assert(not SPLIT_TAIL or (PERSISTENT and not WARP_SPECIALIZE),
                     "SPLIT_TAIL splits a persistent loop's last wave, without warp specialization")
    tl.static_assert(not (EPILOGUE_SUBTILE and SPLIT_K > 1), "split-K partials are not subtiled")
    tl.static_assert(not FLATTEN or PERSISTENT, "FLATTEN flattens the persistent tile loop")
    tl.static_assert(not TMA_STORE or (TMA and SPLIT_K == 1), "C is stored by TMA only with TMA loads, unsplit")
    a_desc = None
    b_desc = None
    c_desc = None
    if TMA and HOST_DESCRIPTORS:  # made on the host, passed as launch parameters
        a_desc = a_host_desc
        b_desc = b_host_desc
    elif TMA:  # descriptors are built on the device, once per program (scratch from tma_allocator)
        a_desc = tl.make_tensor_descriptor(a_ptr, shape=[M, K], strides=[stride_am, 1],
                                           block_shape=[BLOCK_M, BLOCK_K])
        b_desc = b_descriptor(b_ptr, K, N, stride_bk, stride_bn, BLOCK_N, BLOCK_K, B_KMAJOR)
    if TMA_STORE and HOST_DESCRIPTORS:
        c_desc = c_host_desc
    elif TMA_STORE:  # EPILOGUE_SUBTILE stores half a tile at a time
        c_desc = tl.make_tensor_descriptor(c_ptr, shape=[M, N], strides=[stride_cm, 1],
                                           block_shape=[BLOCK_M, BLOCK_N // (1 + EPILOGUE_SUBTILE)])
    if PERSISTENT:
        # with SPLIT_TAIL the last tail_tiles tiles are cut into K slices after the loop
        # (kernels/gemm_split_tail.py); the launcher passes 0 otherwise
        num_tiles = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N) - tail_tiles
        if FLATTEN:  # the store's tile counter (see _gemm_tile), one step behind until the loop adds it
            store_tile_id = tl.program_id(0) - tl.num_programs(0)
            # tl.range's flatten exists only where HAS_LOOP_FLATTEN: a constexpr-false branch is
            # never compiled, so a Triton without it still compiles FLATTEN=False
            for tile_id in tl.range(tl.program_id(0), num_tiles, tl.num_programs(0), flatten=True):
                store_tile_id += tl.num_programs(0)
                _gemm_tile(tile_id, store_tile_id, 0, a_ptr, b_ptr, c_ptr, a_desc, b_desc, c_desc,
                           bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr, ws_ptr, arrivals_ptr,
                           M, N, K, b_cols,
                           stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                           stride_rm, stride_rn, stride_ws, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M,
                           SPLIT_K, TWO_PASS, IN_KERNEL, TMA, TMA_STORE, WARP_SPECIALIZE, EVEN_K, B_KMAJOR,
                           HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL, EPILOGUE_SUBTILE, FLATTEN)
        else:
            for tile_id in range(tl.program_id(0), num_tiles, tl.num_programs(0)):
                _gemm_tile(tile_id, tile_id, 0, a_ptr, b_ptr, c_ptr, a_desc, b_desc, c_desc,
                           bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr, ws_ptr, arrivals_ptr,
                           M, N, K, b_cols,
                           stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                           stride_rm, stride_rn, stride_ws, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M,
                           SPLIT_K, TWO_PASS, IN_KERNEL, TMA, TMA_STORE, WARP_SPECIALIZE, EVEN_K, B_KMAJOR,
                           HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL, EPILOGUE_SUBTILE, FLATTEN)
        if SPLIT_TAIL:
            for unit in range(tl.program_id(0), tail_tiles * TAIL_SLICES, tl.num_programs(0)):
                tail_slice(unit, num_tiles, a_ptr, b_ptr, c_ptr, a_desc, b_desc, ws_ptr,
                           arrivals_ptr, bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr, M, N, K, b_cols,
                           stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                           stride_rm, stride_rn, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, TMA, EVEN_K,
                           B_KMAJOR, HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL, TAIL_SLICES)
    else:  # one tile per program; program_id(1) is the K slice when SPLIT_K > 1
        _gemm_tile(tl.program_id(0), tl.program_id(0), tl.program_id(1), a_ptr, b_ptr, c_ptr,
                   a_desc, b_desc, c_desc, bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr, ws_ptr,
                   arrivals_ptr, M, N, K,
                   b_cols, stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                   stride_rm, stride_rn, stride_ws, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, SPLIT_K,
                   TWO_PASS, IN_KERNEL, TMA, TMA_STORE, WARP_SPECIALIZE, EVEN_K, B_KMAJOR, HAS_SCALE, HAS_BIAS,
                   ACTIVATION, HAS_RESIDUAL, EPILOGUE_SUBTILE, FLATTEN)


@triton.jit
def splitk_finish_kernel(ws_ptr, c_ptr, bias_ptr, residual_ptr, scale_a_ptr, scale_b_ptr, M, N,
                         stride_ws, stride_cm, stride_cn, stride_rm, stride_rn,
                         SLABS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                         ACTIVATION: tl.constexpr, HAS_RESIDUAL: tl.constexpr):
    """Split-K's second step: sum the SLABS fp32 partial slabs of the workspace (1 after atomic
    adds), apply the epilogue and write C in its dtype."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    ws_ptrs = ws_ptr + offs_m[:, None] * N + offs_n[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for s in tl.static_range(SLABS):
        acc += tl.load(ws_ptrs + s * stride_ws, mask=mask, other=0.0)
    acc = apply_epilogue(acc, offs_m, offs_n, M, N, bias_ptr, residual_ptr, stride_rm, stride_rn,
                         scale_a_ptr, scale_b_ptr, HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask)


# The switches added after the first template, and their values when a config does not name
# them: what every config launched before they existed meant.
SWITCH_DEFAULTS = {"SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "TMA": False,
                   "WARP_SPECIALIZE": False, "STAGE_A": False, "STAGE_B": False, "EPILOGUE_SUBTILE": False,
                   "FLATTEN": False, "maxnreg": 0, "SPLIT_TAIL": False, "num_ctas": 1,
                   "EXTRA_M": 0, "EXTRA_N": 0, "HOST_DESCRIPTORS": "auto", "PROGRAMS_PER_SM": 1}
SPLIT_K_REDUCES = ("atomic", "two_pass", "in_kernel")

# The config the public entry point uses when it is given none: a middle-of-the-road tile that
# compiles on every NVIDIA GPU Triton supports and on the interpreter.
DEFAULT_CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8, "SPLIT_K": 1,
                  "num_warps": 4, "num_stages": 3, **SWITCH_DEFAULTS}

FINISH_BLOCK = 64  # splitk_finish_kernel's tile: a memory-bound pass, any middling tile does


@dataclass(frozen=True)
class Epilogue:
    """What the template applies to the fp32 accumulator before the store (kernels/gemm_epilogue.py
    and kernels/gemm_fp8.py fill it; a plain GEMM has none)."""

    bias: torch.Tensor | None = None  # [N]
    activation: str = "none"  # one of gemm_tiles.ACTIVATIONS
    residual: torch.Tensor | None = None  # [M, N]
    scale_a: torch.Tensor | None = None  # per-tensor scales (1 element each, fp32)
    scale_b: torch.Tensor | None = None


NO_EPILOGUE = Epilogue()


def even_k(K: int, config) -> bool:
    """Whether every K block is full, so the pointer loads need no K mask."""
    return K % config["BLOCK_K"] == 0


def stage_b(b: torch.Tensor) -> tuple[torch.Tensor, int]:
    """STAGE_B: (B with 16-byte aligned rows, the columns its pointer loads may read). A K-major B
    (a transposed view) is staged as its [N, K] rows, so it stays K-major; any other B as [K, N]
    rows, and then the loads may read up to the pitch: aligned_rows allocated whole rows, and a
    column past N only feeds an output column the store masks. B itself where it is aligned."""
    N = b.shape[1]
    if b.stride(0) == 1 and b.stride(1) != 1:
        return aligned_rows(b.t()).t(), N
    staged = aligned_rows(b)
    return staged, (N if staged is b else staged.stride(0))


def launch_gemm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, config,
                epilogue: Epilogue = NO_EPILOGUE) -> object:
    """out = epilogue(a @ b) for one config. a: [M, K]; b: [K, N], possibly a transposed view of
    an [N, K] tensor. Returns the main kernel's compiled handle (registers, spills, shared), None
    for the vendor path (IMPL="vendor": torch, no Triton kernel)."""
    if is_vendor(config):
        launch_vendor(a, b, out, epilogue, config)
        return None
    cfg = {**SWITCH_DEFAULTS, **config}
    M, K = a.shape
    N = b.shape[1]
    split_k, two_pass = int(cfg["SPLIT_K"]), cfg["SPLIT_K_REDUCE"] == "two_pass"
    in_kernel = split_k > 1 and cfg["SPLIT_K_REDUCE"] == "in_kernel"
    if cfg["SPLIT_K_REDUCE"] not in SPLIT_K_REDUCES:
        raise ValueError(f"SPLIT_K_REDUCE must be one of {SPLIT_K_REDUCES}, got {cfg['SPLIT_K_REDUCE']!r}")
    if cfg["PERSISTENT"] and split_k > 1:
        raise ValueError("PERSISTENT=True runs whole tiles: it takes SPLIT_K=1")
    if cfg["WARP_SPECIALIZE"] and not cfg["TMA"]:
        raise ValueError("WARP_SPECIALIZE=True needs TMA=True (the producer warp issues TMA copies)")
    if cfg["WARP_SPECIALIZE"] and in_kernel:
        raise ValueError("WARP_SPECIALIZE=True with SPLIT_K_REDUCE='in_kernel': Triton's warp-specialized "
                         "code drops the reset of the tiles' arrival counters; use 'two_pass'")
    if cfg["EPILOGUE_SUBTILE"] and split_k > 1:
        raise ValueError("EPILOGUE_SUBTILE=True splits the store of C: it takes SPLIT_K=1 "
                         "(with a split, the finish kernel stores C)")
    if cfg["FLATTEN"] and not cfg["PERSISTENT"]:
        raise ValueError("FLATTEN=True flattens the persistent tile loop: it needs PERSISTENT=True")
    if cfg["FLATTEN"] and not HAS_LOOP_FLATTEN:
        raise ValueError(f"FLATTEN=True needs tl.range(flatten=...), which triton {triton.__version__} lacks")
    if cfg["SPLIT_TAIL"] and (not cfg["PERSISTENT"] or cfg["WARP_SPECIALIZE"]):
        raise ValueError("SPLIT_TAIL=True splits a persistent loop's last wave: it needs PERSISTENT=True, "
                         "and not WARP_SPECIALIZE=True (kernels/gemm_split_tail.py)")
    if cfg["PROGRAMS_PER_SM"] not in (1, 2) or (cfg["PROGRAMS_PER_SM"] > 1 and not cfg["PERSISTENT"]):
        raise ValueError(f"PROGRAMS_PER_SM must be 1 or 2, and 2 only with PERSISTENT=True (programs of one "
                         f"tile each already share SMs as they fit), got {cfg['PROGRAMS_PER_SM']!r}")
    clusters = int(cfg["num_ctas"])
    if clusters > 1 and (split_k > 1 or cfg["SPLIT_TAIL"] or cfg["WARP_SPECIALIZE"]):
        # a cluster runs each program as two CTAs, and both would arrive at a split's counter
        raise ValueError("num_ctas > 1 runs whole tiles in clusters: it takes SPLIT_K=1, no SPLIT_TAIL "
                         "and no WARP_SPECIALIZE (which fails to compile with clusters)")
    host_descriptors = cfg["HOST_DESCRIPTORS"]
    where_they_compile = host_descriptors_compile(cfg)
    if host_descriptors == "auto":
        host_descriptors = where_they_compile
    elif host_descriptors not in (True, False):
        raise ValueError(f"HOST_DESCRIPTORS must be 'auto', True or False, got {host_descriptors!r}")
    elif host_descriptors and not where_they_compile:
        raise ValueError("HOST_DESCRIPTORS=True makes TMA's descriptors on the host: it needs TMA=True, no "
                         "WARP_SPECIALIZE (fails to compile) and num_ctas=1 (a cluster splits a program's tile "
                         "between its CTAs)")
    parted = has_extra(cfg)
    if parted and excludes_extra(cfg):
        raise ValueError("EXTRA_M / EXTRA_N widen whole tiles, one accumulator a part "
                         "(kernels/gemm_tile_parts.py): not with SPLIT_K > 1, SPLIT_TAIL, WARP_SPECIALIZE, "
                         "EPILOGUE_SUBTILE or num_ctas > 1")
    if cfg["STAGE_A"]:
        a = aligned_rows(a)
    b_cols = N
    if cfg["STAGE_B"]:
        b, b_cols = stage_b(b)
    b_kmajor = b.stride(0) == 1 and b.stride(1) != 1
    if cfg["TMA"]:
        for name, t in (("a", a), ("b", b)):
            why = tma_compatible(t)
            if why:
                raise ValueError(f"TMA=True cannot read {name} {tuple(t.shape)}: {why}")
        if a.stride(1) != 1:
            raise ValueError("TMA=True needs a row-major (last dimension contiguous)")
        if not host_descriptors:
            tma_allocator(a.device)
    # C keeps its own rows: where a descriptor cannot write them (odd N, reached through a staged
    # B), or could write past N into someone else's columns (gemm_tiles.tma_storable), the loads
    # still go through TMA and C is stored by pointers
    tma_store = bool(cfg["TMA"]) and split_k == 1 and tma_storable(out)
    if parted:
        return launch_parted(a, b, out, cfg, b_cols, b_kmajor, tma_store, even_k(K, cfg), epilogue,
                             launch_options(cfg), host_descriptors)
    tiles = triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"])
    workspace = arrivals = None  # in_kernel's slabs and counters (two_pass's slabs are its target)
    if split_k == 1:
        target, stride_ws = out, 0
    elif two_pass or in_kernel:  # every element of every slab is written by its split: no zero-fill
        slabs = torch.empty((split_k, M, N), dtype=torch.float32, device=out.device)
        stride_ws = M * N
        if in_kernel:  # the kernel stores C itself
            target, workspace, arrivals = out, slabs, arrival_counters(out.device, tiles)
        else:
            target = slabs
    else:
        target, stride_ws = torch.zeros((M, N), dtype=torch.float32, device=out.device), 0
    grid = (persistent_programs(tiles, a.device, cfg),) if cfg["PERSISTENT"] else (tiles, split_k)
    tail_tiles, tail_slices = tail_plan(tiles, grid[0], triton.cdiv(K, cfg["BLOCK_K"])) if cfg["SPLIT_TAIL"] else (0, 1)
    if tail_tiles:  # one fp32 tile a slice, and the tail tiles' arrival counters
        workspace = torch.empty((tail_tiles * tail_slices, cfg["BLOCK_M"] * cfg["BLOCK_N"]),
                                dtype=torch.float32, device=out.device)
        arrivals = arrival_counters(out.device, tiles)
    ep = epilogue
    res = ep.residual
    flags = dict(HAS_SCALE=ep.scale_a is not None, HAS_BIAS=ep.bias is not None,
                 ACTIVATION=ep.activation, HAS_RESIDUAL=res is not None)
    rstrides = (res.stride(0), res.stride(1)) if res is not None else (0, 0)
    a_hd = b_hd = c_hd = None
    if host_descriptors:
        bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
        a_hd = host_descriptor(a, [bm, bk])
        b_hd = host_descriptor(b, [bk, bn], kmajor=b_kmajor)
        if tma_store:
            c_hd = host_descriptor(out, [bm, bn // (1 + bool(cfg["EPILOGUE_SUBTILE"]))])
    handle = matmul_kernel[grid](
        a, b, target, ep.bias, res, ep.scale_a, ep.scale_b, workspace, arrivals, M, N, K, b_cols,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1),
        target.stride(-2), target.stride(-1), *rstrides, stride_ws, tail_tiles, a_hd, b_hd, c_hd,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
        GROUP_M=cfg["GROUP_M"], SPLIT_K=split_k, TWO_PASS=two_pass, IN_KERNEL=in_kernel,
        PERSISTENT=bool(cfg["PERSISTENT"]), TMA=bool(cfg["TMA"]), TMA_STORE=tma_store,
        WARP_SPECIALIZE=bool(cfg["WARP_SPECIALIZE"]), EVEN_K=even_k(K, cfg), B_KMAJOR=b_kmajor,
        EPILOGUE_SUBTILE=bool(cfg["EPILOGUE_SUBTILE"]), FLATTEN=bool(cfg["FLATTEN"]),
        SPLIT_TAIL=bool(tail_tiles), TAIL_SLICES=tail_slices, HOST_DESCRIPTORS=host_descriptors, **flags,
        **launch_options(cfg),
    )
    if split_k > 1 and not in_kernel:
        finish_grid = (triton.cdiv(M, FINISH_BLOCK), triton.cdiv(N, FINISH_BLOCK))
        splitk_finish_kernel[finish_grid](
            target, out, ep.bias, res, ep.scale_a, ep.scale_b, M, N, stride_ws,
            out.stride(0), out.stride(1), *rstrides,
            SLABS=split_k if two_pass else 1, BLOCK_M=FINISH_BLOCK, BLOCK_N=FINISH_BLOCK, **flags,
            num_warps=4,
        )
    return handle


def launch(inputs, out: torch.Tensor, config) -> object:
    """Run the template for one config, writing `out`. Returns Triton's compiled-kernel handle."""
    a, b = inputs
    return launch_gemm(a, b, out, config)


def tma_usable(cfg: dict, a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether launch_gemm can run cfg on these operands as far as TMA goes (a config tuned for a
    neighbouring shape may ask for TMA they cannot take): A row-major, A and B readable by
    descriptors once staged (STAGE_A stages a row-major A, STAGE_B any B). C never rules TMA out:
    where its rows are misaligned it is stored by pointers."""
    if not cfg.get("TMA"):
        return True
    return a.stride(1) == 1 and bool(cfg.get("STAGE_A") or not tma_compatible(a)) and \
        bool(cfg.get("STAGE_B") or not tma_compatible(b))


def check_inputs(a: torch.Tensor, b: torch.Tensor) -> None:
    """Clear errors for inputs the template cannot take."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"matmul takes two tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"matmul takes 2-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: inner dimensions differ: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    if a.dtype != b.dtype or a.dtype not in DTYPES.values():
        raise TypeError(f"matmul takes two tensors of one dtype among float16, bfloat16, float32; "
                        f"got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"matmul: inputs are on different devices ({a.device}, {b.device})")
    if 0 in a.shape or 0 in b.shape:
        raise ValueError(f"matmul: empty input, shapes {tuple(a.shape)} and {tuple(b.shape)}")


def matmul(a: torch.Tensor, b: torch.Tensor, config=None) -> torch.Tensor:
    """Public entry point: a @ b with the Triton template. Without a config: the tuned table's
    (kernels/tuned.py: KERNELEVOLVE_TUNED or tuned.load_table) for this shape, dtype and GPU kind,
    else DEFAULT_CONFIG."""
    check_inputs(a, b)
    out = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    if not config:
        config = tuned.config_for("matmul", {"M": a.shape[0], "N": b.shape[1], "K": a.shape[1]},
                                  a.dtype, a.device, DEFAULT_CONFIG, lambda cfg: tma_usable(cfg, a, b))
    launch((a, b), out, config)
    return out


def make_inputs(problem: MatmulProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    dtype = DTYPES[problem.dtype]
    a = torch.randn((problem.M, problem.K), generator=gen, device=device, dtype=torch.float32)
    b = torch.randn((problem.K, problem.N), generator=gen, device=device, dtype=torch.float32)
    return a.to(dtype), b.to(dtype)


def make_output(problem: MatmulProblem, inputs) -> torch.Tensor:
    return output_for(problem.M, problem.N, inputs[0])


def reference(inputs) -> torch.Tensor:
    a, b = inputs
    return a.double() @ b.double()


def baseline(inputs) -> torch.Tensor:
    a, b = inputs
    return torch.matmul(a, b)


def flops(problem: MatmulProblem) -> float:
    return 2.0 * problem.M * problem.N * problem.K


def bytes_moved(problem: MatmulProblem) -> float:
    # Each input read once and the output written once: what a perfect kernel moves.
    return float((problem.M * problem.K + problem.K * problem.N + problem.M * problem.N)
                 * element_size(problem.dtype))


SPEC = KernelSpec(
    name="matmul",
    description="GEMM C = A @ B: tiles (widened past powers of two too), GROUP_M swizzle, split-K "
                "(atomic, two-pass or in-kernel), persistent (flattened or not), TMA, warp "
                "specialization and epilogue subtiling as switches",
    problem=MatmulProblem,
    make_inputs=make_inputs,
    make_output=make_output,
    launch=launch,
    reference=reference,
    baseline=baseline,
    flops=flops,
    bytes_moved=bytes_moved,
    reduction=lambda p: p.K,  # products summed per output element
    vendor_configs=vendor_configs,  # torch.mm (on padded copies too where rows are misaligned)
)
