"""LayerNorm and RMSNorm over the last dimension as operators, with our backward kernels.

The forward ops return the fp32 statistics beside y (as aten's native_layer_norm does): the
backward kernel reads them instead of recomputing them. Gradients flowing into the statistics
are ignored (they are by-products, like aten's)."""
import torch
from torch import Tensor

from kernelevolve.kernels import norms
from kernelevolve.kernels import tuned
from kernelevolve.kernels.ops.configs import resolve

OPS = ("layer_norm", "rms_norm", "layer_norm_backward", "rms_norm_backward")


def _config(kernel, rows, cols, dtype, device, backward):
    key = (kernel, rows, cols, dtype, device)
    return tuned.resolved.get(key) or resolve(key, kernel, {"rows": rows, "cols": cols}, dtype, device,
                                              norms.default_config(cols, backward))


def _check(op, x, *vectors):
    torch._check(x.dim() >= 1 and all(v.dim() == 1 and v.shape[0] == x.shape[-1] for v in vectors),
                 lambda: f"{op}: weight (and bias) must be [{x.shape[-1]}] for x of shape {tuple(x.shape)}")


def _rows_of(x):
    return x.numel() // x.shape[-1]


# ---- forward -------------------------------------------------------------------------------------
@torch.library.custom_op("kernelevolve::layer_norm", mutates_args=())
def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(y, mean, rstd): y like x; mean and rstd fp32, one per row (x's leading dims flattened)."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    y = torch.empty_like(x2)
    mean = torch.empty(x2.shape[0], dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    cfg = _config("layer_norm_fwd", x2.shape[0], x2.shape[1], x.dtype, x.device, False)
    norms.launch_forward(x2, weight.contiguous(), bias.contiguous(), y, cfg, False, eps, (mean, rstd))
    return y.view(x.shape), mean, rstd


@layer_norm.register_fake
def _(x, weight, bias, eps):
    _check("layer_norm", x, weight, bias)
    rows = _rows_of(x)
    return torch.empty_like(x), x.new_empty((rows,), dtype=torch.float32), x.new_empty((rows,), dtype=torch.float32)


@torch.library.custom_op("kernelevolve::rms_norm", mutates_args=())
def rms_norm(x: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(y, rstd): y like x; rstd fp32, one per row."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    y = torch.empty_like(x2)
    rstd = torch.empty(x2.shape[0], dtype=torch.float32, device=x.device)
    cfg = _config("rms_norm_fwd", x2.shape[0], x2.shape[1], x.dtype, x.device, False)
    norms.launch_forward(x2, weight.contiguous(), None, y, cfg, True, eps, (rstd, rstd))
    return y.view(x.shape), rstd


@rms_norm.register_fake
def _(x, weight, eps):
    _check("rms_norm", x, weight)
    return torch.empty_like(x), x.new_empty((_rows_of(x),), dtype=torch.float32)


# ---- backward ------------------------------------------------------------------------------------
@torch.library.custom_op("kernelevolve::layer_norm_backward", mutates_args=())
def layer_norm_backward(dy: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) from the forward's saved fp32 mean and rstd."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    dx = torch.empty_like(x2)
    cfg = _config("layer_norm_bwd", x2.shape[0], x2.shape[1], x.dtype, x.device, True)
    _, dw, db = norms.launch_backward(dy.reshape(x2.shape).contiguous(), x2, weight.contiguous(), mean, rstd, dx,
                                      cfg, rms=False)
    return dx.view(x.shape), dw, db


@layer_norm_backward.register_fake
def _(dy, x, weight, mean, rstd):
    _check("layer_norm_backward", x, weight)
    torch._check(dy.shape == x.shape, lambda: "layer_norm_backward: dy must have x's shape")
    return torch.empty_like(x), torch.empty_like(weight), torch.empty_like(weight)


@torch.library.custom_op("kernelevolve::rms_norm_backward", mutates_args=())
def rms_norm_backward(dy: Tensor, x: Tensor, weight: Tensor, rstd: Tensor) -> tuple[Tensor, Tensor]:
    """(dx, dweight) from the forward's saved fp32 rstd."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    dx = torch.empty_like(x2)
    cfg = _config("rms_norm_bwd", x2.shape[0], x2.shape[1], x.dtype, x.device, True)
    _, dw, _ = norms.launch_backward(dy.reshape(x2.shape).contiguous(), x2, weight.contiguous(), None, rstd, dx,
                                     cfg, rms=True)
    return dx.view(x.shape), dw


@rms_norm_backward.register_fake
def _(dy, x, weight, rstd):
    _check("rms_norm_backward", x, weight)
    torch._check(dy.shape == x.shape, lambda: "rms_norm_backward: dy must have x's shape")
    return torch.empty_like(x), torch.empty_like(weight)


# ---- autograd ------------------------------------------------------------------------------------
def _layer_setup(ctx, inputs, output):
    x, weight, _, _ = inputs
    ctx.save_for_backward(x, weight, output[1], output[2])


def _layer_backward(ctx, dy, _dmean, _drstd):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = layer_norm_backward(dy, x, weight, mean, rstd)
    return dx, dw, db, None


def _rms_setup(ctx, inputs, output):
    x, weight, _ = inputs
    ctx.save_for_backward(x, weight, output[1])


def _rms_backward(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = rms_norm_backward(dy, x, weight, rstd)
    return dx, dw, None


layer_norm.register_autograd(_layer_backward, setup_context=_layer_setup)
rms_norm.register_autograd(_rms_backward, setup_context=_rms_setup)
