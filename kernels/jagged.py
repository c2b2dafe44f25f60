"""Jagged tensors (as in fbgemm / HSTU): B sequences of varying length stored back to back.

A jagged tensor is `values` [total, D] with `offsets` [B+1]: sequence b is
values[offsets[b]:offsets[b+1]] (possibly empty). Four operators, three Triton templates (the
two conversions share one, its direction a constexpr):
  jagged_to_padded_dense  -> [B, max_len, D], padding where a sequence is shorter; longer ones
                             are truncated at max_len (fbgemm's semantics)
  padded_dense_to_jagged  the inverse: [B, max_len, D] -> values (every length must be <= max_len)
  jagged_softmax          softmax over each sequence's positions, per column
  jagged_dense_bmm        out[seq b] = x[seq b] @ y[b] for x jagged [total, K], y [B, K, N]
Switches:
  LOOP_L (conversions, bmm)  False: a grid axis over blocks of positions up to max_len (blocks
                     past a short sequence do nothing: at 50% fill, half the programs exit at
                     once). True: one program per sequence (and column block) loops over its own
                     blocks. (Softmax always loops: one program per sequence and column block.)
  BLOCK_L / BLOCK_M, BLOCK_D, BLOCK_N, BLOCK_K   tile sizes (positions, columns, bmm's N and K)
  ONLINE (softmax)   as kernels/softmax.py: a block of positions in registers, or a running max
                     and sum over blocks (any length). Without it, BLOCK_L must cover max_len.
The torch peers are the padded-dense equivalents: aten's own jagged<->padded conversions (what
nested tensors use), a masked softmax over the padded tensor, and torch.bmm over padded x.
Sequence lengths are uniform in [0, max_len] (50% average fill) and depend only on the problem,
so the cost model counts the exact number of positions.
"""
from __future__ import annotations

import os
from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernels.spec import DTYPES, KernelSpec, element_size

LOG2E = tl.constexpr(1.4426950408889634)  # a constexpr: kernels may only read constexpr globals
LENGTHS_SEED = 2024  # lengths are a property of the problem, values change with the seed


class JaggedProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    batch: PositiveInt
    max_len: PositiveInt
    dim: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


class JaggedBmmProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    batch: PositiveInt
    max_len: PositiveInt
    k: PositiveInt
    n: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@triton.jit
def _copy_block(values_ptr, dense_ptr, l0, length, max_len, cols, cmask, stride_v, stride_dl,
                padding_value, TO_DENSE: tl.constexpr, BLOCK_L: tl.constexpr):
    r = l0 + tl.arange(0, BLOCK_L)
    inside = (r < length)[:, None] & cmask[None, :]
    v_ptrs = values_ptr + r[:, None].to(tl.int64) * stride_v + cols[None, :]
    d_ptrs = dense_ptr + r[:, None] * stride_dl + cols[None, :]
    if TO_DENSE:
        v = tl.load(v_ptrs, mask=inside, other=padding_value)
        tl.store(d_ptrs, v, mask=(r < max_len)[:, None] & cmask[None, :])
    else:
        tl.store(v_ptrs, tl.load(d_ptrs, mask=inside), mask=inside)


@triton.jit
def jagged_dense_copy_kernel(values_ptr, offsets_ptr, dense_ptr, max_len, dim, stride_v, stride_db,
                             stride_dl, padding_value, TO_DENSE: tl.constexpr, BLOCK_L: tl.constexpr,
                             BLOCK_D: tl.constexpr, LOOP_L: tl.constexpr):
    b = tl.program_id(0)
    start = tl.load(offsets_ptr + b).to(tl.int64)
    length = tl.minimum(tl.load(offsets_ptr + b + 1).to(tl.int64) - start, max_len)
    cols = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < dim
    values_ptr += start * stride_v
    dense_ptr += b.to(tl.int64) * stride_db
    stop = length
    if TO_DENSE:  # to dense, the padding positions up to max_len are written too
        stop = tl.maximum(length, max_len)
    if LOOP_L:
        for l0 in range(0, stop, BLOCK_L):
            _copy_block(values_ptr, dense_ptr, l0, length, max_len, cols, cmask, stride_v, stride_dl,
                        padding_value, TO_DENSE, BLOCK_L)
    else:
        l0 = tl.program_id(1) * BLOCK_L
        if l0 < stop:  # to jagged, a block past a short sequence has nothing to move
            _copy_block(values_ptr, dense_ptr, l0, length, max_len, cols, cmask, stride_v, stride_dl,
                        padding_value, TO_DENSE, BLOCK_L)


@triton.jit
def jagged_softmax_kernel(values_ptr, offsets_ptr, out_ptr, dim, stride_v, stride_o,
                          BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, ONLINE: tl.constexpr):
    b = tl.program_id(0)
    start = tl.load(offsets_ptr + b).to(tl.int64)
    length = tl.load(offsets_ptr + b + 1).to(tl.int64) - start
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < dim
    rows = tl.arange(0, BLOCK_L)
    values_ptr += start * stride_v
    out_ptr += start * stride_o
    if not ONLINE:
        if length > 0:  # an empty sequence has nothing to write
            inside = (rows < length)[:, None] & cmask[None, :]
            x = tl.load(values_ptr + rows[:, None] * stride_v + cols[None, :], mask=inside, other=0.0)
            x = x.to(tl.float32)
            x = tl.where((rows < length)[:, None], x, -float("inf"))  # columns past dim stay finite
            e = tl.exp2((x - tl.max(x, axis=0)[None, :]) * LOG2E)
            y = e / tl.sum(e, axis=0)[None, :]
            tl.store(out_ptr + rows[:, None] * stride_o + cols[None, :], y.to(out_ptr.dtype.element_ty),
                     mask=inside)
    if ONLINE:
        m = tl.full((BLOCK_D,), -float("inf"), tl.float32)
        d = tl.zeros((BLOCK_D,), tl.float32)
        for l0 in range(0, length, BLOCK_L):
            r = l0 + rows
            x = tl.load(values_ptr + r[:, None] * stride_v + cols[None, :],
                        mask=(r < length)[:, None] & cmask[None, :], other=0.0).to(tl.float32)
            x = tl.where((r < length)[:, None], x, -float("inf"))
            m_new = tl.maximum(m, tl.max(x, axis=0))
            d = d * tl.exp2((m - m_new) * LOG2E) + tl.sum(tl.exp2((x - m_new[None, :]) * LOG2E), axis=0)
            m = m_new
        for l0 in range(0, length, BLOCK_L):
            r = l0 + rows
            inside = (r < length)[:, None] & cmask[None, :]
            x = tl.load(values_ptr + r[:, None] * stride_v + cols[None, :], mask=inside, other=0.0).to(tl.float32)
            y = tl.exp2((x - m[None, :]) * LOG2E) / d[None, :]
            tl.store(out_ptr + r[:, None] * stride_o + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _bmm_tile(x_ptr, y_ptr, out_ptr, m0, length, K, cols, nmask, stride_x, stride_yk, stride_o,
              BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = m0 + tl.arange(0, BLOCK_M)
    rmask = rows < length
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kmask = (k0 + ks) < K
        a = tl.load(x_ptr + rows[:, None] * stride_x + (k0 + ks)[None, :],
                    mask=rmask[:, None] & kmask[None, :], other=0.0)
        w = tl.load(y_ptr + (k0 + ks)[:, None] * stride_yk + cols[None, :],
                    mask=kmask[:, None] & nmask[None, :], other=0.0)
        acc = tl.dot(a, w, acc)
    tl.store(out_ptr + rows[:, None] * stride_o + cols[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=rmask[:, None] & nmask[None, :])


@triton.jit
def jagged_dense_bmm_kernel(x_ptr, offsets_ptr, y_ptr, out_ptr, K, N, stride_x, stride_yb, stride_yk,
                            stride_o, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                            BLOCK_K: tl.constexpr, LOOP_L: tl.constexpr):
    b = tl.program_id(0)
    start = tl.load(offsets_ptr + b).to(tl.int64)
    length = tl.load(offsets_ptr + b + 1).to(tl.int64) - start
    cols = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = cols < N
    x_ptr += start * stride_x
    out_ptr += start * stride_o
    y_ptr += b.to(tl.int64) * stride_yb
    if LOOP_L:
        for m0 in range(0, length, BLOCK_M):
            _bmm_tile(x_ptr, y_ptr, out_ptr, m0, length, K, cols, nmask, stride_x, stride_yk, stride_o,
                      BLOCK_M, BLOCK_K, BLOCK_N)
    else:
        m0 = tl.program_id(1) * BLOCK_M
        if m0 < length:
            _bmm_tile(x_ptr, y_ptr, out_ptr, m0, length, K, cols, nmask, stride_x, stride_yk, stride_o,
                      BLOCK_M, BLOCK_K, BLOCK_N)


# ---- launchers (inputs as the KernelSpecs make them) -------------------------------------------
def _launch_copy(values, offsets, dense, cfg, to_dense, padding_value=0.0):
    batch, max_len, dim = dense.shape
    grid = (batch, 1 if cfg["LOOP_L"] else triton.cdiv(max_len, cfg["BLOCK_L"]), triton.cdiv(dim, cfg["BLOCK_D"]))
    return jagged_dense_copy_kernel[grid](
        values, offsets, dense, max_len, dim, values.stride(0), dense.stride(0), dense.stride(1),
        float(padding_value), TO_DENSE=to_dense, BLOCK_L=cfg["BLOCK_L"], BLOCK_D=cfg["BLOCK_D"],
        LOOP_L=bool(cfg["LOOP_L"]), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])


def launch_to_padded(inputs, out, cfg):
    """inputs (values, offsets, max_len, padded copy for the peers); out [B, max_len, D]."""
    return _launch_copy(inputs[0], inputs[1], out, cfg, True)


def launch_to_jagged(inputs, out, cfg):
    """inputs (dense, offsets, total); out [total, D]."""
    return _launch_copy(out, inputs[1], inputs[0], cfg, False)


def launch_softmax(inputs, out, cfg):
    """inputs (values, offsets, max_len, padded copy for the peer)."""
    values, offsets, max_len = inputs[:3]
    if not cfg["ONLINE"] and cfg["BLOCK_L"] < max_len:
        raise ValueError(f"jagged_softmax: BLOCK_L={cfg['BLOCK_L']} < max_len {max_len} needs ONLINE=True")
    grid = (offsets.numel() - 1, triton.cdiv(values.shape[1], cfg["BLOCK_D"]))
    return jagged_softmax_kernel[grid](
        values, offsets, out, values.shape[1], values.stride(0), out.stride(0), BLOCK_L=cfg["BLOCK_L"],
        BLOCK_D=cfg["BLOCK_D"], ONLINE=bool(cfg["ONLINE"]), num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"])


def launch_bmm(inputs, out, cfg):
    """inputs (x values [total, K], offsets, y [B, K, N], max_len, padded x for the peer)."""
    x, offsets, y, max_len = inputs[:4]
    batch, K, N = y.shape
    grid = (batch, 1 if cfg["LOOP_L"] else triton.cdiv(max_len, cfg["BLOCK_M"]), triton.cdiv(N, cfg["BLOCK_N"]))
    return jagged_dense_bmm_kernel[grid](
        x, offsets, y, out, K, N, x.stride(0), y.stride(0), y.stride(1), out.stride(0),
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], LOOP_L=bool(cfg["LOOP_L"]),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])


def _pow2(n: int, low: int = 16) -> int:
    return max(low, triton.next_power_of_2(n))


def default_copy_config(dim: int) -> dict:
    return {"LOOP_L": False, "BLOCK_L": 16, "BLOCK_D": min(128, _pow2(dim)), "num_warps": 4, "num_stages": 1}


def default_softmax_config(max_len: int, dim: int) -> dict:
    online = max_len > 256
    return {"ONLINE": online, "BLOCK_L": 64 if online else _pow2(max_len), "BLOCK_D": min(32, _pow2(dim)),
            "num_warps": 4, "num_stages": 1}


BMM_DEFAULT = {"LOOP_L": False, "BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 2}


# ---- public entry points -----------------------------------------------------------------------
def check_offsets(op: str, offsets, total: int | None = None) -> None:
    """offsets: 1-D int32/int64, B+1 entries, starting at 0, non-decreasing, ending at `total`."""
    if not isinstance(offsets, torch.Tensor):
        raise TypeError(f"{op}: offsets must be a tensor, got {type(offsets).__name__}")
    if offsets.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{op}: offsets must be int32 or int64, got {offsets.dtype}")
    if offsets.dim() != 1 or offsets.numel() < 1:
        raise ValueError(f"{op}: offsets must be 1-D with B+1 entries, got shape {tuple(offsets.shape)}")
    if int(offsets[0]) != 0:
        raise ValueError(f"{op}: offsets[0] must be 0, got {int(offsets[0])}")
    if bool((offsets[1:] < offsets[:-1]).any()):
        raise ValueError(f"{op}: offsets must be monotone (non-decreasing): a sequence cannot end "
                         "before it starts")
    if total is not None and int(offsets[-1]) != total:
        raise ValueError(f"{op}: offsets[-1] = {int(offsets[-1])} is out of range: it must equal the "
                         f"number of values, {total}")


def _check(op, tensors: dict, dims: dict, offsets=None) -> None:
    """Float tensors of the given ranks and one dtype, on one usable device with the offsets."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
        if t.dtype not in DTYPES.values():
            raise TypeError(f"{op}: {name} must be float16, bfloat16 or float32, got {t.dtype}")
        if t.dim() != dims[name]:
            raise ValueError(f"{op}: {name} must be {dims[name]}-D, got shape {tuple(t.shape)}")
    if len({t.dtype for t in tensors.values()}) > 1:
        raise TypeError(f"{op}: {', '.join(tensors)} must share one dtype")
    devices = {t.device for t in (*tensors.values(), *([offsets] if isinstance(offsets, torch.Tensor) else []))}
    if len(devices) > 1:
        raise ValueError(f"{op}: inputs are on different devices ({', '.join(map(str, devices))})")
    dev = devices.pop()
    if dev.type != "cuda" and not (dev.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"):
        raise ValueError(f"{op}: tensors must be on a CUDA device (or the CPU with TRITON_INTERPRET=1), "
                         f"got {dev}")


def _longest(op, offsets, max_len=None) -> int:
    longest = int((offsets[1:] - offsets[:-1]).max()) if offsets.numel() > 1 else 0
    if max_len is not None and longest > max_len:
        raise ValueError(f"{op}: a sequence has {longest} positions > max_len {max_len}")
    return longest


def jagged_to_padded_dense(values, offsets, max_len: int, padding_value: float = 0.0, config=None):
    """[B, max_len, D]; positions past a sequence's end hold padding_value, longer ones are cut."""
    _check("jagged_to_padded_dense", {"values": values}, {"values": 2}, offsets)
    check_offsets("jagged_to_padded_dense", offsets, values.shape[0])
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"jagged_to_padded_dense: max_len must be a positive int, got {max_len!r}")
    out = torch.empty((offsets.numel() - 1, max_len, values.shape[1]), dtype=values.dtype, device=values.device)
    if out.numel():
        _launch_copy(values.contiguous(), offsets, out, config or default_copy_config(values.shape[1]),
                     True, padding_value)
    return out


def padded_dense_to_jagged(dense, offsets, config=None):
    """values [offsets[-1], D] from dense [B, max_len, D]; every length must be <= max_len."""
    _check("padded_dense_to_jagged", {"dense": dense}, {"dense": 3}, offsets)
    check_offsets("padded_dense_to_jagged", offsets)
    if dense.shape[0] != offsets.numel() - 1:
        raise ValueError(f"padded_dense_to_jagged: dense has {dense.shape[0]} sequences, "
                         f"offsets {offsets.numel() - 1}")
    _longest("padded_dense_to_jagged", offsets, dense.shape[1])
    out = torch.empty((int(offsets[-1]), dense.shape[2]), dtype=dense.dtype, device=dense.device)
    if out.numel():
        _launch_copy(out, offsets, dense.contiguous(), config or default_copy_config(dense.shape[2]), False)
    return out


def jagged_softmax(values, offsets, max_len: int | None = None, config=None):
    """Softmax over each sequence's positions, column by column (max_len: a bound on lengths)."""
    _check("jagged_softmax", {"values": values}, {"values": 2}, offsets)
    check_offsets("jagged_softmax", offsets, values.shape[0])
    longest = _longest("jagged_softmax", offsets, max_len)
    max_len = max(1, longest if max_len is None else max_len)
    out = torch.empty_like(values)
    if values.numel():
        launch_softmax((values.contiguous(), offsets, max_len), out,
                       config or default_softmax_config(max_len, values.shape[1]))
    return out


def jagged_dense_bmm(x, offsets, y, max_len: int | None = None, config=None):
    """out [total, N]: each sequence's rows of x [total, K] times its own y[b] [K, N]."""
    _check("jagged_dense_bmm", {"x": x, "y": y}, {"x": 2, "y": 3}, offsets)
    check_offsets("jagged_dense_bmm", offsets, x.shape[0])
    if y.shape[0] != offsets.numel() - 1 or y.shape[1] != x.shape[1]:
        raise ValueError(f"jagged_dense_bmm: y must be [B={offsets.numel() - 1}, K={x.shape[1]}, N], "
                         f"got {tuple(y.shape)}")
    longest = _longest("jagged_dense_bmm", offsets, max_len)
    out = torch.empty((x.shape[0], y.shape[2]), dtype=x.dtype, device=x.device)
    if out.numel():
        launch_bmm((x.contiguous(), offsets, y.contiguous(), max(1, longest)), out, config or BMM_DEFAULT)
    return out


# ---- problems, references, peers, cost -----------------------------------------------------------
def make_offsets(batch: int, max_len: int, device) -> torch.Tensor:
    """Lengths uniform in [0, max_len] from a fixed seed: the same for every input set of a problem."""
    lengths = torch.randint(0, max_len + 1, (batch,), generator=torch.Generator().manual_seed(LENGTHS_SEED))
    offsets = torch.zeros(batch + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    return offsets.to(device)


def _total(p) -> int:
    return int(make_offsets(p.batch, p.max_len, "cpu")[-1])


def positions(offsets, total):
    """(sequence, position within it) of each of the total jagged rows."""
    seq = torch.searchsorted(offsets, torch.arange(total, device=offsets.device), right=True) - 1
    return seq, torch.arange(total, device=offsets.device) - offsets[seq]


def padded_reference(values, offsets, max_len, padding_value=0.0):
    seq, pos = positions(offsets, values.shape[0])
    keep = pos < max_len
    out = torch.full((offsets.numel() - 1, max_len, values.shape[1]), padding_value, dtype=torch.float64,
                     device=values.device)
    out[seq[keep], pos[keep]] = values[keep].double()
    return out


def softmax_reference(values, offsets):
    seq, _ = positions(offsets, values.shape[0])
    x = values.double()
    peak = torch.full((offsets.numel() - 1, x.shape[1]), -torch.inf, dtype=torch.float64, device=x.device)
    e = torch.exp(x - peak.scatter_reduce(0, seq[:, None].expand_as(x), x, "amax")[seq])
    return e / torch.zeros_like(peak).index_add_(0, seq, e)[seq]


def bmm_reference(x, offsets, y, max_len, chunk=256):
    """Padded float64 bmm a chunk of sequences at a time (bounded memory), then the real rows."""
    seq, pos = positions(offsets, x.shape[0])
    out = torch.empty((x.shape[0], y.shape[2]), dtype=torch.float64, device=x.device)
    for b0 in range(0, y.shape[0], chunk):
        lo, hi = int(offsets[b0]), int(offsets[min(b0 + chunk, y.shape[0])])
        part = padded_reference(x[lo:hi], offsets[b0:b0 + chunk + 1] - lo, max_len)
        dense = torch.bmm(part, y[b0:b0 + chunk].double())
        out[lo:hi] = dense[seq[lo:hi] - b0, pos[lo:hi]]
    return out


def _values(p, device, seed, rows, cols):
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn((rows, cols), generator=gen, device=device).to(DTYPES[p.dtype]), gen


def _to_padded_inputs(p, device, seed):  # (values, offsets, max_len)
    offsets = make_offsets(p.batch, p.max_len, device)
    return _values(p, device, seed, int(offsets[-1]), p.dim)[0], offsets, p.max_len


def _to_jagged_inputs(p, device, seed):  # (dense, offsets, total): padding positions hold noise
    offsets = make_offsets(p.batch, p.max_len, device)
    dense = _values(p, device, seed, p.batch * p.max_len, p.dim)[0].view(p.batch, p.max_len, p.dim)
    return dense, offsets, int(offsets[-1])


def _softmax_inputs(p, device, seed):  # (values, offsets, max_len, -inf padded copy for the peer)
    values, offsets, max_len = _to_padded_inputs(p, device, seed)
    values = 3 * values
    padded = torch.ops.aten._jagged_to_padded_dense_forward(values, [offsets], [max_len], -float("inf"))
    return values, offsets, max_len, padded


def _bmm_inputs(p, device, seed):  # (x, offsets, y, max_len, padded x for the peer)
    offsets = make_offsets(p.batch, p.max_len, device)
    x, gen = _values(p, device, seed, int(offsets[-1]), p.k)
    y = torch.randn((p.batch, p.k, p.n), generator=gen, device=device).to(DTYPES[p.dtype])
    padded = torch.ops.aten._jagged_to_padded_dense_forward(x, [offsets], [p.max_len], 0.0)
    return x, offsets, y, p.max_len, padded


def _spec(name, description, problem, make_inputs, out_shape, launch, reference, baseline, flops, nbytes):
    def make_output(p, inputs):
        return torch.empty(out_shape(p), dtype=inputs[0].dtype, device=inputs[0].device)
    return KernelSpec(name=name, description=description, problem=problem, make_inputs=make_inputs,
                      make_output=make_output, launch=launch, reference=reference, baseline=baseline,
                      flops=flops, bytes_moved=nbytes)


def _e(p):
    return element_size(p.dtype)


JAGGED_TO_PADDED = _spec(
    "jagged_to_padded_dense", "jagged [total, D] -> padded [B, max_len, D]; LOOP_L, BLOCK_L, BLOCK_D",
    JaggedProblem, _to_padded_inputs, lambda p: (p.batch, p.max_len, p.dim), launch_to_padded,
    lambda i: padded_reference(i[0], i[1], i[2]),
    lambda i: torch.ops.aten._jagged_to_padded_dense_forward(i[0], [i[1]], [i[2]], 0.0),
    lambda p: 0.0, lambda p: float((_total(p) + p.batch * p.max_len) * p.dim * _e(p) + 8 * (p.batch + 1)))

PADDED_TO_JAGGED = _spec(
    "padded_dense_to_jagged", "padded [B, max_len, D] -> jagged [total, D]; LOOP_L, BLOCK_L, BLOCK_D",
    JaggedProblem, _to_jagged_inputs, lambda p: (_total(p), p.dim), launch_to_jagged,
    lambda i: i[0].double()[positions(i[1], i[2])],
    lambda i: torch.ops.aten._padded_dense_to_jagged_forward(i[0], [i[1]], i[2]),
    lambda p: 0.0, lambda p: float(2 * _total(p) * p.dim * _e(p) + 8 * (p.batch + 1)))

JAGGED_SOFTMAX = _spec(
    "jagged_softmax", "softmax over each sequence's positions; ONLINE, BLOCK_L, BLOCK_D",
    JaggedProblem, _softmax_inputs, lambda p: (_total(p), p.dim), launch_softmax,
    lambda i: softmax_reference(i[0], i[1]), lambda i: torch.softmax(i[3], dim=1),
    lambda p: 5.0 * _total(p) * p.dim, lambda p: float(2 * _total(p) * p.dim * _e(p) + 8 * (p.batch + 1)))

JAGGED_DENSE_BMM = _spec(
    "jagged_dense_bmm", "jagged x [total, K] @ per-sequence y [B, K, N]; LOOP_L, BLOCK_M/N/K",
    JaggedBmmProblem, _bmm_inputs, lambda p: (_total(p), p.n), launch_bmm,
    lambda i: bmm_reference(i[0], i[1], i[2], i[3]), lambda i: torch.bmm(i[4], i[2]),
    lambda p: 2.0 * _total(p) * p.k * p.n,
    lambda p: float((_total(p) * (p.k + p.n) + p.batch * p.k * p.n) * _e(p) + 8 * (p.batch + 1)))
