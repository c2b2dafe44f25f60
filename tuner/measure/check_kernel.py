"""The output check's statistics in two fused passes on a GPU (tuner/measure/verify.py's `check`).

Why a kernel of our own: the judge checks every verified launch and a sample of the timed calls of
every candidate, often outputs of 10^7-10^8 elements against a float64 reference. In torch the two
measures take about twelve passes over the data (conversions, the difference, two norms, the
element bound, the ratio, its maximum), which made the checks the largest part of verification's
cost on the H100. Here one pass reads the output and the reference once and writes per-block sums
(the reference's and the difference's squares, the count of NaN/inf); a second pass, given the
reference's RMS, writes per-block maxima of |out - ref| / (max_rel_rms * RMS + rel_elem * |ref|)
and where they are. torch then reduces a few thousand partials. The judge runs trusted code only;
this module imports no kernel of the product.

Arithmetic in fp32 (outputs fp16/bf16/fp32; the reference read as fp32: its rounding, 6e-8
relative, is far below every bound), block sums reduced in float64.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096
FP32_MAX = tl.constexpr(3.4028234663852886e38)  # a global a @triton.jit function reads must be constexpr


@triton.jit
def _sums(out_ptr, ref_ptr, n, ref_sq_ptr, diff_sq_ptr, bad_ptr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(out_ptr + offs, mask=m, other=0.0).to(tl.float32)
    w = tl.load(ref_ptr + offs, mask=m, other=0.0).to(tl.float32)
    d = g - w
    finite = (d == d) & (tl.abs(d) <= FP32_MAX)
    tl.store(ref_sq_ptr + pid, tl.sum(w * w, axis=0))
    tl.store(diff_sq_ptr + pid, tl.sum(tl.where(finite, d * d, 0.0), axis=0))
    tl.store(bad_ptr + pid, tl.sum(tl.where(finite, 0, 1), axis=0))


@triton.jit
def _worst(out_ptr, ref_ptr, n, rms_ptr, rel_elem, max_rel_rms, max_ptr, arg_ptr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(out_ptr + offs, mask=m, other=0.0).to(tl.float32)
    w = tl.load(ref_ptr + offs, mask=m, other=0.0).to(tl.float32)
    rms = tl.load(rms_ptr)
    ratio = tl.abs(g - w) / (max_rel_rms * rms + rel_elem * tl.abs(w))
    # non-finite outputs are counted by _sums (a ratio past fp32's range: the relative error fails)
    ratio = tl.where(m & (ratio == ratio) & (ratio <= FP32_MAX), ratio, 0.0)
    tl.store(max_ptr + pid, tl.max(ratio, axis=0))
    tl.store(arg_ptr + pid, tl.argmax(ratio, axis=0))


def usable(out: torch.Tensor, ref: torch.Tensor) -> bool:
    """Whether the fused passes apply: both on one GPU, contiguous, floating, int32-indexable."""
    return (out.is_cuda and ref.device == out.device and out.is_contiguous() and ref.is_contiguous()
            and out.dtype in (torch.float16, torch.bfloat16, torch.float32)
            and ref.dtype in (torch.float32, torch.float64) and 0 < out.numel() < 2 ** 31 - BLOCK)


def stats(out: torch.Tensor, ref: torch.Tensor, rel_elem: float, max_rel_rms: float) -> torch.Tensor:
    """float64 [non-finite outputs, ||ref||, ||out - ref|| (finite elements), worst element ratio,
    its flat index], on the device: the caller reads them back once."""
    n = out.numel()
    blocks = triton.cdiv(n, BLOCK)
    f32 = dict(dtype=torch.float32, device=out.device)
    ref_sq, diff_sq = torch.empty(blocks, **f32), torch.empty(blocks, **f32)
    bad = torch.empty(blocks, dtype=torch.int32, device=out.device)
    _sums[(blocks,)](out, ref, n, ref_sq, diff_sq, bad, BLOCK=BLOCK)
    ref_norm = ref_sq.to(torch.float64).sum().sqrt()
    rms = torch.clamp(ref_norm / n ** 0.5, min=1e-30).to(torch.float32).reshape(1)
    worst, where = torch.empty(blocks, **f32), torch.empty(blocks, dtype=torch.int32, device=out.device)
    _worst[(blocks,)](out, ref, n, rms, float(rel_elem), float(max_rel_rms), worst, where, BLOCK=BLOCK)
    top, block = worst.max(dim=0)
    idx = block.to(torch.int64) * BLOCK + where[block].to(torch.int64)
    return torch.stack([bad.sum().to(torch.float64), ref_norm, diff_sq.to(torch.float64).sum().sqrt(),
                        top.to(torch.float64), idx.to(torch.float64)])
