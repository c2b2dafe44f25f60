"""Row softmax and flash attention (forward) as operators."""
import torch
from torch import Tensor

from kernelevolve.kernels import attention as attention_kernel
from kernelevolve.kernels import softmax as softmax_kernel
from kernelevolve.kernels import tuned
from kernelevolve.kernels.ops.configs import resolve

OPS = ("softmax", "attention")


@torch.library.custom_op("kernelevolve::softmax", mutates_args=())
def softmax(x: Tensor) -> Tensor:
    """Softmax over the last dimension (fp32 arithmetic, x's dtype out)."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.empty_like(x2)
    if x2.numel():
        rows, cols = x2.shape
        key = ("softmax", rows, cols, x.dtype, x.device)
        cfg = tuned.resolved.get(key) or resolve(key, "softmax", {"rows": rows, "cols": cols}, x.dtype, x.device,
                                                 softmax_kernel.default_config(cols))
        softmax_kernel.launch((x2,), out, cfg)
    return out.view(x.shape)


@softmax.register_fake
def _(x):
    torch._check(x.dim() >= 1, lambda: "softmax: x must have at least one dimension")
    return torch.empty_like(x)


def _softmax_setup(ctx, inputs, output):
    ctx.save_for_backward(output)


def _softmax_backward(ctx, grad):
    """dx = y (g - sum(g y)): no backward kernel of ours, torch ops the compiler fuses."""
    (y,) = ctx.saved_tensors
    yf = y.float()
    gf = grad.float()
    return (yf * (gf - (gf * yf).sum(-1, keepdim=True))).to(y.dtype)


softmax.register_autograd(_softmax_backward, setup_context=_softmax_setup)


@torch.library.custom_op("kernelevolve::attention", mutates_args=())
def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """softmax(q k^T / sqrt(head_dim), causal mask if asked) v for [B, H, S, head_dim] (64 or
    128). Forward only: no backward kernel exists, so no autograd formula is registered."""
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if q.numel():
        B, H, S, Dh = q.shape
        key = ("attention", B, H, S, Dh, causal, q.dtype, q.device)
        cfg = tuned.resolved.get(key) or resolve(
            key, "attention", {"batch": B, "heads": H, "seq_len": S, "head_dim": Dh}, q.dtype, q.device,
            attention_kernel.DEFAULT_CONFIG, extras={"causal": causal})
        attention_kernel.launch((q.contiguous(), k.contiguous(), v.contiguous(), causal), out, cfg)
    return out


@attention.register_fake
def _(q, k, v, causal):
    torch._check(q.dim() == 4 and q.shape == k.shape and q.shape == v.shape,
                 lambda: "attention: q, k, v must be [B, H, S, head_dim] of one shape")
    torch._check(q.shape[3] in (64, 128), lambda: "attention: head_dim must be 64 or 128")
    return torch.empty_like(q)
