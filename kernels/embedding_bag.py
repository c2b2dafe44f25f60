"""EmbeddingBag: pooled rows of a table over jagged bags, forward and backward, as Triton templates.

Bags are given fbgemm-style: `offsets` has B+1 entries, bag b is indices[offsets[b]:offsets[b+1]]
(an empty bag pools to zeros). Pooling is "sum" or "mean" (a problem field, a constexpr MEAN).
Tables may be float32, float16 or bfloat16; sums are accumulated in fp32.

Forward switches:
  BLOCK_D            columns of the embedding one program handles (a second grid axis covers dim)
  BAGS_PER_PROGRAM   bags one program pools, one after another
  IDS_PER_STEP       ids gathered at once: a [IDS_PER_STEP, BLOCK_D] tile of rows per step, so
                     several row loads are in flight instead of one
  PREFETCH           load the next step's ids before this step's rows are summed (absent = False)
  ROW_LOAD           cache hints of the row loads: "default", "cg" (L2 only) or "evict_first"
Table-batched forward (launch_forward_tables, fbgemm's TBE layout): all tables of a model in one
launch, pooled straight into a [B, T, dim] view; tuned as one table with T x B bags.
Backward (dweight = scatter of grad_out rows into a dense table gradient) switches:
  SORTED   False: each program walks bags and atomically adds grad rows into the table gradient
                  (into an fp32 workspace, cast once at the end, when the table is 16-bit: 16-bit
                  atomics would round at every add to a hot row).
           True:  ids are sorted first (torch.sort, outside the kernel, and timed with it); each
                  program owns the runs of equal ids that start in its share of sorted positions,
                  sums them in registers and writes each table row once: no atomics, no workspace.
  ITEMS_PER_PROGRAM  bags (atomic) or sorted ids (sorted) per program
  BLOCK_D, IDS_PER_STEP as forward.
The backward spec's output is the dense table gradient [num_rows, dim] (rows no bag names are 0).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels import tuned
from kernelevolve.kernels.jagged import check_offsets
from kernelevolve.kernels.spec import DTYPES, KernelSpec, check_device, element_size

MODES = {"sum": 0, "mean": 1}  # also aten's mode numbers
LENGTHS_SEED = 2024


class EmbeddingBagProblem(BaseModel):
    """num_bags bags of 0..2*avg_bag_len ids (uniform) into a num_rows x dim table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_bags: PositiveInt
    avg_bag_len: PositiveInt
    dim: PositiveInt
    num_rows: PositiveInt
    mode: Literal["sum", "mean"] = "sum"
    dtype: Literal["float16", "bfloat16", "float32"] = "float32"


@triton.jit
def _bag_bounds(offsets_ptr, bag):
    start = tl.load(offsets_ptr + bag).to(tl.int64)
    end = tl.load(offsets_ptr + bag + 1).to(tl.int64)
    return start, end


@triton.jit
def embedding_bag_fwd_kernel(weight_ptr, indices_ptr, offsets_ptr, table_rows_ptr, out_ptr, n_bags,
                             bags_per_table, dim, stride_w, stride_out, stride_out_table,
                             MEAN: tl.constexpr, TABLES: tl.constexpr, BLOCK_D: tl.constexpr,
                             BAGS_PER_PROGRAM: tl.constexpr, IDS_PER_STEP: tl.constexpr,
                             PREFETCH: tl.constexpr, CACHE_MOD: tl.constexpr, EVICT: tl.constexpr):
    """Bag g pools weight rows (table_rows[t] + id) for its ids; with TABLES, g = t * bags_per_table
    + b is bag b of table t (fbgemm's table-batched layout) and lands at out[b, t]."""
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < dim
    ids = tl.arange(0, IDS_PER_STEP)
    for i in range(0, BAGS_PER_PROGRAM):
        bag = tl.program_id(0) * BAGS_PER_PROGRAM + i
        if bag < n_bags:
            start, end = _bag_bounds(offsets_ptr, bag)
            if TABLES:
                table = bag // bags_per_table
                row0 = tl.load(table_rows_ptr + table).to(tl.int64)
                dest = out_ptr + (bag - table * bags_per_table).to(tl.int64) * stride_out \
                    + table.to(tl.int64) * stride_out_table
            else:
                row0 = 0
                dest = out_ptr + bag.to(tl.int64) * stride_out
            acc = tl.zeros((BLOCK_D,), tl.float32)
            if PREFETCH:
                # the next step's ids are loaded while this step's rows are in flight: the two
                # dependent memory latencies of a step (ids, then rows) overlap across steps
                idx = tl.load(indices_ptr + start + ids, mask=(start + ids) < end, other=0)
                for j in range(start, end, IDS_PER_STEP):
                    pmask = (j + ids) < end
                    rows = tl.load(weight_ptr + (row0 + idx.to(tl.int64))[:, None] * stride_w + cols[None, :],
                                   mask=pmask[:, None] & cmask[None, :], other=0.0,
                                   cache_modifier=CACHE_MOD, eviction_policy=EVICT)
                    nxt = j + IDS_PER_STEP + ids
                    idx = tl.load(indices_ptr + nxt, mask=nxt < end, other=0)
                    acc += tl.sum(rows.to(tl.float32), axis=0)
            else:
                for j in range(start, end, IDS_PER_STEP):
                    pmask = (j + ids) < end
                    idx = tl.load(indices_ptr + j + ids, mask=pmask, other=0).to(tl.int64)
                    rows = tl.load(weight_ptr + (row0 + idx)[:, None] * stride_w + cols[None, :],
                                   mask=pmask[:, None] & cmask[None, :], other=0.0,
                                   cache_modifier=CACHE_MOD, eviction_policy=EVICT)
                    acc += tl.sum(rows.to(tl.float32), axis=0)
            if MEAN:
                acc = acc / tl.maximum(end - start, 1).to(tl.float32)
            tl.store(dest + cols, acc.to(out_ptr.dtype.element_ty), mask=cmask)


@triton.jit
def embedding_bag_bwd_kernel(grad_ptr, indices_ptr, offsets_ptr, sorted_ptr, sorted_bag_ptr, gw_ptr,
                             n_bags, n_ids, dim, stride_g, stride_gw, MEAN: tl.constexpr,
                             SORTED: tl.constexpr, BLOCK_D: tl.constexpr,
                             ITEMS_PER_PROGRAM: tl.constexpr, IDS_PER_STEP: tl.constexpr):
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < dim
    ids = tl.arange(0, IDS_PER_STEP)
    for i in range(0, ITEMS_PER_PROGRAM):
        item = tl.program_id(0) * ITEMS_PER_PROGRAM + i
        if not SORTED:  # item is a bag: add its grad row into every row it names
            if item < n_bags:
                start, end = _bag_bounds(offsets_ptr, item)
                g = tl.load(grad_ptr + item.to(tl.int64) * stride_g + cols, mask=cmask, other=0.0).to(tl.float32)
                if MEAN:
                    g = g / tl.maximum(end - start, 1).to(tl.float32)
                tile = tl.zeros((IDS_PER_STEP, BLOCK_D), tl.float32) + g[None, :]
                for j in range(start, end, IDS_PER_STEP):
                    pmask = (j + ids) < end
                    idx = tl.load(indices_ptr + j + ids, mask=pmask, other=0).to(tl.int64)
                    tl.atomic_add(gw_ptr + idx[:, None] * stride_gw + cols[None, :], tile,
                                  mask=pmask[:, None] & cmask[None, :])
        elif item < n_ids:  # item is a sorted position: if a run of one row starts here, sum it
            row = tl.load(sorted_ptr + item)
            prev = tl.load(sorted_ptr + item - 1, mask=item > 0, other=-1)
            if row != prev:
                acc = tl.zeros((BLOCK_D,), tl.float32)
                j = item
                following = row
                while following == row:  # sorted: the run goes on while the next id is the same
                    pos = j + ids
                    same = tl.load(sorted_ptr + pos, mask=pos < n_ids, other=-1) == row
                    bags = tl.load(sorted_bag_ptr + pos, mask=same, other=0)
                    g = tl.load(grad_ptr + bags[:, None] * stride_g + cols[None, :],
                                mask=same[:, None] & cmask[None, :], other=0.0).to(tl.float32)
                    if MEAN:
                        start, end = _bag_bounds(offsets_ptr, bags)
                        g = g / tl.maximum(end - start, 1).to(tl.float32)[:, None]
                    acc += tl.sum(g, axis=0)
                    j += IDS_PER_STEP
                    following = tl.load(sorted_ptr + j, mask=j < n_ids, other=-1)
                tl.store(gw_ptr + row * stride_gw + cols, acc.to(gw_ptr.dtype.element_ty), mask=cmask)


# How the gathered rows are loaded (PTX cache hints): "cg" caches them in L2 only (not L1: a row is
# summed once per bag, L1 would only hold it for nothing), "evict_first" marks them first to go from
# L2 (keeping the ids and offsets there).
ROW_LOADS = {"default": {"CACHE_MOD": "", "EVICT": ""}, "cg": {"CACHE_MOD": ".cg", "EVICT": ""},
             "evict_first": {"CACHE_MOD": "", "EVICT": "evict_first"}}

FWD_DEFAULT = {"BLOCK_D": 128, "BAGS_PER_PROGRAM": 1, "IDS_PER_STEP": 8, "num_warps": 4, "num_stages": 1}
BWD_DEFAULT = {"SORTED": True, "BLOCK_D": 128, "ITEMS_PER_PROGRAM": 4, "IDS_PER_STEP": 4,
               "num_warps": 4, "num_stages": 1}


def launch_forward(weight, indices, offsets, out, cfg, mode: str):
    """out [B, dim] = the pooled bags of one table."""
    return _launch_forward(weight, None, indices, offsets, out, out.shape[0], 0, cfg, mode)


def launch_forward_tables(weight, table_rows, indices, offsets, out, cfg, mode: str):
    """Table-batched (fbgemm TBE layout): T tables stacked in one weight [sum of rows, dim], table t
    starting at row table_rows[t]; indices of all tables concatenated (each relative to its
    table), offsets [T * B + 1] table-major; out [B, T, dim], any strides (e.g. a slice of the
    interaction input, so no stack copy follows). One launch for all tables."""
    bags, tables = out.shape[0], out.shape[1]
    if offsets.numel() != bags * tables + 1 or table_rows.numel() != tables:
        raise ValueError(f"embedding bags of {tables} tables x {bags} bags need {bags * tables + 1} offsets "
                         f"and {tables} table starts, got {offsets.numel()} and {table_rows.numel()}")
    if out.stride(2) != 1:
        raise ValueError("the pooled output's last dimension must be contiguous")
    return _launch_forward(weight, table_rows, indices, offsets, out, bags, out.stride(1), cfg, mode)


def _launch_forward(weight, table_rows, indices, offsets, out, bags_per_table, stride_out_table, cfg, mode):
    n_bags = offsets.numel() - 1
    dim = weight.shape[1]
    grid = (triton.cdiv(n_bags, cfg["BAGS_PER_PROGRAM"]), triton.cdiv(dim, cfg["BLOCK_D"]))
    return embedding_bag_fwd_kernel[grid](
        weight, indices, offsets, table_rows, out, n_bags, bags_per_table, dim, weight.stride(0),
        out.stride(0), stride_out_table, MEAN=mode == "mean", TABLES=table_rows is not None,
        BLOCK_D=cfg["BLOCK_D"], BAGS_PER_PROGRAM=cfg["BAGS_PER_PROGRAM"],
        IDS_PER_STEP=cfg["IDS_PER_STEP"], PREFETCH=bool(cfg.get("PREFETCH", False)),
        **ROW_LOADS[cfg.get("ROW_LOAD", "default")], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])


def launch_backward(grad_out, indices, offsets, grad_weight, cfg, mode: str):
    """grad_weight [num_rows, dim] is overwritten with the dense table gradient."""
    n_bags, dim = grad_out.shape
    n_ids = indices.numel()
    sorted_mode = bool(cfg["SORTED"])
    if sorted_mode:
        target = grad_weight
        sorted_ids, positions = torch.sort(indices)
        # The bag of each sorted position: the last bag starting at or before it (empty bags
        # share their start with the next bag, and right=True steps past them).
        sorted_bags = torch.searchsorted(offsets, positions, right=True) - 1
        items = n_ids
    else:
        # Atomics add into zeros; 16-bit tables get an fp32 workspace (see the module docstring).
        exact = grad_weight.dtype == torch.float32
        target = grad_weight if exact else torch.empty(grad_weight.shape, dtype=torch.float32,
                                                       device=grad_weight.device)
        sorted_ids = sorted_bags = indices  # unused by this path
        items = n_bags
    target.zero_()
    grid = (max(1, triton.cdiv(items, cfg["ITEMS_PER_PROGRAM"])), triton.cdiv(dim, cfg["BLOCK_D"]))
    handle = embedding_bag_bwd_kernel[grid](
        grad_out, indices, offsets, sorted_ids, sorted_bags, target, n_bags, n_ids, dim,
        grad_out.stride(0), target.stride(0), MEAN=mode == "mean", SORTED=sorted_mode,
        BLOCK_D=cfg["BLOCK_D"], ITEMS_PER_PROGRAM=cfg["ITEMS_PER_PROGRAM"],
        IDS_PER_STEP=cfg["IDS_PER_STEP"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if target is not grad_weight:
        grad_weight.copy_(target)
    return handle


# ---- public entry points -----------------------------------------------------------------------
def _check(op, table_like, indices, offsets, mode, num_rows=None):
    """num_rows: the table's rows (the table itself when None) that indices must stay under."""
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be 'sum' or 'mean', got {mode!r}")
    for name, t in (("table/grad", table_like), ("indices", indices), ("offsets", offsets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if table_like.dim() != 2 or table_like.dtype not in DTYPES.values():
        raise TypeError(f"{op}: the table (or grad_out) must be 2-D float16, bfloat16 or float32, got "
                        f"{table_like.dtype} of shape {tuple(table_like.shape)}")
    if indices.dim() != 1 or indices.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{op}: indices must be 1-D int32/int64, got {indices.dtype} {tuple(indices.shape)}")
    check_device(op, table_like, indices, offsets)
    check_offsets(op, offsets, indices.numel())
    num_rows = table_like.shape[0] if num_rows is None else num_rows
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_rows):
        raise ValueError(f"{op}: indices must lie in [0, {num_rows}), got [{int(indices.min())}, "
                         f"{int(indices.max())}]")


def embedding_bag(weight, indices, offsets, mode="sum", config=None):
    """[B, dim] pooled rows of weight; offsets has B+1 entries (the last = len(indices))."""
    _check("embedding_bag", weight, indices, offsets, mode)
    out = torch.empty((offsets.numel() - 1, weight.shape[1]), dtype=weight.dtype, device=weight.device)
    if out.numel():
        if not config:  # the tuned table's config (kernels/tuned.py), else FWD_DEFAULT
            config = tuned.config_for("embedding_bag_fwd", _bag_dims(indices, offsets, *weight.shape),
                                      weight.dtype, weight.device, FWD_DEFAULT, extras={"mode": mode})
        launch_forward(weight.contiguous(), indices.long(), offsets.long(), out, config, mode)
    return out


def embedding_bag_backward(grad_out, indices, offsets, num_rows, mode="sum", config=None):
    """The dense gradient [num_rows, dim] of embedding_bag's weight for grad_out [B, dim]."""
    if not isinstance(num_rows, int) or num_rows < 0:
        raise ValueError(f"embedding_bag_backward: num_rows must be an int >= 0, got {num_rows!r}")
    _check("embedding_bag_backward", grad_out, indices, offsets, mode, num_rows)
    if grad_out.shape[0] != offsets.numel() - 1:
        raise ValueError(f"embedding_bag_backward: grad_out has {grad_out.shape[0]} rows for "
                         f"{offsets.numel() - 1} bags")
    gw = torch.empty((num_rows, grad_out.shape[1]), dtype=grad_out.dtype, device=grad_out.device)
    if gw.numel():
        if not config:  # the tuned table's config (kernels/tuned.py), else BWD_DEFAULT
            dims = _bag_dims(indices, offsets, num_rows, grad_out.shape[1])
            config = tuned.config_for("embedding_bag_bwd", dims, grad_out.dtype, grad_out.device, BWD_DEFAULT,
                                      extras={"mode": mode})
        launch_backward(grad_out.contiguous(), indices.long(), offsets.long(), gw, config, mode)
    return gw


def _bag_dims(indices, offsets, num_rows: int, dim: int) -> dict:
    """A call's sizes as an EmbeddingBagProblem names them (the tuned table's lookup key)."""
    bags = max(1, offsets.numel() - 1)
    return {"num_bags": bags, "avg_bag_len": max(1, round(indices.numel() / bags)), "dim": dim,
            "num_rows": num_rows}


# ---- problems, references, peers, cost -----------------------------------------------------------
def bag_offsets(problem) -> torch.Tensor:
    """Bag lengths uniform in [0, 2*avg_bag_len], empty bags included; fixed per problem (on the
    CPU, from a fixed seed) so that the cost model counts ids exactly. Ids change with the seed."""
    lengths = torch.randint(0, 2 * problem.avg_bag_len + 1, (problem.num_bags,),
                            generator=torch.Generator().manual_seed(LENGTHS_SEED))
    offsets = torch.zeros(problem.num_bags + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    return offsets


def count_ids(problem) -> int:
    return int(bag_offsets(problem)[-1])


def make_bags(problem, device, seed):
    """(indices, offsets, generator for the rest of the inputs)"""
    offsets = bag_offsets(problem)
    gen = torch.Generator(device=device).manual_seed(seed)
    indices = torch.randint(0, problem.num_rows, (int(offsets[-1]),), generator=gen, device=device)
    return indices, offsets.to(device), gen


def _bag_of_position(offsets, n_ids):
    return torch.searchsorted(offsets, torch.arange(n_ids, device=offsets.device), right=True) - 1


def _scale(offsets, mode):
    lengths = (offsets[1:] - offsets[:-1]).double()
    return 1.0 / lengths.clamp(min=1) if mode == "mean" else torch.ones_like(lengths)


def reference_forward(weight, indices, offsets, mode):
    bags = _bag_of_position(offsets, indices.numel())
    out = torch.zeros((offsets.numel() - 1, weight.shape[1]), dtype=torch.float64, device=weight.device)
    out.index_add_(0, bags, weight[indices].double())
    return out * _scale(offsets, mode)[:, None]


def reference_backward(grad_out, indices, offsets, num_rows, mode):
    bags = _bag_of_position(offsets, indices.numel())
    g = grad_out.double() * _scale(offsets, mode)[:, None]
    gw = torch.zeros((num_rows, grad_out.shape[1]), dtype=torch.float64, device=grad_out.device)
    return gw.index_add_(0, indices, g[bags])


# A problem's inputs carry its pooling mode, since launch, reference and peer see only inputs.
def make_forward_inputs(problem, device, seed):
    """(weight, indices, offsets, mode)"""
    indices, offsets, gen = make_bags(problem, device, seed)
    weight = torch.randn((problem.num_rows, problem.dim), generator=gen, device=device)
    return weight.to(DTYPES[problem.dtype]), indices, offsets, problem.mode


def make_backward_inputs(problem, device, seed):
    """(grad_out, indices, offsets, num_rows, mode, *aten's forward by-products for the eager peer)"""
    indices, offsets, gen = make_bags(problem, device, seed)
    grad = torch.randn((problem.num_bags, problem.dim), generator=gen, device=device).to(DTYPES[problem.dtype])
    # offset2bag, bag_size and max_indices do not depend on the table's values or width.
    aux = torch.ops.aten._embedding_bag(torch.empty((problem.num_rows, 1), device=device), indices, offsets,
                                        False, MODES[problem.mode], False, None, True)[1:]
    return (grad, indices, offsets, problem.num_rows, problem.mode, *aux)


def _forward_output(problem, inputs):
    return torch.empty((problem.num_bags, problem.dim), dtype=inputs[0].dtype, device=inputs[0].device)


def _backward_output(problem, inputs):
    return torch.empty((problem.num_rows, problem.dim), dtype=inputs[0].dtype, device=inputs[0].device)


def _forward_launch(inputs, out, cfg):
    weight, indices, offsets, mode = inputs
    return launch_forward(weight, indices, offsets, out, cfg, mode)


def _backward_launch(inputs, out, cfg):
    grad, indices, offsets, _, mode = inputs[:5]
    return launch_backward(grad, indices, offsets, out, cfg, mode)


def _forward_baseline(inputs):
    weight, indices, offsets, mode = inputs
    return torch.nn.functional.embedding_bag(indices, weight, offsets, mode=mode, include_last_offset=True)


def _backward_baseline(inputs):
    """aten's eager backward of embedding_bag (what autograd runs), without the forward."""
    grad, indices, offsets, num_rows, mode, offset2bag, bag_size, max_indices = inputs
    return torch.ops.aten._embedding_bag_backward(grad, indices, offsets, offset2bag, bag_size, max_indices,
                                                  num_rows, False, MODES[mode], False, None)


def _forward_bytes(p):  # ids and offsets, the gathered rows, the pooled rows
    n = count_ids(p)
    return float(n * 8 + (p.num_bags + 1) * 8 + (n + p.num_bags) * p.dim * element_size(p.dtype))


def _forward_min_bytes(p):
    """As _forward_bytes, but each distinct row gathered once: a row that several lookups name
    can be read from DRAM once and served from the chip after (the judge's ceiling check must
    not take such a kernel for one that skips work: on an H200, 8192 bags of 50 from 200,000 rows
    of 1 KiB, honest kernels ran at 5.0-5.3 TB/s of `_forward_bytes`, over the copy ceiling). The
    ids are uniform over the table (make_bags): n of them name N (1 - (1 - 1/N)^n) rows on average."""
    n, rows = count_ids(p), p.num_rows
    distinct = rows * -math.expm1(n * math.log1p(-1.0 / rows)) if rows > 1 else min(n, rows)
    return float(n * 8 + (p.num_bags + 1) * 8 + (distinct + p.num_bags) * p.dim * element_size(p.dtype))


def _backward_bytes(p):  # ids and offsets, grad_out, the dense table gradient
    n = count_ids(p)
    return float(n * 8 + (p.num_bags + 1) * 8 + (p.num_bags + p.num_rows) * p.dim * element_size(p.dtype))


def _flops(p):
    return float(count_ids(p) * p.dim)


EMBEDDING_BAG_FWD = KernelSpec(
    name="embedding_bag_fwd",
    description="EmbeddingBag forward (sum/mean over jagged bags); BLOCK_D, bags per program, ids per step",
    problem=EmbeddingBagProblem, make_inputs=make_forward_inputs, make_output=_forward_output,
    launch=_forward_launch, reference=lambda inputs: reference_forward(*inputs),
    baseline=_forward_baseline, flops=_flops, bytes_moved=_forward_bytes, min_bytes=_forward_min_bytes)

EMBEDDING_BAG_BWD = KernelSpec(
    name="embedding_bag_bwd",
    description="EmbeddingBag backward: dense table gradient by atomics or sorted segments",
    problem=EmbeddingBagProblem, make_inputs=make_backward_inputs, make_output=_backward_output,
    launch=_backward_launch, reference=lambda inputs: reference_backward(*inputs[:5]),
    baseline=_backward_baseline, flops=_flops, bytes_moved=_backward_bytes)
