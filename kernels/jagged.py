"""Jagged tensors (as in fbgemm / HSTU): B sequences of varying length stored back to back.

A jagged tensor is `values` [total, D] with `offsets` [B+1]: sequence b is
values[offsets[b]:offsets[b+1]] (possibly empty). The operators, a module each:
  jagged_to_padded_dense  -> [B, max_len, D], padding where a sequence is shorter; longer ones
                             are truncated at max_len (fbgemm's semantics)
  padded_dense_to_jagged  the inverse: [B, max_len, D] -> values (every length must be <= max_len)
  jagged_softmax          kernels/jagged_softmax.py: softmax over each sequence's positions
  jagged_dense_bmm        kernels/jagged_bmm.py: out[seq b] = x[seq b] @ y[b], y [B, K, N]
This file holds the two conversions and what the operators share: JaggedProblem (conversions and
softmax), the offsets and tensor checks, the fixed-seed lengths, the float64 padded reference and
the KernelSpec assembly.
The conversions share one template, its direction a constexpr. Switches:
  LOOP_L    False: a grid axis over blocks of positions up to max_len (blocks past a short
            sequence do nothing: at 50% fill, half the programs exit at once). True: one program
            per sequence and column block loops over its own blocks.
  BLOCK_L, BLOCK_D   tile sizes (positions, columns)
The torch peers are aten's own jagged<->padded conversions (what nested tensors use).
Sequence lengths are uniform in [0, max_len] (50% average fill) and depend only on the problem,
so the cost models count the exact number of positions.
"""
from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.spec import DTYPES, KernelSpec, check_device, element_size

LENGTHS_SEED = 2024  # lengths are a property of the problem, values change with the seed


class JaggedProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    batch: PositiveInt
    max_len: PositiveInt
    dim: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


# ---- shared by the jagged operators: checks, lengths, references, specs ------------------------
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


def check_tensors(op, tensors: dict, dims: dict, offsets=None) -> None:
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
    check_device(op, *tensors.values(), *([offsets] if isinstance(offsets, torch.Tensor) else []))


def longest_sequence(op, offsets, max_len=None) -> int:
    """The longest sequence's length; raises where it exceeds max_len (when given)."""
    longest = int((offsets[1:] - offsets[:-1]).max()) if offsets.numel() > 1 else 0
    if max_len is not None and longest > max_len:
        raise ValueError(f"{op}: a sequence has {longest} positions > max_len {max_len}")
    return longest


def pow2(n: int, low: int = 16) -> int:
    """n rounded up to a power of two, at least `low` (default tile widths)."""
    return max(low, triton.next_power_of_2(n))


def make_offsets(batch: int, max_len: int, device) -> torch.Tensor:
    """Lengths uniform in [0, max_len] from a fixed seed: the same for every input set of a problem."""
    lengths = torch.randint(0, max_len + 1, (batch,), generator=torch.Generator().manual_seed(LENGTHS_SEED))
    offsets = torch.zeros(batch + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    return offsets.to(device)


def total_positions(p) -> int:
    """The number of jagged rows of problem p (its lengths are fixed by the problem)."""
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


def random_values(p, device, seed, rows, cols):
    """(a [rows, cols] normal tensor in p.dtype, the generator that drew it, for further draws)"""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn((rows, cols), generator=gen, device=device).to(DTYPES[p.dtype]), gen


def to_padded_inputs(p, device, seed):  # (values, offsets, max_len)
    offsets = make_offsets(p.batch, p.max_len, device)  # its total from the problem: no read of a device tensor
    return random_values(p, device, seed, total_positions(p), p.dim)[0], offsets, p.max_len


def jagged_spec(name, description, problem, make_inputs, out_shape, launch, reference, baseline, flops,
                nbytes, reduction=None):
    """A KernelSpec whose output is an empty tensor of out_shape(p), in the inputs' dtype and device."""
    def make_output(p, inputs):
        return torch.empty(out_shape(p), dtype=inputs[0].dtype, device=inputs[0].device)
    return KernelSpec(name=name, description=description, problem=problem, make_inputs=make_inputs,
                      make_output=make_output, launch=launch, reference=reference, baseline=baseline,
                      flops=flops, bytes_moved=nbytes, reduction=reduction)


# ---- jagged <-> padded dense: template -----------------------------------------------------------
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


def default_copy_config(dim: int) -> dict:
    return {"LOOP_L": False, "BLOCK_L": 16, "BLOCK_D": min(128, pow2(dim)), "num_warps": 4, "num_stages": 1}


# ---- public entry points -----------------------------------------------------------------------
def jagged_to_padded_dense(values, offsets, max_len: int, padding_value: float = 0.0, config=None):
    """[B, max_len, D]; positions past a sequence's end hold padding_value, longer ones are cut."""
    check_tensors("jagged_to_padded_dense", {"values": values}, {"values": 2}, offsets)
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
    check_tensors("padded_dense_to_jagged", {"dense": dense}, {"dense": 3}, offsets)
    check_offsets("padded_dense_to_jagged", offsets)
    if dense.shape[0] != offsets.numel() - 1:
        raise ValueError(f"padded_dense_to_jagged: dense has {dense.shape[0]} sequences, "
                         f"offsets {offsets.numel() - 1}")
    longest_sequence("padded_dense_to_jagged", offsets, dense.shape[1])
    out = torch.empty((int(offsets[-1]), dense.shape[2]), dtype=dense.dtype, device=dense.device)
    if out.numel():
        _launch_copy(out, offsets, dense.contiguous(), config or default_copy_config(dense.shape[2]), False)
    return out


# ---- problems, references, peers, cost -----------------------------------------------------------
def _to_jagged_inputs(p, device, seed):  # (dense, offsets, total): padding positions hold noise
    offsets = make_offsets(p.batch, p.max_len, device)
    dense = random_values(p, device, seed, p.batch * p.max_len, p.dim)[0].view(p.batch, p.max_len, p.dim)
    return dense, offsets, total_positions(p)


def _e(p):
    return element_size(p.dtype)


JAGGED_TO_PADDED = jagged_spec(
    "jagged_to_padded_dense", "jagged [total, D] -> padded [B, max_len, D]; LOOP_L, BLOCK_L, BLOCK_D",
    JaggedProblem, to_padded_inputs, lambda p: (p.batch, p.max_len, p.dim), launch_to_padded,
    lambda i: padded_reference(i[0], i[1], i[2]),
    lambda i: torch.ops.aten._jagged_to_padded_dense_forward(i[0], [i[1]], [i[2]], 0.0),
    lambda p: 0.0,
    lambda p: float((total_positions(p) + p.batch * p.max_len) * p.dim * _e(p) + 8 * (p.batch + 1)))

PADDED_TO_JAGGED = jagged_spec(
    "padded_dense_to_jagged", "padded [B, max_len, D] -> jagged [total, D]; LOOP_L, BLOCK_L, BLOCK_D",
    JaggedProblem, _to_jagged_inputs, lambda p: (total_positions(p), p.dim), launch_to_jagged,
    lambda i: i[0].double()[positions(i[1], i[2])],
    lambda i: torch.ops.aten._padded_dense_to_jagged_forward(i[0], [i[1]], i[2]),
    lambda p: 0.0, lambda p: float(2 * total_positions(p) * p.dim * _e(p) + 8 * (p.batch + 1)))
