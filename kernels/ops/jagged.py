"""Jagged operators: the conversions between jagged [total, D] and padded [B, max_len, D] (each
the other's backward, so both train through our kernels), and the forward-only jagged softmax
and jagged x dense bmm.

Sizes that depend on the offsets' values are arguments (max_len, total), as in fbgemm's jagged
ops: reading them off the offsets is a host sync, which CUDA graphs cannot capture and which
would make every batch's shapes data-dependent for the compiler."""
import torch
from torch import Tensor

from kernelevolve.kernels import jagged as jagged_kernels
from kernelevolve.kernels import jagged_bmm, jagged_softmax as jagged_softmax_kernel
from kernelevolve.kernels import tuned
from kernelevolve.kernels.ops.configs import resolve

OPS = ("jagged_to_padded_dense", "padded_dense_to_jagged", "jagged_softmax", "jagged_dense_bmm")


def _config(kernel, dims, dtype, device, default_fn):
    key = (kernel, *dims.values(), dtype, device)
    return tuned.resolved.get(key) or resolve(key, kernel, dims, dtype, device, default_fn())


def _check_offsets(op, offsets):
    torch._check(offsets.dim() == 1 and offsets.shape[0] >= 1, lambda: f"{op}: offsets must be 1-D [B + 1]")


# ---- conversions ---------------------------------------------------------------------------------
@torch.library.custom_op("kernelevolve::jagged_to_padded_dense", mutates_args=())
def jagged_to_padded_dense(values: Tensor, offsets: Tensor, max_len: int, padding_value: float) -> Tensor:
    """[B, max_len, D]; positions past a sequence's end hold padding_value, longer ones are cut."""
    B, D = offsets.shape[0] - 1, values.shape[1]
    out = torch.empty((B, max_len, D), dtype=values.dtype, device=values.device)
    if out.numel():
        cfg = _config("jagged_to_padded_dense", {"batch": B, "max_len": max_len, "dim": D}, values.dtype,
                      values.device, lambda: jagged_kernels.default_copy_config(D))
        jagged_kernels._launch_copy(values.contiguous(), offsets, out, cfg, True, padding_value)
    return out


@jagged_to_padded_dense.register_fake
def _(values, offsets, max_len, padding_value):
    _check_offsets("jagged_to_padded_dense", offsets)
    torch._check(values.dim() == 2, lambda: "jagged_to_padded_dense: values must be [total, D]")
    return values.new_empty((offsets.shape[0] - 1, max_len, values.shape[1]))


@torch.library.custom_op("kernelevolve::padded_dense_to_jagged", mutates_args=())
def padded_dense_to_jagged(dense: Tensor, offsets: Tensor, total: int) -> Tensor:
    """values [total, D] (total = offsets[-1]) from dense [B, max_len, D]."""
    B, max_len, D = dense.shape
    out = torch.empty((total, D), dtype=dense.dtype, device=dense.device)
    if out.numel():
        cfg = _config("padded_dense_to_jagged", {"batch": B, "max_len": max_len, "dim": D}, dense.dtype,
                      dense.device, lambda: jagged_kernels.default_copy_config(D))
        jagged_kernels._launch_copy(out, offsets, dense.contiguous(), cfg, False)
    return out


@padded_dense_to_jagged.register_fake
def _(dense, offsets, total):
    _check_offsets("padded_dense_to_jagged", offsets)
    torch._check(dense.dim() == 3 and dense.shape[0] == offsets.shape[0] - 1,
                 lambda: "padded_dense_to_jagged: dense must be [B, max_len, D] for B + 1 offsets")
    return dense.new_empty((total, dense.shape[2]))


def _to_padded_setup(ctx, inputs, output):
    values, offsets, _, _ = inputs
    ctx.total = values.shape[0]
    ctx.save_for_backward(offsets)


def _to_padded_backward(ctx, grad):
    (offsets,) = ctx.saved_tensors
    return padded_dense_to_jagged(grad, offsets, ctx.total), None, None, None


def _to_jagged_setup(ctx, inputs, output):
    dense, offsets, _ = inputs
    ctx.max_len = dense.shape[1]
    ctx.save_for_backward(offsets)


def _to_jagged_backward(ctx, grad):
    (offsets,) = ctx.saved_tensors  # padding positions get no gradient: zeros
    return jagged_to_padded_dense(grad, offsets, ctx.max_len, 0.0), None, None


jagged_to_padded_dense.register_autograd(_to_padded_backward, setup_context=_to_padded_setup)
padded_dense_to_jagged.register_autograd(_to_jagged_backward, setup_context=_to_jagged_setup)


# ---- forward only --------------------------------------------------------------------------------
@torch.library.custom_op("kernelevolve::jagged_softmax", mutates_args=())
def jagged_softmax(values: Tensor, offsets: Tensor, max_len: int) -> Tensor:
    """Softmax over each sequence's positions, column by column; max_len bounds every length."""
    out = torch.empty_like(values)
    if values.numel():
        B, D = offsets.shape[0] - 1, values.shape[1]
        cfg = _config("jagged_softmax", {"batch": B, "max_len": max_len, "dim": D}, values.dtype, values.device,
                      lambda: jagged_softmax_kernel.default_softmax_config(max_len, D))
        jagged_softmax_kernel.launch_softmax((values.contiguous(), offsets, max(1, max_len)), out, cfg)
    return out


@jagged_softmax.register_fake
def _(values, offsets, max_len):
    _check_offsets("jagged_softmax", offsets)
    return torch.empty_like(values)


@torch.library.custom_op("kernelevolve::jagged_dense_bmm", mutates_args=())
def jagged_dense_bmm(x: Tensor, offsets: Tensor, y: Tensor, max_len: int) -> Tensor:
    """out [total, N]: each sequence's rows of x [total, K] times its own y[b] [K, N]."""
    out = torch.empty((x.shape[0], y.shape[2]), dtype=x.dtype, device=x.device)
    if out.numel():
        B, K, N = y.shape
        cfg = _config("jagged_dense_bmm", {"batch": B, "max_len": max_len, "k": K, "n": N}, x.dtype, x.device,
                      lambda: dict(jagged_bmm.BMM_DEFAULT))
        jagged_bmm.launch_bmm((x.contiguous(), offsets, y.contiguous(), max(1, max_len)), out, cfg)
    return out


@jagged_dense_bmm.register_fake
def _(x, offsets, y, max_len):
    _check_offsets("jagged_dense_bmm", offsets)
    torch._check(x.dim() == 2 and y.dim() == 3 and y.shape[0] == offsets.shape[0] - 1 and y.shape[1] == x.shape[1],
                 lambda: "jagged_dense_bmm: x [total, K], y [B, K, N]")
    return x.new_empty((x.shape[0], y.shape[2]))
