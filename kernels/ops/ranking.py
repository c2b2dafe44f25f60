"""The ranking-model operators: embedding bags (one table, or all tables in one table-batched
launch) with their backward kernel, and the DLRM dot interaction.

Bags are fbgemm-style (indices, offsets of B+1 entries, the last = len(indices)). The backward
of a bag is a dense table gradient [num_rows, dim] (what F.embedding_bag gives with
sparse=False), made by our backward kernel: sorted segments or atomics, as the tuned config says.
"""
from typing import Optional

import torch
from torch import Tensor

from kernelevolve.kernels import embedding_bag as eb
from kernelevolve.kernels import interaction
from kernelevolve.kernels import tuned
from kernelevolve.kernels.ops.configs import resolve

OPS = ("embedding_bag", "embedding_bag_backward", "embedding_bag_tables", "dot_interaction",
       "dot_interaction_concat")


def _bag_config(kernel, default, n_bags, n_ids, num_rows, dim, mode, dtype, device):
    key = (kernel, n_bags, n_ids, num_rows, dim, mode, dtype, device)
    cfg = tuned.resolved.get(key)
    if cfg is None:  # the entry point's lookup key (kernels/embedding_bag.py: _bag_dims)
        dims = {"num_bags": max(1, n_bags), "avg_bag_len": max(1, round(n_ids / max(1, n_bags))), "dim": dim,
                "num_rows": num_rows}
        cfg = resolve(key, kernel, dims, dtype, device, default, extras={"mode": mode})
    return cfg


def _check_mode(mode):
    torch._check(mode in eb.MODES, lambda: f"embedding bags: mode must be 'sum' or 'mean', got {mode!r}")


# ---- one table -----------------------------------------------------------------------------------
@torch.library.custom_op("kernelevolve::embedding_bag", mutates_args=())
def embedding_bag(weight: Tensor, indices: Tensor, offsets: Tensor, mode: str) -> Tensor:
    """[B, dim]: bag b pools weight rows indices[offsets[b]:offsets[b+1]] (sum or mean)."""
    out = torch.empty((offsets.shape[0] - 1, weight.shape[1]), dtype=weight.dtype, device=weight.device)
    if out.numel():
        cfg = _bag_config("embedding_bag_fwd", eb.FWD_DEFAULT, out.shape[0], indices.shape[0], weight.shape[0],
                          weight.shape[1], mode, weight.dtype, weight.device)
        eb.launch_forward(weight, indices, offsets, out, cfg, mode)
    return out


@embedding_bag.register_fake
def _(weight, indices, offsets, mode):
    _check_mode(mode)
    torch._check(weight.dim() == 2 and indices.dim() == 1 and offsets.dim() == 1,
                 lambda: "embedding_bag: weight [rows, dim], 1-D indices and offsets")
    return weight.new_empty((offsets.shape[0] - 1, weight.shape[1]))


def _bag_setup(ctx, inputs, output):
    weight, indices, offsets, mode = inputs[:4]
    ctx.mode, ctx.num_rows = mode, weight.shape[0]
    ctx.save_for_backward(indices, offsets)


def _bag_backward(ctx, grad):
    indices, offsets = ctx.saved_tensors
    return embedding_bag_backward(grad, indices, offsets, ctx.num_rows, ctx.mode), None, None, None


embedding_bag.register_autograd(_bag_backward, setup_context=_bag_setup)


@torch.library.custom_op("kernelevolve::embedding_bag_backward", mutates_args=())
def embedding_bag_backward(grad: Tensor, indices: Tensor, offsets: Tensor, num_rows: int, mode: str) -> Tensor:
    """The dense table gradient [num_rows, dim] for grad [B, dim] of embedding_bag's output."""
    gw = torch.empty((num_rows, grad.shape[1]), dtype=grad.dtype, device=grad.device)
    if gw.numel():
        cfg = _bag_config("embedding_bag_bwd", eb.BWD_DEFAULT, grad.shape[0], indices.shape[0], num_rows,
                          grad.shape[1], mode, grad.dtype, grad.device)
        eb.launch_backward(grad.contiguous(), indices.long(), offsets.long(), gw, cfg, mode)
    return gw


@embedding_bag_backward.register_fake
def _(grad, indices, offsets, num_rows, mode):
    _check_mode(mode)
    torch._check(grad.dim() == 2 and grad.shape[0] == offsets.shape[0] - 1,
                 lambda: "embedding_bag_backward: grad must be [B, dim] for B + 1 offsets")
    return grad.new_empty((num_rows, grad.shape[1]))


# ---- all tables in one launch (fbgemm's table-batched layout) ------------------------------------
@torch.library.custom_op("kernelevolve::embedding_bag_tables", mutates_args=())
def embedding_bag_tables(weight: Tensor, table_rows: Tensor, indices: Tensor, offsets: Tensor, mode: str,
                         dense: Optional[Tensor]) -> Tensor:
    """T tables stacked in weight [sum of rows, dim], table t from row table_rows[t]; indices of
    all tables concatenated (each relative to its table), offsets [T * B + 1] table-major.
    Returns [B, T, dim], or with `dense` [B, dim] given, [B, 1 + T, dim] with dense in slot 0:
    the DLRM interaction's input built in place (no stack or cat of the pooled vectors)."""
    T, lead = table_rows.shape[0], 0 if dense is None else 1
    B = (offsets.shape[0] - 1) // T
    out = torch.empty((B, lead + T, weight.shape[1]), dtype=weight.dtype, device=weight.device)
    if dense is not None:
        out[:, 0].copy_(dense)
    if out.numel():
        # tuned as one table of all rows with T x B bags (benchmarks/dlrm.py: ops)
        cfg = _bag_config("embedding_bag_fwd", eb.FWD_DEFAULT, T * B, indices.shape[0], weight.shape[0],
                          weight.shape[1], mode, weight.dtype, weight.device)
        eb.launch_forward_tables(weight, table_rows, indices, offsets, out[:, lead:], cfg, mode)
    return out


@embedding_bag_tables.register_fake
def _(weight, table_rows, indices, offsets, mode, dense):
    _check_mode(mode)
    T, lead = table_rows.shape[0], 0 if dense is None else 1
    torch._check((offsets.shape[0] - 1) % T == 0, lambda: "embedding_bag_tables: offsets must be [T * B + 1]")
    B = (offsets.shape[0] - 1) // T
    torch._check(dense is None or dense.shape == (B, weight.shape[1]),
                 lambda: "embedding_bag_tables: dense must be [B, dim]")
    return weight.new_empty((B, lead + T, weight.shape[1]))


def _tables_setup(ctx, inputs, output):
    weight, table_rows, indices, offsets, mode, dense = inputs
    ctx.mode, ctx.num_rows, ctx.lead = mode, weight.shape[0], 0 if dense is None else 1
    ctx.save_for_backward(table_rows, indices, offsets)


def _tables_backward(ctx, grad):
    """One backward launch over the stacked table: bag g = t * B + b (its gradient row is grad[b,
    t]) names rows table_rows[t] + id."""
    table_rows, indices, offsets = ctx.saved_tensors
    T = table_rows.shape[0]
    B = (offsets.shape[0] - 1) // T
    bag_grads = grad[:, ctx.lead:].transpose(0, 1).reshape(T * B, grad.shape[2])
    # each id's table: the tables start at offsets[t * B] in the id array
    starts = offsets[B:T * B:B].contiguous()
    table_of_id = torch.searchsorted(starts, torch.arange(indices.shape[0], device=indices.device), right=True)
    rows = indices + table_rows[table_of_id]
    gw = embedding_bag_backward(bag_grads, rows, offsets, ctx.num_rows, ctx.mode)
    ddense = grad[:, 0] if ctx.lead else None
    return gw, None, None, None, None, ddense


embedding_bag_tables.register_autograd(_tables_backward, setup_context=_tables_setup)


# ---- dot interaction -----------------------------------------------------------------------------
def _interaction_config(t):
    B, F, D = t.shape
    key = ("dot_interaction", B, F, D, t.dtype, t.device)
    return tuned.resolved.get(key) or resolve(key, "dot_interaction", {"batch": B, "features": F, "dim": D},
                                              t.dtype, t.device, interaction.DEFAULT_CONFIG)


@torch.library.custom_op("kernelevolve::dot_interaction", mutates_args=())
def dot_interaction(t: Tensor) -> Tensor:
    """[B, F(F-1)/2]: each sample's pairwise dot products of its F vectors t [B, F, D], DLRM's order."""
    B, F, _ = t.shape
    out = torch.empty((B, F * (F - 1) // 2), dtype=t.dtype, device=t.device)
    if B:
        interaction.launch((t,), out, _interaction_config(t))
    return out


@dot_interaction.register_fake
def _(t):
    torch._check(t.dim() == 3 and t.stride(2) == 1, lambda: "dot_interaction: t [B, F, D], last dim contiguous")
    F = t.shape[1]
    return t.new_empty((t.shape[0], F * (F - 1) // 2))


@torch.library.custom_op("kernelevolve::dot_interaction_concat", mutates_args=())
def dot_interaction_concat(t: Tensor, width: int) -> Tensor:
    """[B, width]: [t[:, 0] | the pairs | zeros], DLRM's concat of the dense vector with the
    interaction in one pass, zero-padded to `width` (an aligned K for the next layer)."""
    out = torch.empty((t.shape[0], width), dtype=t.dtype, device=t.device)
    if t.shape[0]:
        interaction.launch_concat(t, out, _interaction_config(t))
    return out


@dot_interaction_concat.register_fake
def _(t, width):
    torch._check(t.dim() == 3 and t.stride(2) == 1, lambda: "dot_interaction_concat: t [B, F, D], contiguous rows")
    F, D = t.shape[1], t.shape[2]
    torch._check(width >= D + F * (F - 1) // 2, lambda: f"dot_interaction_concat: width < {D} + pairs")
    return t.new_empty((t.shape[0], width))


def _pairs_grad(t, grad_pairs):
    """dL/dt for pairs p(i, j) = <t_i, t_j>, j < i: dt = (G + G^T) t, G the pairs' gradient laid
    out on the strict lower triangle. No backward kernel of ours: torch ops (the compiler fuses
    the scatter; bmm is cuBLAS)."""
    B, F, _ = t.shape
    li, lj = torch.tril_indices(F, F, offset=-1, device=t.device)
    g = torch.zeros((B, F, F), dtype=torch.float32, device=t.device)
    g[:, li, lj] = grad_pairs.float()
    return torch.bmm(g + g.transpose(1, 2), t.float()).to(t.dtype)


def _save_t(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _interaction_backward(ctx, grad):
    (t,) = ctx.saved_tensors
    return _pairs_grad(t, grad)


def _concat_backward(ctx, grad):
    (t,) = ctx.saved_tensors
    F, D = t.shape[1], t.shape[2]
    dt = _pairs_grad(t, grad[:, D:D + F * (F - 1) // 2])
    dt[:, 0] += grad[:, :D]
    return dt, None


dot_interaction.register_autograd(_interaction_backward, setup_context=_save_t)
dot_interaction_concat.register_autograd(_concat_backward, setup_context=_save_t)
