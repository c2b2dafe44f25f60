"""conv2d's STAGE_X path: a bordered copy of x, then a GEMM-like kernel over its rows.

STAGE_X (stride 1) copies x once into a zero-bordered NHWC buffer xp [N, H+B_h, W+B_w, C_in]
whose B_w zero columns after each image row and B_h zero rows after each image serve
as the padding of both sides (the left padding of a row is the right border of
the row before; the top padding of an image is the bottom border of the image
before, or lies before the buffer, where TMA reads zeros). Seen as a flat matrix
[N*Hp*Wp, C_in], tap (r, s) of output pixel m = (n*Hp + p)*Wp + q is row
m + (r*DIL - PAD)*Wp + s*DIL - PAD: every A tile is a plain 2-D descriptor box at a
constant shift, so the MMA reads it from shared memory and the K loop pipelines
like a GEMM's (conv2d_staged_kernel). The price: the copy (timed with the kernel,
part of every STAGE_X candidate's latency) and the border rows of the output grid,
computed and not stored (15% more rows at 14x14, 7% at 28x28, 4% at 56x56).
Weights are read by descriptor (the TMA layout); FLAT_K, X_TMA, SPLIT_K are unused.

Measured on the H100 (docs/benchmarks.md): the kernel alone comes close to cuDNN on 28x28x128 and
14x14x256, but the copy costs more than it saves on the three ResNet layers; kept as a switch
because a chain of same-padded convs could keep its activations bordered.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernelevolve.kernels.gemm_tiles import launch_options, tile_coords, tma_allocator


@triton.jit
def conv2d_staged_kernel(xp_ptr, w_ptr, y_ptr, ROWS, Hp, Wp, C, C_out, P, Q, S, TAPS,
                         stride_yn, stride_yc, stride_yp, stride_yq,
                         PAD: tl.constexpr, DIL: tl.constexpr, BLOCK_M: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """STAGE_X: y = conv(x) as a GEMM over the rows of the bordered copy xp (module docstring).
    Rows of the output grid that fall on the borders (p >= P or q >= Q) are computed, not stored."""
    pid_m, pid_n = tile_coords(tl.program_id(0), ROWS, C_out, BLOCK_M, BLOCK_N, GROUP_M)
    m0 = pid_m * BLOCK_M
    co0 = pid_n * BLOCK_N
    x_desc = tl.make_tensor_descriptor(xp_ptr, shape=[ROWS, C], strides=[C, 1],
                                       block_shape=[BLOCK_M, BLOCK_K])
    w_desc = tl.make_tensor_descriptor(w_ptr, shape=[C_out, TAPS * C], strides=[TAPS * C, 1],
                                       block_shape=[BLOCK_N, BLOCK_K])
    c_blocks = tl.cdiv(C, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(0, TAPS * c_blocks):
        tap = kk // c_blocks
        c0 = (kk % c_blocks) * BLOCK_K
        shift = ((tap // S) * DIL - PAD) * Wp + (tap % S) * DIL - PAD
        a = x_desc.load([m0 + shift, c0])  # rows before 0 or past ROWS arrive as zeros
        b = w_desc.load([co0, tap * C + c0]).T  # channels past C meet the zeros of `a`
        acc = tl.dot(a, b, acc)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    q = offs_m % Wp
    p = (offs_m // Wp) % Hp
    n = offs_m // (Wp * Hp)
    offs_n = co0 + tl.arange(0, BLOCK_N)
    y_ptrs = y_ptr + (n * stride_yn + p * stride_yp + q * stride_yq)[:, None] + offs_n[None, :] * stride_yc
    y_mask = ((p < P) & (q < Q) & (offs_m < ROWS))[:, None] & (offs_n[None, :] < C_out)
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=y_mask)


def staged_borders(H: int, W: int, P: int, Q: int, pad: int) -> tuple[int, int]:
    """(B_h, B_w): the zero rows after each image and zero columns after each image row that
    STAGE_X's copy adds: wide enough for the padding of either side (they are shared) and for an
    output taller or wider than the input (stride 1)."""
    return max(pad, P - H, 0), max(pad, Q - W, 0)


def stage_input(x: torch.Tensor, borders: tuple[int, int]) -> torch.Tensor:
    """x [N, C, H, W] -> xp [N, H + B_h, W + B_w, C], contiguous, zero borders. Zeroing the borders
    and copying the interior (three kernels) moved the 56x56x64 layer's copy in 5-8 us on the H100
    where F.pad took 20 us (it fills the whole buffer, then copies)."""
    b_h, b_w = borders
    N, C, H, W = x.shape
    xp = x.new_empty((N, H + b_h, W + b_w, C))
    xp[:, H:].zero_()
    xp[:, :H, W:].zero_()
    xp[:, :H, :W].copy_(x.permute(0, 2, 3, 1))
    return xp


def launch_staged(x, w, out, cfg, padding, dilation):
    """STAGE_X (module docstring): the bordered copy, then conv2d_staged_kernel over its rows. The
    caller (kernels/conv2d.py launch) has checked that this path can run: stride 1, 16-byte aligned
    pixels, a weight the descriptor can read."""
    NB, C, H, W = x.shape
    C_out, _, R, S = w.shape
    P, Q = out.shape[2], out.shape[3]
    xp = stage_input(x, staged_borders(H, W, P, Q, padding))
    _, Hp, Wp, _ = xp.shape
    rows = NB * Hp * Wp
    tma_allocator(x.device)
    grid = (triton.cdiv(rows, cfg["BLOCK_M"]) * triton.cdiv(C_out, cfg["BLOCK_N"]),)
    return conv2d_staged_kernel[grid](
        xp, w, out, rows, Hp, Wp, C, C_out, P, Q, S, R * S, *out.stride(),
        PAD=padding, DIL=dilation, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"],
        BLOCK_K=cfg["BLOCK_K"], GROUP_M=cfg["GROUP_M"], **launch_options(cfg))
