"""LayerNorm and RMSNorm over the last dimension, forward and backward, as Triton templates.

  layer_norm: y = (x - mean) * rstd * w + b        rstd = 1 / sqrt(var + eps)
  rms_norm:   y = x * rstd * w                     rstd = 1 / sqrt(mean(x^2) + eps)
One forward and one backward template serve both (RMS is a constexpr). Switches:
  LOOPED   False: the row sits in registers (BLOCK >= the row), statistics in one pass.
           True:  the row is walked in BLOCK-wide steps: the forward merges per-block mean and
                  squared deviations (Chan's parallel update, as stable as two passes) and then
                  normalises in a second loop; the backward sums its two row dot products in a
                  first loop and writes dx in a second.
  BLOCK    columns held at once.
  ROWS     forward: rows per program, held as a [ROWS, BLOCK] tile.
  ROWS_PER_PROGRAM   backward: rows one program walks, summing its share of dweight/dbias in
           fp32 (in registers, or in its own row of the partial buffer when LOOPED); the
           programs' partial rows are then summed by torch (programs x cols fp32, no atomics).
  num_warps / num_stages.

Outputs of the KernelSpecs. Forward: y (the spec's launch does not store mean/rstd, as in
inference; `layer_norm(..., return_stats=True)` does). Backward: the spec is defined around dx,
which the tuner verifies; the same launch also computes dweight (and dbias) into buffers of its
own, so its timing covers the whole backward, and tests/test_norms.py checks them directly.
dweight is a sum over all rows, roughly sqrt(rows) larger than dx, so packing it into one
half-precision output would make the tuner's per-dtype tolerance reject correct kernels.
"""
from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.spec import DTYPES, KernelSpec, check_device, element_size

EPS = 1e-5


class NormProblem(BaseModel):
    """rows x cols, normalised over cols."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rows: PositiveInt
    cols: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@triton.jit
def norm_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, n_rows, n_cols,
                    stride_x, stride_y, eps, RMS: tl.constexpr, STORE_STATS: tl.constexpr,
                    BLOCK: tl.constexpr, ROWS: tl.constexpr, LOOPED: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    safe = tl.minimum(rows, n_rows - 1).to(tl.int64)  # rows past the end re-read the last one
    x_rows = x_ptr + safe[:, None] * stride_x
    y_rows = y_ptr + safe[:, None] * stride_y
    cols = tl.arange(0, BLOCK)
    if not LOOPED:
        cmask = cols < n_cols
        x = tl.load(x_rows + cols[None, :], mask=cmask[None, :], other=0.0).to(tl.float32)
        if RMS:
            mean = tl.zeros((ROWS,), tl.float32)
            xc = x
        else:
            mean = tl.sum(x, axis=1) / n_cols
            xc = tl.where(cmask[None, :], x - mean[:, None], 0.0)
        rstd = tl.rsqrt(tl.sum(xc * xc, axis=1) / n_cols + eps)
        y = xc * rstd[:, None] * tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        if not RMS:
            y += tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        tl.store(y_rows + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=row_ok[:, None] & cmask[None, :])
    else:
        mean = tl.zeros((ROWS,), tl.float32)
        m2 = tl.zeros((ROWS,), tl.float32)  # sum of squared deviations (of x itself for RMS)
        for start in range(0, n_cols, BLOCK):
            cmask = (start + cols) < n_cols
            x = tl.load(x_rows + start + cols[None, :], mask=cmask[None, :], other=0.0).to(tl.float32)
            if RMS:
                m2 += tl.sum(x * x, axis=1)
            else:
                cnt = tl.sum(cmask.to(tl.float32), axis=0)
                bmean = tl.sum(x, axis=1) / cnt
                dev = tl.where(cmask[None, :], x - bmean[:, None], 0.0)
                seen = start * 1.0  # every earlier block was full
                delta = bmean - mean
                total = seen + cnt
                mean += delta * (cnt / total)
                m2 += tl.sum(dev * dev, axis=1) + delta * delta * (seen * cnt / total)
        rstd = tl.rsqrt(m2 / n_cols + eps)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            cmask = c < n_cols
            x = tl.load(x_rows + c[None, :], mask=cmask[None, :], other=0.0).to(tl.float32)
            w = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
            y = (x - mean[:, None]) * rstd[:, None] * w[None, :]
            if not RMS:
                y += tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)[None, :]
            tl.store(y_rows + c[None, :], y.to(y_ptr.dtype.element_ty), mask=row_ok[:, None] & cmask[None, :])
    if STORE_STATS:
        if not RMS:
            tl.store(mean_ptr + rows, mean, mask=row_ok)
        tl.store(rstd_ptr + rows, rstd, mask=row_ok)


@triton.jit
def norm_bwd_kernel(dy_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_part_ptr, db_part_ptr,
                    n_rows, n_cols, stride_dy, stride_x, stride_dx,
                    RMS: tl.constexpr, BLOCK: tl.constexpr, ROWS_PER_PROGRAM: tl.constexpr,
                    LOOPED: tl.constexpr):
    pid = tl.program_id(0)
    first = pid * ROWS_PER_PROGRAM
    n_mine = tl.minimum(ROWS_PER_PROGRAM, n_rows - first)
    # Advance the bases in int64 once; in-program offsets then stay small.
    first64 = first.to(tl.int64)
    dy_ptr += first64 * stride_dy
    x_ptr += first64 * stride_x
    dx_ptr += first64 * stride_dx
    dw_part_ptr += pid.to(tl.int64) * n_cols
    db_part_ptr += pid.to(tl.int64) * n_cols
    cols = tl.arange(0, BLOCK)
    if not LOOPED:
        cmask = cols < n_cols
        w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
        dw_acc = tl.zeros((BLOCK,), tl.float32)
        db_acc = tl.zeros((BLOCK,), tl.float32)
        for r in range(0, n_mine):
            x = tl.load(x_ptr + r * stride_x + cols, mask=cmask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + r * stride_dy + cols, mask=cmask, other=0.0).to(tl.float32)
            rstd = tl.load(rstd_ptr + first + r)
            if RMS:
                xhat = x * rstd
            else:
                xhat = tl.where(cmask, (x - tl.load(mean_ptr + first + r)) * rstd, 0.0)
            wdy = w * dy
            c1 = tl.sum(xhat * wdy, axis=0) / n_cols
            if RMS:
                dx = (wdy - xhat * c1) * rstd
            else:
                dx = (wdy - (xhat * c1 + tl.sum(wdy, axis=0) / n_cols)) * rstd
            tl.store(dx_ptr + r * stride_dx + cols, dx.to(dx_ptr.dtype.element_ty), mask=cmask)
            dw_acc += dy * xhat
            db_acc += dy
        tl.store(dw_part_ptr + cols, dw_acc, mask=cmask)
        if not RMS:
            tl.store(db_part_ptr + cols, db_acc, mask=cmask)
    else:
        for r in range(0, n_mine):
            rstd = tl.load(rstd_ptr + first + r)
            mean = 0.0
            if not RMS:
                mean = tl.load(mean_ptr + first + r)
            s1 = tl.zeros((BLOCK,), tl.float32)  # lane sums of xhat * w * dy, then of w * dy
            s2 = tl.zeros((BLOCK,), tl.float32)
            for start in range(0, n_cols, BLOCK):
                c = start + cols
                cmask = c < n_cols
                x = tl.load(x_ptr + r * stride_x + c, mask=cmask, other=0.0).to(tl.float32)
                dy = tl.load(dy_ptr + r * stride_dy + c, mask=cmask, other=0.0).to(tl.float32)
                wdy = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32) * dy
                s1 += (x - mean) * rstd * wdy
                s2 += wdy
            c1 = tl.sum(s1, axis=0) / n_cols
            c2 = tl.sum(s2, axis=0) / n_cols
            for start in range(0, n_cols, BLOCK):
                c = start + cols
                cmask = c < n_cols
                x = tl.load(x_ptr + r * stride_x + c, mask=cmask, other=0.0).to(tl.float32)
                dy = tl.load(dy_ptr + r * stride_dy + c, mask=cmask, other=0.0).to(tl.float32)
                wdy = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32) * dy
                xhat = (x - mean) * rstd
                if RMS:
                    dx = (wdy - xhat * c1) * rstd
                else:
                    dx = (wdy - (xhat * c1 + c2)) * rstd
                tl.store(dx_ptr + r * stride_dx + c, dx.to(dx_ptr.dtype.element_ty), mask=cmask)
                # This program's own row of the partial buffers: no other program touches it.
                tl.store(dw_part_ptr + c, tl.load(dw_part_ptr + c, mask=cmask, other=0.0) + dy * xhat, mask=cmask)
                if not RMS:
                    tl.store(db_part_ptr + c, tl.load(db_part_ptr + c, mask=cmask, other=0.0) + dy, mask=cmask)


def default_config(n_cols: int, backward: bool = False) -> dict:
    width = triton.next_power_of_2(max(n_cols, 16))
    cfg = {"LOOPED": width > 8192, "BLOCK": min(width, 4096 if width > 8192 else width),
           "num_warps": 4 if width <= 2048 else 8, "num_stages": 1}
    if backward:
        return {**cfg, "ROWS_PER_PROGRAM": 16}
    return {**cfg, "ROWS": max(1, min(8, 1024 // width))}


def _check_block(cfg, n_cols, op):
    if not cfg["LOOPED"] and cfg["BLOCK"] < n_cols:
        raise ValueError(f"{op}: BLOCK={cfg['BLOCK']} < row length {n_cols} needs LOOPED=True")


def launch_forward(x, w, b, y, cfg, rms: bool, eps: float = EPS, stats=None):
    """y = norm(x); stats=(mean, rstd) fp32 buffers are filled when given (mean unused for RMS)."""
    n_rows, n_cols = x.shape
    _check_block(cfg, n_cols, "rms_norm" if rms else "layer_norm")
    mean, rstd = stats if stats is not None else (y, y)
    return norm_fwd_kernel[(triton.cdiv(n_rows, cfg["ROWS"]),)](
        x, w, b if b is not None else w, y, mean, rstd, n_rows, n_cols, x.stride(0), y.stride(0), eps,
        RMS=rms, STORE_STATS=stats is not None, BLOCK=cfg["BLOCK"], ROWS=cfg["ROWS"],
        LOOPED=bool(cfg["LOOPED"]), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])


def launch_backward(dy, x, w, mean, rstd, dx, cfg, rms: bool):
    """dx written in place; returns (handle, dweight, dbias or None)."""
    n_rows, n_cols = x.shape
    _check_block(cfg, n_cols, "rms_norm_backward" if rms else "layer_norm_backward")
    programs = triton.cdiv(n_rows, cfg["ROWS_PER_PROGRAM"])
    # The looped kernel adds into its partial row, so that buffer starts at zero.
    alloc = torch.zeros if cfg["LOOPED"] else torch.empty
    dw_part = alloc((programs, n_cols), dtype=torch.float32, device=x.device)
    db_part = dw_part if rms else alloc((programs, n_cols), dtype=torch.float32, device=x.device)
    handle = norm_bwd_kernel[(programs,)](
        dy, x, w, rstd if mean is None else mean, rstd, dx, dw_part, db_part, n_rows, n_cols,
        dy.stride(0), x.stride(0), dx.stride(0), RMS=rms, BLOCK=cfg["BLOCK"],
        ROWS_PER_PROGRAM=cfg["ROWS_PER_PROGRAM"], LOOPED=bool(cfg["LOOPED"]),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    dw = dw_part.sum(0).to(w.dtype)
    return handle, dw, None if rms else db_part.sum(0).to(w.dtype)


# ---- public entry points -----------------------------------------------------------------------
def _check(op, x, vectors=(), rows=(), grads=()):
    tensors = (x, *vectors, *rows, *grads)
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(f"{op} takes tensors, got {[type(t).__name__ for t in tensors]}")
    if x.dim() < 1 or x.numel() == 0:
        raise ValueError(f"{op}: x must be a non-empty tensor, got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES.values() or any(t.dtype != x.dtype for t in (*vectors, *grads)):
        raise TypeError(f"{op}: x, weight (and bias, dy) must share one dtype among float16, bfloat16, "
                        f"float32; got {[str(t.dtype) for t in (x, *vectors, *grads)]}")
    n, r = x.shape[-1], x.numel() // x.shape[-1]
    for v in vectors:
        if tuple(v.shape) != (n,):
            raise ValueError(f"{op}: weight/bias must have shape ({n},), got {tuple(v.shape)}")
    for s in rows:
        if s.dtype != torch.float32 or s.numel() != r:
            raise ValueError(f"{op}: mean/rstd must be float32 with one value per row ({r}), "
                             f"got {s.dtype} with {s.numel()}")
    for g in grads:
        if g.shape != x.shape:
            raise ValueError(f"{op}: dy shape {tuple(g.shape)} != x shape {tuple(x.shape)}")
    check_device(op, *tensors)


def _rows(t):
    return t.reshape(-1, t.shape[-1]).contiguous()


def layer_norm(x, weight, bias, eps=EPS, config=None, return_stats=False):
    """LayerNorm over the last dim; with return_stats also the fp32 (mean, rstd) per row."""
    _check("layer_norm", x, (weight, bias))
    x2 = _rows(x)
    y = torch.empty_like(x2)
    stats = (torch.empty(x2.shape[0], device=x.device), torch.empty(x2.shape[0], device=x.device))
    cfg = config or default_config(x2.shape[1])
    launch_forward(x2, weight.contiguous(), bias.contiguous(), y, cfg, False, eps, stats)
    return (y.view(x.shape), *stats) if return_stats else y.view(x.shape)


def rms_norm(x, weight, eps=EPS, config=None, return_stats=False):
    """RMSNorm over the last dim; with return_stats also the fp32 rstd per row."""
    _check("rms_norm", x, (weight,))
    x2 = _rows(x)
    y, rstd = torch.empty_like(x2), torch.empty(x2.shape[0], device=x.device)
    cfg = config or default_config(x2.shape[1])
    launch_forward(x2, weight.contiguous(), None, y, cfg, True, eps, (rstd, rstd))
    return (y.view(x.shape), rstd) if return_stats else y.view(x.shape)


def layer_norm_backward(dy, x, weight, mean, rstd, config=None):
    """(dx, dweight, dbias) from the forward's saved fp32 mean and rstd."""
    _check("layer_norm_backward", x, (weight,), (mean, rstd), (dy,))
    x2, dx = _rows(x), torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _, dw, db = launch_backward(_rows(dy), x2, weight.contiguous(), mean.reshape(-1).contiguous(),
                                rstd.reshape(-1).contiguous(), dx.view(x2.shape),
                                config or default_config(x2.shape[1], backward=True), rms=False)
    return dx, dw, db


def rms_norm_backward(dy, x, weight, rstd, config=None):
    """(dx, dweight) from the forward's saved fp32 rstd."""
    _check("rms_norm_backward", x, (weight,), (rstd,), (dy,))
    x2, dx = _rows(x), torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _, dw, _ = launch_backward(_rows(dy), x2, weight.contiguous(), None, rstd.reshape(-1).contiguous(),
                               dx.view(x2.shape),
                               config or default_config(x2.shape[1], backward=True), rms=True)
    return dx, dw


# ---- problems, references, peers, cost -----------------------------------------------------------
def _make(problem, device, seed, rms, backward):
    gen = torch.Generator(device=device).manual_seed(seed)
    dt, (r, n) = DTYPES[problem.dtype], (problem.rows, problem.cols)
    x = 2 * torch.randn((r, n), generator=gen, device=device) + 1  # an offset, so centring matters
    w = 1 + 0.5 * torch.randn(n, generator=gen, device=device)
    b = 0.5 * torch.randn(n, generator=gen, device=device)
    if not backward:
        return (x.to(dt), w.to(dt)) if rms else (x.to(dt), w.to(dt), b.to(dt))
    dy = torch.randn((r, n), generator=gen, device=device).to(dt)
    xs = x.to(dt).float()
    mean = xs.mean(1)
    rstd = torch.rsqrt((xs * xs if rms else (xs - mean[:, None]) ** 2).mean(1) + EPS)
    return (dy, x.to(dt), w.to(dt), rstd) if rms else (dy, x.to(dt), w.to(dt), mean, rstd)


def reference_forward(x, w, b=None):
    x, w = x.double(), w.double()
    if b is None:
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + EPS) * w
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b.double(), EPS)


def reference_backward(dy, x, w, rms: bool):
    """float64 (dx, dweight, dbias) with statistics recomputed in float64."""
    dy, x, w = dy.double(), x.double(), w.double()
    n = x.shape[-1]
    xc = x if rms else x - x.mean(-1, keepdim=True)
    rstd = torch.rsqrt((xc * xc).mean(-1, keepdim=True) + EPS)
    xhat, wdy = xc * rstd, w * dy
    dx = wdy - xhat * (xhat * wdy).sum(-1, keepdim=True) / n
    if not rms:
        dx = dx - wdy.sum(-1, keepdim=True) / n
    return dx * rstd, (dy * xhat).sum(0), dy.sum(0)


def _aten_stats_dtype(x):
    """The dtype torch's own layer_norm keeps mean/rstd in for x (fp32 on CUDA; x's on the CPU)."""
    return torch.ops.aten.native_layer_norm(x[:1], [x.shape[-1]], None, None, EPS)[1].dtype


def _rms_backward_eager(dy, x, w, rstd):
    """torch's fused RMSNorm backward where this build and device have it, else the composed ops."""
    try:
        return torch.ops.aten._fused_rms_norm_backward(dy, x, [x.shape[-1]], rstd[:, None], w, [True, True])
    except (AttributeError, NotImplementedError, RuntimeError):
        pass
    xhat = x.float() * rstd[:, None]
    wdy = w.float() * dy.float()
    dx = (wdy - xhat * (xhat * wdy).mean(-1, keepdim=True)) * rstd[:, None]
    return dx.to(x.dtype), (dy.float() * xhat).sum(0).to(w.dtype)


def _bytes(p, passes_in, passes_out, vectors):
    e = element_size(p.dtype)
    return float((passes_in + passes_out) * p.rows * p.cols * e + vectors * p.cols * e)


def _spec(name, rms, backward, description):
    def make_inputs(problem, device, seed):
        return _make(problem, device, seed, rms, backward)

    def make_output(problem, inputs):
        return torch.empty_like(inputs[1] if backward else inputs[0])

    def launch(inputs, out, cfg):
        if backward:
            dy, x, w, *stats = inputs
            return launch_backward(dy, x, w, None if rms else stats[0], stats[-1], out, cfg, rms)[0]
        return launch_forward(inputs[0], inputs[1], None if rms else inputs[2], out, cfg, rms)

    def reference(inputs):
        if backward:
            return reference_backward(inputs[0], inputs[1], inputs[2], rms)[0]
        return reference_forward(*inputs)

    def baseline(inputs):
        if not backward:
            x, w, *b = inputs
            f = torch.nn.functional
            return f.rms_norm(x, (x.shape[1],), w, EPS) if rms else f.layer_norm(x, (x.shape[1],), w, b[0], EPS)
        if rms:
            return _rms_backward_eager(*inputs)
        dy, x, w, mean, rstd = inputs
        dt = _aten_stats_dtype(x)
        # bias does not enter the backward; aten only wants a tensor there to size dbias.
        return torch.ops.aten.native_layer_norm_backward(
            dy, x, [x.shape[1]], mean[:, None].to(dt), rstd[:, None].to(dt), w, w, [True, True, True])

    def flops(p):  # per element: centre, square, sum, scale, shift (about twice that backward)
        return float((12 if backward else 6) * p.rows * p.cols)

    def bytes_moved(p):  # x (and dy) in, y (or dx) out; the weight, bias, dweight, dbias vectors
        # forward reads w (and b); backward reads w and writes dw (and db)
        vectors = {(False, False): 2, (True, False): 1, (False, True): 3, (True, True): 2}[(rms, backward)]
        stats = (1 if rms else 2) * 4 * p.rows if backward else 0
        return _bytes(p, 2 if backward else 1, 1, vectors) + stats

    return KernelSpec(name=name, description=description, problem=NormProblem,
                      make_inputs=make_inputs, make_output=make_output, launch=launch,
                      reference=reference, baseline=baseline, flops=flops, bytes_moved=bytes_moved)


LAYER_NORM_FWD = _spec("layer_norm_fwd", False, False,
                       "LayerNorm forward; row in registers or looped, rows per program")
LAYER_NORM_BWD = _spec("layer_norm_bwd", False, True,
                       "LayerNorm backward (spec output dx; dweight, dbias computed too)")
RMS_NORM_FWD = _spec("rms_norm_fwd", True, False, "RMSNorm forward; row in registers or looped, rows per program")
RMS_NORM_BWD = _spec("rms_norm_bwd", True, True, "RMSNorm backward (spec output dx; dweight computed too)")
