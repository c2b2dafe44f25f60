"""conv2d, NHWC (channels_last), as an implicit GEMM: no im2col buffer is ever written.

The GEMM it is: rows = output pixels (N*P*Q), columns = output channels (C_out), reduction =
(r, s, c) over the filter window and the input channels (R*S*C_in). A program owns a
BLOCK_M x BLOCK_N tile of the output; for each filter tap (r, s) it loads the input pixels that
tap reads (zero outside the padded image) as the A tile, straight from x, and the weight slice
as the B tile. The weight is read in torch's channels_last layout [C_out, R, S, C_in]: for one
output channel the whole reduction axis is contiguous, i.e. B is "K-major".

Switches (config keys; a key a config lacks takes its SWITCH_DEFAULTS value, so configs written
before a switch existed still launch as they did):
  BLOCK_M/N/K   output pixels x output channels per tile, input channels per K step
  GROUP_M       L2 swizzle of the tiles (as in kernels/gemm_tiles.py)
  FLAT_K        one flat K loop over (r, s, channel block), decoded with a division per step,
                which Triton software-pipelines end to end; versus a tap loop around a channel
                loop, where only the short channel loop is pipelined (better when C_in is large)
  TMA           weight tiles by tensor descriptor over [C_out, R*S*C_in] (Hopper in the space)
  X_TMA         activation tiles by a 4-D tensor descriptor over x seen as [N, H, W, C_in]
                (Hopper in the space). A tile is then BLOCK_P x BLOCK_Q output pixels of one image
                (BLOCK_Q a power of two, BLOCK_P = BLOCK_M // (BLOCK_Q x BLOCK_I)), and tap (r, s) of it is
                the box [n, p0 + r*DIL - PAD, q0 + s*DIL - PAD, c0] of shape
                [1, BLOCK_P, BLOCK_Q, BLOCK_K]: one copy-engine request per K step instead of a
                masked gather with per-element address arithmetic. The copy engine fills what
                lies outside x with zeros, negative coordinates included: that is the padding,
                and the channels past C_in of a ragged last block. Stride 1 only (a box walks
                consecutive input pixels; the launcher raises ValueError otherwise), and x's
                strides must be 16-byte aligned (C_in * element size % 16 == 0). The Triton
                interpreter zero-fills negative coordinates too (tests/test_conv2d.py checks it).
                With BLOCK_P = 1 Triton drops the unit dimensions and the MMA reads the box from
                shared memory. With BLOCK_P > 1 (triton 3.6 and 3.9, sm90) the reshape is done in
                registers: the MMA takes A from registers, and Triton leaves those MMAs in flight
                into the next K step, whose loads then overwrite their A registers. That was
                seen on the H100: with 8 warps and two programs per SM, results moved from run to
                run and failed the check. So the launcher sets A_SYNC for that case: one
                register move of the accumulator after each K step's dot makes Triton wait for
                the step's MMAs first (SASS: one WARPGROUP.DEPBAR.LE 0 per step), which costs
                only the MMA/MMA overlap across steps.
  BLOCK_Q       output columns per tile with X_TMA (ignored without it)
  BLOCK_I       images per X_TMA box (a 5-D descriptor over x seen as [N / BLOCK_I, BLOCK_I, H, W, C]):
                the tile is BLOCK_I x BLOCK_P x BLOCK_Q pixels. Box sides are powers of two, so a
                14x14 image in 16 x 8 boxes computes 31% thrown-away rows; 4 images x 2 rows x 16
                columns per 128-pixel tile throw away 12.5%, and 56x56 in 2 x 8 x 8 none. BLOCK_I
                must divide N (the descriptor's shape splits the batch)
  STAGE_X       (stride 1) copy x once into a zero-bordered buffer whose rows every tap reads as one
                shifted 2-D descriptor box, and run kernels/conv2d_staged.py's GEMM-like kernel on it
                (the copy is part of the measured time)
  SWAP_AB       the MMA computes the transposed tile, y^T = w_tile @ x_tile^T: the weights become its A
                operand and the pixels its B. Hopper's wgmma takes B only from shared memory, and
                Triton (sm90 TTGIR of 3.6, checked on the H100, and of 3.9) then reshapes a
                multi-row X_TMA box as a shared-memory view (memdesc_reshape) instead of in
                registers: no register operand, no A_SYNC wait, MMAs overlap across K steps as in
                a GEMM. The pixel count per tile becomes the MMA's N (a multiple of 8 up to 256),
                so tiles of 16 or 32 pixels are legal; on the H100 they lost (each re-reads the
                weight tile from L2 for few pixels). The tile is transposed back once, before
                the store.
  SPLIT_K       the K steps of a tile are dealt to SPLIT_K programs (grid axis 1), for layers
                with too few output tiles to fill the GPU; their fp32 partial sums are atomically
                added into a zeroed [N, P, Q, C_out] workspace, which one torch copy then casts
                into y with y's strides. With FLAT_K a split takes every SPLIT_K-th K step; with
                the tap loop, every SPLIT_K-th tap (whole taps).
  PERSISTENT    launch PROGRAMS_PER_SM programs per SM, each walking its tiles (every grid-th) in one
                flat loop over tiles x K steps (FLAT_K, SPLIT_K=1): the software pipeline then runs on
                across tile boundaries (the next tile's first loads overlap this tile's last MMAs and
                its store), where a program per tile fills and drains its pipeline around only
                R*S*C_in/BLOCK_K steps (9 for a 3x3 filter over 64 channels)
  PROGRAMS_PER_SM  1..4, with PERSISTENT (pinned to 1 without it)
  num_warps / num_stages, and AMD's launch options when the config has them
Set by the launcher: EVEN_C (C_in % BLOCK_K == 0: no channel mask on the pointer loads), A_SYNC
(X_TMA with BLOCK_P x BLOCK_I > 1 and no SWAP_AB, on a GPU; the interpreter has no MMAs in flight and no
inline PTX).

Reference: torch.nn.functional.conv2d in float64. Peer: F.conv2d on channels_last tensors (cuDNN).
"""
from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt

from kernelevolve.kernels.conv2d_staged import launch_staged
from kernelevolve.kernels.gemm_tiles import (launch_options, persistent_programs, tile_coords, tma_allocator,
                                             tma_compatible)
from kernelevolve.kernels.spec import DTYPES, KernelSpec, element_size


class Conv2dProblem(BaseModel):
    """One conv2d: x [N, C_in, H, W] (stored NHWC), weight [C_out, C_in, R, S]."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    N: PositiveInt
    H: PositiveInt
    W: PositiveInt
    C_in: PositiveInt
    C_out: PositiveInt
    R: PositiveInt = 3
    S: PositiveInt = 3
    stride: PositiveInt = 1
    padding: NonNegativeInt = 1
    dilation: PositiveInt = 1
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"

    @property
    def P(self) -> int:  # output height
        return (self.H + 2 * self.padding - self.dilation * (self.R - 1) - 1) // self.stride + 1

    @property
    def Q(self) -> int:  # output width
        return (self.W + 2 * self.padding - self.dilation * (self.S - 1) - 1) // self.stride + 1


@triton.jit
def _tap(acc, x_ptr, x_desc, w_ptr, w_desc, n, h0, w0, m_ok, offs_co, r, s, c0, H, W, C, S,
         stride_xn, stride_xh, stride_xw, stride_xc, stride_wo, stride_wr, stride_ws, stride_wc,
         co_start, DIL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
         EVEN_C: tl.constexpr, TMA: tl.constexpr, X_TMA: tl.constexpr, A_SYNC: tl.constexpr,
         SWAP_AB: tl.constexpr, BLOCK_I: tl.constexpr):
    """acc += x[pixels shifted by tap (r, s), channels c0:c0+BLOCK_K] @ w[tap, channels, out].
    n, h0, w0: per-row image and top-left input pixel of each output pixel; with X_TMA the
    tile's image (or group of BLOCK_I images) and top-left input pixel (scalars: the tile is a
    box of BLOCK_I images)."""
    offs_c = c0 + tl.arange(0, BLOCK_K)
    if X_TMA:  # what the box finds outside x (padding, channels >= C) arrives as zeros
        if BLOCK_I > 1:  # 5-D descriptor [N / BLOCK_I, BLOCK_I, H, W, C]: BLOCK_I images per box
            a = tl.reshape(x_desc.load([n, 0, h0 + r * DIL, w0 + s * DIL, c0]), [BLOCK_M, BLOCK_K])
        else:
            a = tl.reshape(x_desc.load([n, h0 + r * DIL, w0 + s * DIL, c0]), [BLOCK_M, BLOCK_K])
    else:
        h = h0 + r * DIL
        w = w0 + s * DIL
        inside = m_ok & (h >= 0) & (h < H) & (w >= 0) & (w < W)  # padding reads zeros
        x_ptrs = x_ptr + (n * stride_xn + h * stride_xh + w * stride_xw)[:, None] + offs_c[None, :] * stride_xc
        if EVEN_C:
            a = tl.load(x_ptrs, mask=inside[:, None], other=0.0)
        else:
            a = tl.load(x_ptrs, mask=inside[:, None] & (offs_c[None, :] < C), other=0.0)
    if TMA:  # rows of [C_out, R*S*C]; a block past this tap's channels meets zeros of `a`
        b = w_desc.load([co_start, (r * S + s) * C + c0]).T
    else:
        w_ptrs = (w_ptr + r * stride_wr + s * stride_ws + offs_c[:, None] * stride_wc
                  + offs_co[None, :] * stride_wo)
        if EVEN_C:
            b = tl.load(w_ptrs)
        else:
            b = tl.load(w_ptrs, mask=offs_c[:, None] < C, other=0.0)
    if SWAP_AB:  # acc is [BLOCK_N, BLOCK_M]: the weights are the MMA's A, the pixels its B
        acc = tl.dot(tl.trans(b), tl.trans(a), acc)
    else:
        acc = tl.dot(a, b, acc)
    if A_SYNC:  # a use of acc (a register move) makes Triton finish this step's MMAs (docstring)
        acc = tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [acc], dtype=tl.float32,
                                        is_pure=True, pack=1)
    return acc


@triton.jit
def _tile_origin(tile, NB, P, Q, C_out, STRIDE: tl.constexpr, PAD: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr,
                 BLOCK_Q: tl.constexpr, GROUP_M: tl.constexpr, X_TMA: tl.constexpr,
                 BLOCK_I: tl.constexpr):
    """Tile number -> where its loads start (a_n, a_h, a_w: per row, or with X_TMA the box's
    image group and top-left input pixel), each row's output pixel (n, p, q, m_ok) and pid_n."""
    if X_TMA:  # tile = (BLOCK_I images, BLOCK_P output rows, BLOCK_Q output columns); STRIDE is 1
        p_tiles = tl.cdiv(P, BLOCK_P)
        q_tiles = tl.cdiv(Q, BLOCK_Q)
        # tile_coords over whole tile rows (BLOCK_M=1): consecutive tiles are neighbours in the
        # image, so with GROUP_M they share their halo rows and the weights in L2
        pid_m, pid_n = tile_coords(tile, (NB // BLOCK_I) * p_tiles * q_tiles, C_out, 1, BLOCK_N, GROUP_M)
        group = pid_m // (p_tiles * q_tiles)
        p0 = (pid_m // q_tiles) % p_tiles * BLOCK_P
        q0 = (pid_m % q_tiles) * BLOCK_Q
        rows = tl.arange(0, BLOCK_M)  # row-major over the box [images, rows, columns], as the reshape is
        n = group * BLOCK_I + rows // (BLOCK_P * BLOCK_Q)
        p = p0 + (rows // BLOCK_Q) % BLOCK_P
        q = q0 + rows % BLOCK_Q
        m_ok = (p < P) & (q < Q)
        a_n, a_h, a_w = group, p0 - PAD, q0 - PAD
    else:
        M = NB * P * Q
        pid_m, pid_n = tile_coords(tile, M, C_out, BLOCK_M, BLOCK_N, GROUP_M)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        m_ok = offs_m < M
        n = offs_m // (P * Q)  # output pixel -> (image, row, column)
        p = (offs_m % (P * Q)) // Q
        q = offs_m % Q
        a_n, a_h, a_w = n, p * STRIDE - PAD, q * STRIDE - PAD
    return a_n, a_h, a_w, n, p, q, m_ok, pid_n


@triton.jit
def _store_tile(acc, y_ptr, n, p, q, m_ok, pid_n, C_out, stride_yn, stride_yc, stride_yp, stride_yq,
                BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, SWAP_AB: tl.constexpr):
    if SWAP_AB:
        acc = tl.trans(acc)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    y_ptrs = y_ptr + (n * stride_yn + p * stride_yp + q * stride_yq)[:, None] + offs_n[None, :] * stride_yc
    y_mask = m_ok[:, None] & (offs_n[None, :] < C_out)
    if SPLIT_K == 1:
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=y_mask)
    else:  # y_ptr is the fp32 workspace; nothing reads it before the launch ends: no ordering
        tl.atomic_add(y_ptrs, acc, mask=y_mask, sem="relaxed")


@triton.jit
def conv2d_kernel(x_ptr, w_ptr, y_ptr, NB, H, W, C, C_out, P, Q, R, S, n_tiles,
                  stride_xn, stride_xc, stride_xh, stride_xw,
                  stride_wo, stride_wc, stride_wr, stride_ws,
                  stride_yn, stride_yc, stride_yp, stride_yq,
                  STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, GROUP_M: tl.constexpr,
                  FLAT_K: tl.constexpr, TMA: tl.constexpr, X_TMA: tl.constexpr,
                  SPLIT_K: tl.constexpr, EVEN_C: tl.constexpr, A_SYNC: tl.constexpr,
                  SWAP_AB: tl.constexpr, BLOCK_I: tl.constexpr, PERSISTENT: tl.constexpr):
    tl.static_assert(not (PERSISTENT and (SPLIT_K > 1 or not FLAT_K)),
                     "a persistent program walks whole tiles in one flat K loop")
    x_desc = None
    if X_TMA:
        if BLOCK_I > 1:  # 5-D descriptor [N / BLOCK_I, BLOCK_I, H, W, C]: BLOCK_I images per box
            x_desc = tl.make_tensor_descriptor(x_ptr, shape=[NB // BLOCK_I, BLOCK_I, H, W, C],
                                               strides=[BLOCK_I * stride_xn, stride_xn, stride_xh, stride_xw, 1],
                                               block_shape=[1, BLOCK_I, BLOCK_P, BLOCK_Q, BLOCK_K])
        else:
            x_desc = tl.make_tensor_descriptor(x_ptr, shape=[NB, H, W, C],
                                               strides=[stride_xn, stride_xh, stride_xw, 1],
                                               block_shape=[1, BLOCK_P, BLOCK_Q, BLOCK_K])
    w_desc = None
    if TMA:
        w_desc = tl.make_tensor_descriptor(w_ptr, shape=[C_out, R * S * C], strides=[stride_wo, 1],
                                           block_shape=[BLOCK_N, BLOCK_K])
    if SWAP_AB:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    c_blocks = tl.cdiv(C, BLOCK_K)
    if PERSISTENT:
        # One flat loop over (this program's tiles) x (K steps): Triton's pipeliner then keeps
        # loading the next tile's first steps while this tile's last MMAs and its store run,
        # where a program per tile starts with an empty pipeline and ends with a drain.
        # n_tiles: the launcher's count of output tiles (pixel tiles x channel tiles).
        k_steps = R * S * c_blocks
        my_tiles = tl.cdiv(n_tiles - tl.program_id(0), tl.num_programs(0))
        for i in range(0, my_tiles * k_steps):
            kk = i % k_steps
            a_n, a_h, a_w, n, p, q, m_ok, pid_n = _tile_origin(
                tl.program_id(0) + (i // k_steps) * tl.num_programs(0), NB, P, Q, C_out, STRIDE, PAD,
                BLOCK_M, BLOCK_N, BLOCK_P, BLOCK_Q, GROUP_M, X_TMA, BLOCK_I)
            offs_co = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % C_out
            tap = kk // c_blocks
            acc = _tap(acc, x_ptr, x_desc, w_ptr, w_desc, a_n, a_h, a_w, m_ok, offs_co, tap // S,
                       tap % S, (kk % c_blocks) * BLOCK_K, H, W, C, S, stride_xn, stride_xh,
                       stride_xw, stride_xc, stride_wo, stride_wr, stride_ws, stride_wc,
                       pid_n * BLOCK_N, DIL, BLOCK_M, BLOCK_K, EVEN_C, TMA, X_TMA, A_SYNC, SWAP_AB, BLOCK_I)
            if kk == k_steps - 1:
                _store_tile(acc, y_ptr, n, p, q, m_ok, pid_n, C_out, stride_yn, stride_yc, stride_yp,
                            stride_yq, BLOCK_N, SPLIT_K, SWAP_AB)
                acc = tl.zeros_like(acc)
    else:
        a_n, a_h, a_w, n, p, q, m_ok, pid_n = _tile_origin(
            tl.program_id(0), NB, P, Q, C_out, STRIDE, PAD, BLOCK_M, BLOCK_N, BLOCK_P, BLOCK_Q,
            GROUP_M, X_TMA, BLOCK_I)
        # columns past C_out wrap around (modulo) so the weight loads stay unmasked; the store masks
        offs_co = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % C_out
        k_first = 0  # this program's split of the K steps: every SPLIT_K-th, from its own
        if SPLIT_K > 1:
            k_first = tl.program_id(1)
        if FLAT_K:
            for kk in range(k_first, R * S * c_blocks, SPLIT_K):
                tap = kk // c_blocks
                acc = _tap(acc, x_ptr, x_desc, w_ptr, w_desc, a_n, a_h, a_w, m_ok, offs_co, tap // S,
                           tap % S, (kk % c_blocks) * BLOCK_K, H, W, C, S, stride_xn, stride_xh,
                           stride_xw, stride_xc, stride_wo, stride_wr, stride_ws, stride_wc,
                           pid_n * BLOCK_N, DIL, BLOCK_M, BLOCK_K, EVEN_C, TMA, X_TMA, A_SYNC, SWAP_AB, BLOCK_I)
        else:
            for tap in range(k_first, R * S, SPLIT_K):  # a split takes whole taps
                for cb in range(0, c_blocks):
                    acc = _tap(acc, x_ptr, x_desc, w_ptr, w_desc, a_n, a_h, a_w, m_ok, offs_co,
                               tap // S, tap % S, cb * BLOCK_K, H, W, C, S, stride_xn, stride_xh,
                               stride_xw, stride_xc, stride_wo, stride_wr, stride_ws, stride_wc,
                               pid_n * BLOCK_N, DIL, BLOCK_M, BLOCK_K, EVEN_C, TMA, X_TMA, A_SYNC, SWAP_AB, BLOCK_I)
        _store_tile(acc, y_ptr, n, p, q, m_ok, pid_n, C_out, stride_yn, stride_yc, stride_yp, stride_yq,
                    BLOCK_N, SPLIT_K, SWAP_AB)


DEFAULT_CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8, "FLAT_K": True,
                  "TMA": False, "num_warps": 4, "num_stages": 3}
# The switches added after the first template, and what a config that lacks them meant.
SWITCH_DEFAULTS = {"FLAT_K": True, "TMA": False, "X_TMA": False, "SPLIT_K": 1, "STAGE_X": False,
                   "SWAP_AB": False, "BLOCK_I": 1, "PERSISTENT": False, "PROGRAMS_PER_SM": 1}


def x_tma_problem(x: torch.Tensor, stride: int) -> str | None:
    """Why X_TMA cannot read x [N, C_in, H, W] with this conv stride, or None. A 4-D descriptor
    over [N, H, W, C_in] needs C_in contiguous and the other strides and the base address
    16-byte aligned (kernels/gemm_tiles.tma_compatible of that view)."""
    if stride != 1:
        return f"stride {stride}: the box covers consecutive input pixels, so it needs stride 1"
    if x.stride(1) != 1:
        return f"x must be channels_last (C_in contiguous), strides are {tuple(x.stride())}"
    return tma_compatible(x.permute(0, 2, 3, 1))


def check_weight_descriptor(w: torch.Tensor, switch: str) -> None:
    """The weight descriptor views w as [C_out, R*S*C_in] with the reduction axis contiguous."""
    C_out, C, R, S = w.shape
    w2d = w.permute(0, 2, 3, 1).reshape(C_out, R * S * C)
    why = tma_compatible(w2d) if w2d.data_ptr() == w.data_ptr() and w2d.stride(1) == 1 else \
        "weight must be channels_last (its [C_out, R*S*C_in] view contiguous)"
    if why:
        raise ValueError(f"{switch}=True cannot read the weight {tuple(w.shape)}: {why}")


def _check_staged(x: torch.Tensor, w: torch.Tensor, cfg: dict, stride: int) -> None:
    """What STAGE_X (kernels/conv2d_staged.py) needs: stride 1 (a tap is a constant row shift),
    none of the switches of this template, 16-byte aligned pixels, a weight the descriptor reads."""
    if stride != 1:
        raise ValueError(f"STAGE_X=True needs stride 1 (a tap is a constant row shift), got stride {stride}")
    if cfg["X_TMA"] or int(cfg["SPLIT_K"]) != 1 or cfg["SWAP_AB"] or cfg["PERSISTENT"]:
        raise ValueError("STAGE_X=True runs its own kernel: it takes X_TMA=False, SWAP_AB=False, "
                         "PERSISTENT=False and SPLIT_K=1")
    pixel = x.shape[1] * x.element_size()
    if pixel % 16:
        raise ValueError(f"STAGE_X=True needs 16-byte aligned pixels: C_in x element = {pixel} B")
    check_weight_descriptor(w, "STAGE_X")


def _interpreting() -> bool:
    """TRITON_INTERPRET runs kernels on the CPU: no MMAs in flight, and no inline PTX."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def default_block_q(block_m: int, Q: int) -> int:
    """BLOCK_Q for an X_TMA config that names none: a tile row as wide as the output row."""
    return min(block_m, triton.next_power_of_2(Q))


def launch(inputs, out: torch.Tensor, config) -> object:
    """x [N, C_in, H, W] and weight [C_out, C_in, R, S], any strides (channels_last is the fast
    one; X_TMA needs it); out [N, C_out, P, Q], any strides. Inputs carry (stride, padding,
    dilation). Returns the main kernel's compiled handle."""
    x, w, (stride, padding, dilation) = inputs
    cfg = {**SWITCH_DEFAULTS, **config}
    NB, C, H, W = x.shape
    C_out, _, R, S = w.shape
    P, Q = out.shape[2], out.shape[3]
    split_k, x_tma = int(cfg["SPLIT_K"]), bool(cfg["X_TMA"])
    if split_k < 1:
        raise ValueError(f"SPLIT_K must be >= 1, got {split_k}")
    persistent = bool(cfg["PERSISTENT"])
    if persistent and (split_k != 1 or not cfg["FLAT_K"]):
        raise ValueError("PERSISTENT=True walks whole tiles in one flat K loop: it takes SPLIT_K=1 and FLAT_K=True")
    if cfg["STAGE_X"]:
        _check_staged(x, w, cfg, stride)
        return launch_staged(x, w, out, cfg, padding, dilation)
    if cfg["TMA"]:
        check_weight_descriptor(w, "TMA")
    block_p = block_q = block_i = 1  # unused without X_TMA: fixed, so they add no compiled variants
    if x_tma:
        why = x_tma_problem(x, stride)
        if why:
            raise ValueError(f"X_TMA=True cannot read x {tuple(x.shape)}: {why}")
        block_q = int(cfg.get("BLOCK_Q") or default_block_q(cfg["BLOCK_M"], Q))
        block_i = int(cfg["BLOCK_I"])
        if block_q & (block_q - 1) or block_i & (block_i - 1) or cfg["BLOCK_M"] % (block_q * block_i):
            raise ValueError(f"X_TMA=True needs BLOCK_Q and BLOCK_I powers of two whose product divides "
                             f"BLOCK_M={cfg['BLOCK_M']}, got BLOCK_Q={block_q}, BLOCK_I={block_i}")
        if NB % block_i:
            raise ValueError(f"BLOCK_I={block_i} images per box must divide the batch N={NB}")
        block_p = cfg["BLOCK_M"] // (block_q * block_i)
        m_tiles = NB // block_i * triton.cdiv(P, block_p) * triton.cdiv(Q, block_q)
    else:
        m_tiles = triton.cdiv(NB * P * Q, cfg["BLOCK_M"])
    if cfg["TMA"] or x_tma:
        tma_allocator(x.device)
    target = out
    if split_k > 1:  # fp32 partial sums meet here; [N, C_out, P, Q] view in channels_last order
        target = torch.zeros((NB, P, Q, C_out), dtype=torch.float32, device=out.device).permute(0, 3, 1, 2)
    tiles = m_tiles * triton.cdiv(C_out, cfg["BLOCK_N"])
    if persistent:  # PROGRAMS_PER_SM programs share an SM (as separate programs' tiles do without it)
        grid = (persistent_programs(tiles, x.device, cfg), 1)
    else:
        grid = (tiles, split_k)
    handle = conv2d_kernel[grid](
        x, w, target, NB, H, W, C, C_out, P, Q, R, S, tiles, *x.stride(), *w.stride(), *target.stride(),
        STRIDE=stride, PAD=padding, DIL=dilation,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
        BLOCK_P=block_p, BLOCK_Q=block_q, GROUP_M=cfg["GROUP_M"], FLAT_K=bool(cfg["FLAT_K"]),
        TMA=bool(cfg["TMA"]), X_TMA=x_tma, SPLIT_K=split_k, EVEN_C=C % cfg["BLOCK_K"] == 0,
        A_SYNC=x_tma and block_p * block_i > 1 and not _interpreting() and not cfg["SWAP_AB"],
        SWAP_AB=bool(cfg["SWAP_AB"]), BLOCK_I=block_i, PERSISTENT=persistent,
        **launch_options(cfg),
    )
    if split_k > 1:  # the finish: one elementwise cast-and-copy into y, whatever its strides
        out.copy_(target)
    return handle


def make_inputs(problem: Conv2dProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    p, dtype = problem, DTYPES[problem.dtype]
    x = torch.randn((p.N, p.C_in, p.H, p.W), generator=gen, device=device)
    # weights scaled like a trained layer's (fan-in), so outputs stay O(1) in fp16
    w = torch.randn((p.C_out, p.C_in, p.R, p.S), generator=gen, device=device) / (p.C_in * p.R * p.S) ** 0.5
    cl = torch.channels_last
    return (x.to(dtype).to(memory_format=cl), w.to(dtype).to(memory_format=cl),
            (p.stride, p.padding, p.dilation))


def make_output(problem: Conv2dProblem, inputs) -> torch.Tensor:
    x = inputs[0]
    return torch.empty((problem.N, problem.C_out, problem.P, problem.Q), dtype=x.dtype,
                       device=x.device).to(memory_format=torch.channels_last)


def reference(inputs) -> torch.Tensor:
    x, w, (stride, padding, dilation) = inputs
    return F.conv2d(x.double(), w.double(), stride=stride, padding=padding, dilation=dilation)


def baseline(inputs) -> torch.Tensor:
    x, w, (stride, padding, dilation) = inputs
    return F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)


def flops(problem: Conv2dProblem) -> float:
    p = problem
    return 2.0 * p.N * p.P * p.Q * p.C_out * p.C_in * p.R * p.S


def bytes_moved(problem: Conv2dProblem) -> float:
    p = problem
    n = p.N * p.H * p.W * p.C_in + p.C_out * p.C_in * p.R * p.S + p.N * p.P * p.Q * p.C_out
    return float(n * element_size(p.dtype))


SPEC = KernelSpec(
    name="conv2d",
    description="conv2d NHWC as an implicit GEMM: tiles, GROUP_M, flat or nested K loop, TMA weights, "
                "TMA activation boxes (X_TMA), a bordered input copy read as shifted 2-D boxes (STAGE_X), split-K",
    problem=Conv2dProblem,
    make_inputs=make_inputs,
    make_output=make_output,
    launch=launch,
    reference=reference,
    baseline=baseline,
    flops=flops,
    bytes_moved=bytes_moved,
    reduction=lambda p: p.C_in * p.R * p.S,  # products summed per output element
)
