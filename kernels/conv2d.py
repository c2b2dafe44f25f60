"""conv2d, NHWC (channels_last), as an implicit GEMM: no im2col buffer is ever written.

The GEMM it is: rows = output pixels (N*P*Q), columns = output channels (C_out), reduction =
(r, s, c) over the filter window and the input channels (R*S*C_in). A program owns a
BLOCK_M x BLOCK_N tile of the output; for each filter tap (r, s) it gathers the input pixels that
tap reads (zero outside the padded image) as the A tile, straight from x, and the weight slice
as the B tile. The weight is read in torch's channels_last layout [C_out, R, S, C_in]: for one
output channel the whole reduction axis is contiguous, i.e. B is "K-major".

Switches:
  BLOCK_M/N/K   output pixels x output channels per tile, input channels per K step
  GROUP_M       L2 swizzle of the tiles (as in kernels/gemm_tiles.py)
  FLAT_K        one flat K loop over (r, s, channel block), decoded with a division per step,
                which Triton software-pipelines end to end; versus nested r / s / channel loops,
                where only the short channel loop is pipelined (better when C_in is large)
  TMA           weight tiles by tensor descriptor over [C_out, R*S*C_in] (Hopper in the space);
                the activations are a gather and always use pointer loads
  num_warps / num_stages, and AMD's launch options when the config has them
Set by the launcher: EVEN_C (C_in % BLOCK_K == 0: no channel mask on the loads).

Reference: torch.nn.functional.conv2d in float64. Peer: F.conv2d on channels_last tensors (cuDNN).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt

from kernels.gemm_tiles import launch_options, tile_coords, tma_allocator, tma_compatible
from kernels.spec import DTYPES, KernelSpec, element_size


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
def _tap(acc, x_ptr, w_ptr, w_desc, n, h0, w0, m_ok, offs_co, r, s, c0, H, W, C, C_out, S,
         stride_xn, stride_xh, stride_xw, stride_xc, stride_wo, stride_wr, stride_ws, stride_wc,
         co_start, DIL: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_C: tl.constexpr,
         TMA: tl.constexpr):
    """acc += x[pixels shifted by tap (r, s), channels c0:c0+BLOCK_K] @ w[tap, channels, out]."""
    offs_c = c0 + tl.arange(0, BLOCK_K)
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
    return tl.dot(a, b, acc)


@triton.jit
def conv2d_kernel(x_ptr, w_ptr, y_ptr, NB, H, W, C, C_out, P, Q, R, S,
                  stride_xn, stride_xc, stride_xh, stride_xw,
                  stride_wo, stride_wc, stride_wr, stride_ws,
                  stride_yn, stride_yc, stride_yp, stride_yq,
                  STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  GROUP_M: tl.constexpr, FLAT_K: tl.constexpr, TMA: tl.constexpr,
                  EVEN_C: tl.constexpr):
    M = NB * P * Q
    pid_m, pid_n = tile_coords(tl.program_id(0), M, C_out, BLOCK_M, BLOCK_N, GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < M
    n = offs_m // (P * Q)  # output pixel -> (image, row, column)
    pq = offs_m % (P * Q)
    h0 = (pq // Q) * STRIDE - PAD
    w0 = (pq % Q) * STRIDE - PAD
    # columns past C_out wrap around (modulo) so the weight loads stay unmasked; the store masks
    offs_co = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % C_out
    w_desc = None
    if TMA:
        w_desc = tl.make_tensor_descriptor(w_ptr, shape=[C_out, R * S * C], strides=[stride_wo, 1],
                                           block_shape=[BLOCK_N, BLOCK_K])
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    c_blocks = tl.cdiv(C, BLOCK_K)
    if FLAT_K:
        for kk in range(0, R * S * c_blocks):
            tap = kk // c_blocks
            acc = _tap(acc, x_ptr, w_ptr, w_desc, n, h0, w0, m_ok, offs_co, tap // S, tap % S,
                       (kk % c_blocks) * BLOCK_K, H, W, C, C_out, S, stride_xn, stride_xh,
                       stride_xw, stride_xc, stride_wo, stride_wr, stride_ws, stride_wc,
                       pid_n * BLOCK_N, DIL, BLOCK_K, EVEN_C, TMA)
    else:
        for r in range(0, R):
            for s in range(0, S):
                for cb in range(0, c_blocks):
                    acc = _tap(acc, x_ptr, w_ptr, w_desc, n, h0, w0, m_ok, offs_co, r, s,
                               cb * BLOCK_K, H, W, C, C_out, S, stride_xn, stride_xh, stride_xw,
                               stride_xc, stride_wo, stride_wr, stride_ws, stride_wc,
                               pid_n * BLOCK_N, DIL, BLOCK_K, EVEN_C, TMA)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    y_ptrs = y_ptr + (n * stride_yn + (pq // Q) * stride_yp + (pq % Q) * stride_yq)[:, None] \
        + offs_n[None, :] * stride_yc
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & (offs_n[None, :] < C_out))


DEFAULT_CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8, "FLAT_K": True,
                  "TMA": False, "num_warps": 4, "num_stages": 3}


def launch(inputs, out: torch.Tensor, config) -> object:
    """x [N, C_in, H, W] and weight [C_out, C_in, R, S], any strides (channels_last is the fast
    one); out [N, C_out, P, Q], any strides. Inputs carry (stride, padding, dilation)."""
    x, w, (stride, padding, dilation) = inputs
    cfg = {"FLAT_K": True, "TMA": False, **config}
    NB, C, H, W = x.shape
    C_out, _, R, S = w.shape
    P, Q = out.shape[2], out.shape[3]
    if cfg["TMA"]:
        # the descriptor views the weight as [C_out, R*S*C_in] with the reduction axis contiguous
        w2d = w.permute(0, 2, 3, 1).reshape(C_out, R * S * C)
        why = tma_compatible(w2d) if w2d.data_ptr() == w.data_ptr() and w2d.stride(1) == 1 else \
            "weight must be channels_last (its [C_out, R*S*C_in] view contiguous)"
        if why:
            raise ValueError(f"TMA=True cannot read the weight {tuple(w.shape)}: {why}")
        tma_allocator(x.device)
    grid = (triton.cdiv(NB * P * Q, cfg["BLOCK_M"]) * triton.cdiv(C_out, cfg["BLOCK_N"]),)
    return conv2d_kernel[grid](
        x, w, out, NB, H, W, C, C_out, P, Q, R, S, *x.stride(), *w.stride(), *out.stride(),
        STRIDE=stride, PAD=padding, DIL=dilation,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
        GROUP_M=cfg["GROUP_M"], FLAT_K=bool(cfg["FLAT_K"]), TMA=bool(cfg["TMA"]),
        EVEN_C=C % cfg["BLOCK_K"] == 0, **launch_options(cfg),
    )


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
    description="conv2d NHWC as an implicit GEMM: tiles, GROUP_M, flat or nested K loop, TMA weights",
    problem=Conv2dProblem,
    make_inputs=make_inputs,
    make_output=make_output,
    launch=launch,
    reference=reference,
    baseline=baseline,
    flops=flops,
    bytes_moved=bytes_moved,
)
