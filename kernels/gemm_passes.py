"""The one-pass memory kernels around the GEMM family's vendor path (kernels/gemm_vendor.py):
  copy_rows      an operand into a buffer whose rows start aligned, zero past its edges (the
                 padded path's A and B)
  epilogue_pass  a product out of (or in place in) a buffer, the GEMM's epilogue applied on the
                 way: bias, activation, residual (the padded path's C; the epilogues cuBLAS
                 cannot fuse)

Why kernels of our own: torch's way of padding (an empty buffer, a strided copy_ into a view of
it, the margins zeroed) is three kernels at about half the GPU's bandwidth, and an epilogue cuBLAS
cannot fuse was two or three more passes over C (addmm, then silu_ in place, or gelu into a new
tensor and a copy back). On an H200 (torch.profiler, kernel time): 15920x880x6832 bf16 + bias +
silu took addmm 268 us + silu_ 38 us where max-autotune ran cuBLAS's mm 247 us + one fused
bias-and-silu pass 17-28 us; 10912x976x2528 fp16 + gelu took 88 + 18 + 11 us against 77 + 17-19.

Both are one flat loop over the destination's elements, as Inductor's pointwise kernels are,
compiled for the rows' widths (a constant divisor; a few widths a GEMM, each compiled once and
cached). Measured on an H200 against Inductor's pad (torch.profiler, kernel time): one program
a row (this file's first version) left most lanes idle on narrow rows, 35746x142 fp16 padded in
22.8 us against 7.2 us, 46848x225 in 29.7 against 9.7; the flat loop dividing by a width known
only at run time (the second) 4.6 and 17.4 us, 169 us against 98 for a 62087x1672 bf16 copy; a
tiled one without the division (the third) 24-31 us against 6.5 for 4330x1649 bf16.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernelevolve.kernels.gemm_tiles import ACTIVATIONS, activate

BLOCK = 1024  # elements a program moves (Inductor's XBLOCK for a pointwise kernel of this size)
INT32_LIMIT = 2**31


@triton.jit
def _pass(src, dst, R, RP, src_pitch, dst_pitch, bias, residual, res_sm, res_sn,
          C: tl.constexpr, CP: tl.constexpr, BLOCK: tl.constexpr, WIDE: tl.constexpr,
          EPILOGUE: tl.constexpr, HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
          HAS_RESIDUAL: tl.constexpr):
    """dst[r, c] = src[r, c] (through the epilogue when EPILOGUE) inside src's R x C, 0 elsewhere
    in dst's RP x CP; the elements counted row by row, BLOCK a program. The widths are constants
    of the compiled kernel: its division by CP is a multiply and a shift, and the compiler sees
    how far the masks stay constant (what lets it widen the stores)."""
    if WIDE:  # 64-bit offsets only where 32 bits overflow
        x = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    else:
        x = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    r = x // CP
    c = x % CP
    inside = (r < R) & (c < C)
    v = tl.load(src + r * src_pitch + c, mask=inside, other=0)
    if EPILOGUE:
        acc = v.to(tl.float32)
        if HAS_BIAS:
            acc = acc + tl.load(bias + c, mask=c < C, other=0).to(tl.float32)
        acc = activate(acc, ACTIVATION)
        if HAS_RESIDUAL:
            acc = acc + tl.load(residual + r * res_sm + c * res_sn, mask=inside, other=0).to(tl.float32)
        v = acc.to(dst.dtype.element_ty)
    tl.store(dst + r * dst_pitch + c, v, mask=r < RP)


def _check(src, dst, what: str):
    (R, C), (RP, CP) = src.shape, dst.shape
    if src.stride(1) != 1 or dst.stride(1) != 1 or R > RP or C > CP:
        raise ValueError(f"{what}: {tuple(src.shape)} into {tuple(dst.shape)} needs unit column "
                         f"strides and a destination at least as large")


def _launch(src, dst, bias=None, activation="none", residual=None):
    (R, C), (RP, CP) = src.shape, dst.shape
    wide = max(RP * CP, R * src.stride(0), RP * dst.stride(0)) + BLOCK * CP >= INT32_LIMIT
    epilogue = bias is not None or activation != "none" or residual is not None
    res = residual if residual is not None else dst
    _pass[(triton.cdiv(RP * CP, BLOCK),)](
        src, dst, R, RP, src.stride(0), dst.stride(0),
        bias if bias is not None else dst, res, res.stride(0), res.stride(1),
        C=C, CP=CP, BLOCK=BLOCK, WIDE=wide, EPILOGUE=epilogue, HAS_BIAS=bias is not None,
        ACTIVATION=activation, HAS_RESIDUAL=residual is not None, num_warps=4)
    return dst


def copy_rows(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Copy src [R, C] into dst [RP, CP] (RP >= R, CP >= C), zeros past src's edges; both with
    unit column stride. Returns dst."""
    _check(src, dst, "copy_rows")
    return _launch(src, dst)


def epilogue_pass(src: torch.Tensor, dst: torch.Tensor, bias=None, activation: str = "none",
                  residual=None) -> torch.Tensor:
    """dst = activation(src + bias[n]) + residual[m, n], in fp32 and rounded once; src and dst the
    same shape (dst may be src: in place), unit column strides, any row pitch. Returns dst."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"epilogue_pass: unknown activation {activation!r} (one of {ACTIVATIONS})")
    _check(src, dst, "epilogue_pass")
    if tuple(src.shape) != tuple(dst.shape):
        raise ValueError(f"epilogue_pass: {tuple(src.shape)} into {tuple(dst.shape)}: the epilogue "
                         f"maps a product onto an output of its own shape")
    return _launch(src, dst, bias, activation, residual)
