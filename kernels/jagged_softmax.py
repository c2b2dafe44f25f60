"""Jagged softmax: softmax over each sequence's positions, column by column.

values [total, D] with offsets [B+1] as in kernels/jagged.py (which holds the problem, the checks
and the shared helpers). One program per sequence and column block, always looping. Switches:
  ONLINE    as kernels/softmax.py: a block of positions in registers, or a running max and sum
            over blocks (any length). Without it, BLOCK_L must cover max_len.
  BLOCK_L, BLOCK_D   tile sizes (positions, columns)
The torch peer is a softmax over the -inf padded dense tensor.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernelevolve.kernels.jagged import (JaggedProblem, check_offsets, check_tensors, jagged_spec, longest_sequence,
                            positions, pow2, to_padded_inputs, total_positions)
from kernelevolve.kernels.spec import element_size

LOG2E = tl.constexpr(1.4426950408889634)  # a constexpr: kernels may only read constexpr globals


@triton.jit
def jagged_softmax_kernel(values_ptr, offsets_ptr, out_ptr, dim, stride_v, stride_o,
                          BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, ONLINE: tl.constexpr):
    b = tl.program_id(0)
    start = tl.load(offsets_ptr + b).to(tl.int64)
    length = tl.load(offsets_ptr + b + 1).to(tl.int64) - start
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < dim
    rows = tl.arange(0, BLOCK_L)
    values_ptr += start * stride_v
    out_ptr += start * stride_o
    if not ONLINE:
        if length > 0:  # an empty sequence has nothing to write
            inside = (rows < length)[:, None] & cmask[None, :]
            x = tl.load(values_ptr + rows[:, None] * stride_v + cols[None, :], mask=inside, other=0.0)
            x = x.to(tl.float32)
            x = tl.where((rows < length)[:, None], x, -float("inf"))  # columns past dim stay finite
            e = tl.exp2((x - tl.max(x, axis=0)[None, :]) * LOG2E)
            y = e / tl.sum(e, axis=0)[None, :]
            tl.store(out_ptr + rows[:, None] * stride_o + cols[None, :], y.to(out_ptr.dtype.element_ty),
                     mask=inside)
    if ONLINE:
        m = tl.full((BLOCK_D,), -float("inf"), tl.float32)
        d = tl.zeros((BLOCK_D,), tl.float32)
        for l0 in range(0, length, BLOCK_L):
            r = l0 + rows
            x = tl.load(values_ptr + r[:, None] * stride_v + cols[None, :],
                        mask=(r < length)[:, None] & cmask[None, :], other=0.0).to(tl.float32)
            x = tl.where((r < length)[:, None], x, -float("inf"))
            m_new = tl.maximum(m, tl.max(x, axis=0))
            d = d * tl.exp2((m - m_new) * LOG2E) + tl.sum(tl.exp2((x - m_new[None, :]) * LOG2E), axis=0)
            m = m_new
        for l0 in range(0, length, BLOCK_L):
            r = l0 + rows
            inside = (r < length)[:, None] & cmask[None, :]
            x = tl.load(values_ptr + r[:, None] * stride_v + cols[None, :], mask=inside, other=0.0).to(tl.float32)
            y = tl.exp2((x - m[None, :]) * LOG2E) / d[None, :]
            tl.store(out_ptr + r[:, None] * stride_o + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=inside)


def launch_softmax(inputs, out, cfg):
    """inputs (values, offsets, max_len, padded copy for the peer)."""
    values, offsets, max_len = inputs[:3]
    if not cfg["ONLINE"] and cfg["BLOCK_L"] < max_len:
        raise ValueError(f"jagged_softmax: BLOCK_L={cfg['BLOCK_L']} < max_len {max_len} needs ONLINE=True")
    grid = (offsets.numel() - 1, triton.cdiv(values.shape[1], cfg["BLOCK_D"]))
    return jagged_softmax_kernel[grid](
        values, offsets, out, values.shape[1], values.stride(0), out.stride(0), BLOCK_L=cfg["BLOCK_L"],
        BLOCK_D=cfg["BLOCK_D"], ONLINE=bool(cfg["ONLINE"]), num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"])


def default_softmax_config(max_len: int, dim: int) -> dict:
    online = max_len > 256
    return {"ONLINE": online, "BLOCK_L": 64 if online else pow2(max_len), "BLOCK_D": min(32, pow2(dim)),
            "num_warps": 4, "num_stages": 1}


def jagged_softmax(values, offsets, max_len: int | None = None, config=None):
    """Softmax over each sequence's positions, column by column (max_len: a bound on lengths)."""
    check_tensors("jagged_softmax", {"values": values}, {"values": 2}, offsets)
    check_offsets("jagged_softmax", offsets, values.shape[0])
    longest = longest_sequence("jagged_softmax", offsets, max_len)
    max_len = max(1, longest if max_len is None else max_len)
    out = torch.empty_like(values)
    if values.numel():
        launch_softmax((values.contiguous(), offsets, max_len), out,
                       config or default_softmax_config(max_len, values.shape[1]))
    return out


# ---- inputs, reference, peer, cost ---------------------------------------------------------------
def softmax_reference(values, offsets):
    seq, _ = positions(offsets, values.shape[0])
    x = values.double()
    peak = torch.full((offsets.numel() - 1, x.shape[1]), -torch.inf, dtype=torch.float64, device=x.device)
    e = torch.exp(x - peak.scatter_reduce(0, seq[:, None].expand_as(x), x, "amax")[seq])
    return e / torch.zeros_like(peak).index_add_(0, seq, e)[seq]


def _softmax_inputs(p, device, seed):  # (values, offsets, max_len, -inf padded copy for the peer)
    values, offsets, max_len = to_padded_inputs(p, device, seed)
    values = 3 * values
    padded = torch.ops.aten._jagged_to_padded_dense_forward(values, [offsets], [max_len], -float("inf"))
    return values, offsets, max_len, padded


JAGGED_SOFTMAX = jagged_spec(
    "jagged_softmax", "softmax over each sequence's positions; ONLINE, BLOCK_L, BLOCK_D",
    JaggedProblem, _softmax_inputs, lambda p: (total_positions(p), p.dim), launch_softmax,
    lambda i: softmax_reference(i[0], i[1]), lambda i: torch.softmax(i[3], dim=1),
    lambda p: 5.0 * total_positions(p) * p.dim,
    lambda p: float(2 * total_positions(p) * p.dim * element_size(p.dtype) + 8 * (p.batch + 1)))
