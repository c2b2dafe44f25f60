"""The GEMM family as operators: matmul, bmm, and linear (the fused GEMM + bias + activation +
residual of kernels/gemm_epilogue.py). Their backwards are GEMMs again, run by these same ops
(so the tuned table's matmul/bmm entries drive them too); the activation's derivative and the
bias's sum are torch ops that the compiler fuses.

matmul, bmm and linear run whatever the tuned table dispatches to for their call: a Triton config,
or the vendor path ({"IMPL": "vendor"}: torch.mm / torch.bmm / torch.addmm, kernels/gemm_vendor.py)
where that was the fastest correct candidate of the study (their launchers take both)."""
from typing import Optional

import torch
from torch import Tensor

from kernelevolve.kernels import bmm as bmm_kernel
from kernelevolve.kernels import matmul as matmul_kernel
from kernelevolve.kernels import tuned
from kernelevolve.kernels.gemm_tiles import ACTIVATIONS, TMA_ALIGN_BYTES, output_for, tma_compatible
from kernelevolve.kernels.matmul import Epilogue, launch_gemm
from kernelevolve.kernels.ops.configs import layout, resolve

OPS = ("matmul", "bmm", "linear")


def _gemm_config(kernel, a, b, extras=None):
    M, K = a.shape
    N = b.shape[1]
    key = (kernel, M, N, K, a.dtype, a.device, layout(a, b), tuple((extras or {}).items()))
    return tuned.resolved.get(key) or resolve(key, kernel, {"M": M, "N": N, "K": K}, a.dtype, a.device,
                                              matmul_kernel.DEFAULT_CONFIG,
                                              lambda cfg: matmul_kernel.tma_usable(cfg, a, b), extras)


# ---- matmul ------------------------------------------------------------------------------------
@torch.library.custom_op("kernelevolve::matmul", mutates_args=())
def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a [M, K] @ b [K, N]; either may be a transposed view (read in place, no copy)."""
    out = output_for(a.shape[0], b.shape[1], a)  # rows padded where misaligned
    if out.numel():  # (an empty grid is not a launch Triton takes)
        launch_gemm(a, b, out, _gemm_config("matmul", a, b))
    return out


@matmul.register_fake
def _(a, b):
    torch._check(a.dim() == 2 and b.dim() == 2 and a.shape[1] == b.shape[0],
                 lambda: f"matmul: [M, K] @ [K, N], got {tuple(a.shape)} and {tuple(b.shape)}")
    torch._check(a.dtype == b.dtype, lambda: f"matmul: one dtype, got {a.dtype} and {b.dtype}")
    return output_for(a.shape[0], b.shape[1], a)  # the real op's layout, strides too


def _matmul_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _matmul_backward(ctx, grad):
    a, b = ctx.saved_tensors
    da = matmul(grad, b.t()) if ctx.needs_input_grad[0] else None
    db = matmul(a.t(), grad) if ctx.needs_input_grad[1] else None
    return da, db


matmul.register_autograd(_matmul_backward, setup_context=_matmul_setup)


# ---- bmm ---------------------------------------------------------------------------------------
def _bmm_usable(a, b, n):
    out_ok = (n * a.element_size()) % TMA_ALIGN_BYTES == 0

    def usable(cfg):
        return not cfg.get("TMA") or (out_ok and all(
            not tma_compatible(t[0]) and t.stride(-1) == 1
            and (t.stride(0) * t.element_size()) % TMA_ALIGN_BYTES == 0 for t in (a, b)))
    return usable


@torch.library.custom_op("kernelevolve::bmm", mutates_args=())
def bmm(a: Tensor, b: Tensor) -> Tensor:
    """a [B, M, K] @ b [B, K, N], any strides."""
    B, M, K = a.shape
    N = b.shape[2]
    out = torch.empty((B, M, N), dtype=a.dtype, device=a.device)
    if not out.numel():
        return out
    key = ("bmm", B, M, N, K, a.dtype, a.device, layout(a, b))
    cfg = tuned.resolved.get(key) or resolve(key, "bmm", {"B": B, "M": M, "N": N, "K": K}, a.dtype, a.device,
                                             bmm_kernel.DEFAULT_CONFIG, _bmm_usable(a, b, N))
    bmm_kernel.launch((a, b), out, cfg)
    return out


@bmm.register_fake
def _(a, b):
    torch._check(a.dim() == 3 and b.dim() == 3 and a.shape[0] == b.shape[0] and a.shape[2] == b.shape[1],
                 lambda: f"bmm: [B, M, K] @ [B, K, N], got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.new_empty((a.shape[0], a.shape[1], b.shape[2]))


def _bmm_backward(ctx, grad):
    a, b = ctx.saved_tensors
    da = bmm(grad, b.transpose(1, 2)) if ctx.needs_input_grad[0] else None
    db = bmm(a.transpose(1, 2), grad) if ctx.needs_input_grad[1] else None
    return da, db


bmm.register_autograd(_bmm_backward, setup_context=_matmul_setup)


# ---- linear: act(x @ wt + bias) + residual -------------------------------------------------------
@torch.library.custom_op("kernelevolve::linear", mutates_args=())
def linear(x: Tensor, wt: Tensor, bias: Optional[Tensor], residual: Optional[Tensor], activation: str) -> Tensor:
    """act(x [M, K] @ wt [K, N] + bias [N]) + residual [M, N]; wt is the layer's weight transposed
    (stored so, or a .t() view of an [N, K] weight). activation: none, relu, gelu (erf), silu."""
    out = output_for(x.shape[0], wt.shape[1], x)  # rows padded where misaligned
    if not out.numel():
        return out
    # extras: the problem fields a tuned gemm_epilogue entry carries beside its sizes
    cfg = _gemm_config("gemm_epilogue", x, wt, {"activation": activation, "bias": bias is not None,
                                                "residual": residual is not None})
    launch_gemm(x, wt, out, cfg, Epilogue(bias=bias, activation=activation, residual=residual))
    return out


@linear.register_fake
def _(x, wt, bias, residual, activation):
    torch._check(activation in ACTIVATIONS, lambda: f"linear: activation must be one of {ACTIVATIONS}")
    torch._check(x.dim() == 2 and wt.dim() == 2 and x.shape[1] == wt.shape[0],
                 lambda: f"linear: x [M, K] @ wt [K, N], got {tuple(x.shape)} and {tuple(wt.shape)}")
    torch._check(bias is None or tuple(bias.shape) == (wt.shape[1],), lambda: "linear: bias must be [N]")
    torch._check(residual is None or residual.shape == (x.shape[0], wt.shape[1]),
                 lambda: "linear: residual must be [M, N]")
    return output_for(x.shape[0], wt.shape[1], x)  # the real op's layout, strides too


def _linear_setup(ctx, inputs, output):
    x, wt, bias, residual, activation = inputs
    ctx.activation, ctx.has_bias, ctx.has_residual = activation, bias is not None, residual is not None
    # relu's derivative is read off the output (relu(z) = output - residual), so z is not kept;
    # gelu and silu recompute z in the backward, one GEMM, instead of storing an [M, N] tensor.
    ctx.save_for_backward(x, wt, bias, residual, output if activation == "relu" else None)


def _activation_grad(ctx, grad, x, wt, bias, residual, output):
    """dL/dz for z = x @ wt + bias."""
    if ctx.activation == "none":
        return grad
    if ctx.activation == "relu":
        kept = output if residual is None else output - residual
        return torch.where(kept > 0, grad, torch.zeros_like(grad))
    z = linear(x, wt, bias, None, "none").float()
    if ctx.activation == "silu":
        s = torch.sigmoid(z)
        return (grad.float() * s * (1 + z * (1 - s))).to(grad.dtype)
    cdf = 0.5 * (1 + torch.erf(z * 0.7071067811865476))  # gelu (erf): Phi(z) + z phi(z)
    pdf = torch.exp(-0.5 * z * z) * 0.3989422804014327
    return (grad.float() * (cdf + z * pdf)).to(grad.dtype)


def _linear_backward(ctx, grad):
    x, wt, bias, residual, output = ctx.saved_tensors
    gz = _activation_grad(ctx, grad, x, wt, bias, residual, output)
    need = ctx.needs_input_grad
    dx = matmul(gz, wt.t()) if need[0] else None
    dwt = matmul(x.t(), gz) if need[1] else None
    dbias = gz.sum(0) if ctx.has_bias and need[2] else None
    dres = grad if ctx.has_residual and need[3] else None
    return dx, dwt, dbias, dres, None


linear.register_autograd(_linear_backward, setup_context=_linear_setup)
