"""Jagged x dense bmm: out[seq b] = x[seq b] @ y[b] for x jagged [total, K], y [B, K, N].

x with offsets [B+1] as in kernels/jagged.py (which holds the checks and the shared helpers).
Switches:
  LOOP_L    False: a grid axis over blocks of positions up to max_len (blocks past a short
            sequence do nothing). True: one program per sequence and column block loops over its
            own blocks.
  BLOCK_M, BLOCK_N, BLOCK_K   tile sizes (positions, N, K)
The torch peer is torch.bmm over the zero-padded x.
"""
from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.jagged import (check_offsets, check_tensors, jagged_spec, longest_sequence, make_offsets,
                            padded_reference, positions, random_values, total_positions)
from kernelevolve.kernels.spec import DTYPES, element_size


class JaggedBmmProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    batch: PositiveInt
    max_len: PositiveInt
    k: PositiveInt
    n: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@triton.jit
def _bmm_tile(x_ptr, y_ptr, out_ptr, m0, length, K, cols, nmask, stride_x, stride_yk, stride_o,
              BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = m0 + tl.arange(0, BLOCK_M)
    rmask = rows < length
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kmask = (k0 + ks) < K
        a = tl.load(x_ptr + rows[:, None] * stride_x + (k0 + ks)[None, :],
                    mask=rmask[:, None] & kmask[None, :], other=0.0)
        w = tl.load(y_ptr + (k0 + ks)[:, None] * stride_yk + cols[None, :],
                    mask=kmask[:, None] & nmask[None, :], other=0.0)
        acc = tl.dot(a, w, acc)
    tl.store(out_ptr + rows[:, None] * stride_o + cols[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=rmask[:, None] & nmask[None, :])


@triton.jit
def jagged_dense_bmm_kernel(x_ptr, offsets_ptr, y_ptr, out_ptr, K, N, stride_x, stride_yb, stride_yk,
                            stride_o, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                            BLOCK_K: tl.constexpr, LOOP_L: tl.constexpr):
    b = tl.program_id(0)
    start = tl.load(offsets_ptr + b).to(tl.int64)
    length = tl.load(offsets_ptr + b + 1).to(tl.int64) - start
    cols = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = cols < N
    x_ptr += start * stride_x
    out_ptr += start * stride_o
    y_ptr += b.to(tl.int64) * stride_yb
    if LOOP_L:
        for m0 in range(0, length, BLOCK_M):
            _bmm_tile(x_ptr, y_ptr, out_ptr, m0, length, K, cols, nmask, stride_x, stride_yk, stride_o,
                      BLOCK_M, BLOCK_K, BLOCK_N)
    else:
        m0 = tl.program_id(1) * BLOCK_M
        if m0 < length:
            _bmm_tile(x_ptr, y_ptr, out_ptr, m0, length, K, cols, nmask, stride_x, stride_yk, stride_o,
                      BLOCK_M, BLOCK_K, BLOCK_N)


def launch_bmm(inputs, out, cfg):
    """inputs (x values [total, K], offsets, y [B, K, N], max_len, padded x for the peer)."""
    x, offsets, y, max_len = inputs[:4]
    batch, K, N = y.shape
    grid = (batch, 1 if cfg["LOOP_L"] else triton.cdiv(max_len, cfg["BLOCK_M"]), triton.cdiv(N, cfg["BLOCK_N"]))
    return jagged_dense_bmm_kernel[grid](
        x, offsets, y, out, K, N, x.stride(0), y.stride(0), y.stride(1), out.stride(0),
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], LOOP_L=bool(cfg["LOOP_L"]),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])


BMM_DEFAULT = {"LOOP_L": False, "BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 2}


def jagged_dense_bmm(x, offsets, y, max_len: int | None = None, config=None):
    """out [total, N]: each sequence's rows of x [total, K] times its own y[b] [K, N]."""
    check_tensors("jagged_dense_bmm", {"x": x, "y": y}, {"x": 2, "y": 3}, offsets)
    check_offsets("jagged_dense_bmm", offsets, x.shape[0])
    if y.shape[0] != offsets.numel() - 1 or y.shape[1] != x.shape[1]:
        raise ValueError(f"jagged_dense_bmm: y must be [B={offsets.numel() - 1}, K={x.shape[1]}, N], "
                         f"got {tuple(y.shape)}")
    longest = longest_sequence("jagged_dense_bmm", offsets, max_len)
    out = torch.empty((x.shape[0], y.shape[2]), dtype=x.dtype, device=x.device)
    if out.numel():
        launch_bmm((x.contiguous(), offsets, y.contiguous(), max(1, longest)), out, config or BMM_DEFAULT)
    return out


# ---- inputs, reference, peer, cost ---------------------------------------------------------------
def bmm_reference(x, offsets, y, max_len, chunk=256):
    """Padded float64 bmm a chunk of sequences at a time (bounded memory), then the real rows."""
    seq, pos = positions(offsets, x.shape[0])
    out = torch.empty((x.shape[0], y.shape[2]), dtype=torch.float64, device=x.device)
    for b0 in range(0, y.shape[0], chunk):
        lo, hi = int(offsets[b0]), int(offsets[min(b0 + chunk, y.shape[0])])
        part = padded_reference(x[lo:hi], offsets[b0:b0 + chunk + 1] - lo, max_len)
        dense = torch.bmm(part, y[b0:b0 + chunk].double())
        out[lo:hi] = dense[seq[lo:hi] - b0, pos[lo:hi]]
    return out


def _bmm_inputs(p, device, seed):  # (x, offsets, y, max_len, padded x for the peer)
    offsets = make_offsets(p.batch, p.max_len, device)
    x, gen = random_values(p, device, seed, total_positions(p), p.k)
    y = torch.randn((p.batch, p.k, p.n), generator=gen, device=device).to(DTYPES[p.dtype])
    padded = torch.ops.aten._jagged_to_padded_dense_forward(x, [offsets], [p.max_len], 0.0)
    return x, offsets, y, p.max_len, padded


JAGGED_DENSE_BMM = jagged_spec(
    "jagged_dense_bmm", "jagged x [total, K] @ per-sequence y [B, K, N]; LOOP_L, BLOCK_M/N/K",
    JaggedBmmProblem, _bmm_inputs, lambda p: (total_positions(p), p.n), launch_bmm,
    lambda i: bmm_reference(i[0], i[1], i[2], i[3]), lambda i: torch.bmm(i[4], i[2]),
    lambda p: 2.0 * total_positions(p) * p.k * p.n,
    lambda p: float((total_positions(p) * (p.k + p.n) + p.batch * p.k * p.n) * element_size(p.dtype)
                    + 8 * (p.batch + 1)),
    reduction=lambda p: p.k)
