"""DLRM dot interaction, fused: per sample, the dot products of every pair of its F feature
vectors, gathered to the strictly triangular pairs in one kernel (no [B, F, F] intermediate).

Input T [B, F, D] (the dense feature and the F-1 pooled embeddings of each sample, stacked);
output [B, F*(F-1)/2] with DLRM's order: pairs (i, j), j < i, by i then j, i.e. DLRM's
`Z[:, li, lj]` with arch_interaction_itself=False (the diagonal is left out; Z is symmetric, so
this is also its strict upper triangle). launch_concat also writes DLRM's next step, the concat
[dense vector | pairs] (zero-padded to an aligned width), in the same pass.

Switches:
  USE_DOT               True: Z = T T^T on tensor cores (tl.dot on a [F_PAD, BLOCK_D] tile with
                        F padded to a power of two >= 16). False: broadcast-multiply and sum on the
                        CUDA cores, [F_PAD, F_PAD, BLOCK_D] at a time: no padding to 16, more
                        registers.
  BLOCK_D               the feature-vector slice per step of the D loop
  SAMPLES_PER_PROGRAM   samples one program handles, one after another
  num_warps / num_stages
"""
from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from kernelevolve.kernels import tuned
from kernelevolve.kernels.spec import DTYPES, KernelSpec, check_device, element_size


class InteractionProblem(BaseModel):
    """batch samples of `features` vectors of `dim` each (DLRM Criteo: 27 features of 128)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    batch: PositiveInt
    features: int = Field(27, ge=2, le=128)
    dim: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@triton.jit
def dot_interaction_kernel(t_ptr, out_ptr, batch, F, D, stride_tb, stride_tf, stride_ob, pair_col0,
                           out_width, F_PAD: tl.constexpr, BLOCK_D: tl.constexpr,
                           SAMPLES_PER_PROGRAM: tl.constexpr, USE_DOT: tl.constexpr,
                           CONCAT: tl.constexpr, PAD_BLOCK: tl.constexpr):
    f = tl.arange(0, F_PAD)
    fmask = f < F
    i = f[:, None]
    j = f[None, :]
    slot = (i * (i - 1)) // 2 + j  # DLRM's position of pair (i, j), j < i
    keep = (j < i) & (i < F)
    dcols = tl.arange(0, BLOCK_D)
    for s in range(0, SAMPLES_PER_PROGRAM):
        b = tl.program_id(0) * SAMPLES_PER_PROGRAM + s
        if b < batch:
            rows = t_ptr + b.to(tl.int64) * stride_tb + f[:, None] * stride_tf
            out_row = out_ptr + b.to(tl.int64) * stride_ob
            acc = tl.zeros((F_PAD, F_PAD), tl.float32)
            for d0 in range(0, D, BLOCK_D):
                d = d0 + dcols
                t = tl.load(rows + d[None, :], mask=fmask[:, None] & (d < D)[None, :], other=0.0)
                if CONCAT:  # feature 0 (the dense vector) is copied to out[b, :D] from the tile
                    tl.store(out_row + d[None, :] + 0 * f[:, None], t.to(out_ptr.dtype.element_ty),
                             mask=(f == 0)[:, None] & (d < D)[None, :])
                if USE_DOT:
                    acc = tl.dot(t, tl.trans(t), acc)
                else:
                    tf = t.to(tl.float32)
                    acc += tl.sum(tf[:, None, :] * tf[None, :, :], axis=2)
            tl.store(out_row + pair_col0 + slot, acc.to(out_ptr.dtype.element_ty), mask=keep)
            if CONCAT:  # columns past the pairs (padding to an aligned width) are zeros
                pad = pair_col0 + (F * (F - 1)) // 2 + tl.arange(0, PAD_BLOCK)
                tl.store(out_row + pad, tl.zeros((PAD_BLOCK,), tl.float32).to(out_ptr.dtype.element_ty),
                         mask=pad < out_width)


def padded_features(features: int, use_dot: bool) -> int:
    """tl.dot needs tiles of at least 16 rows; the CUDA-core path only a power of two."""
    return max(16 if use_dot else 1, triton.next_power_of_2(features))


DEFAULT_CONFIG = {"USE_DOT": True, "BLOCK_D": 64, "SAMPLES_PER_PROGRAM": 2, "num_warps": 4, "num_stages": 2}


def launch(inputs, out: torch.Tensor, config) -> object:
    """out [B, F*(F-1)/2]: the pairs."""
    return _launch(inputs[0], out, config, concat=False)


def launch_concat(t: torch.Tensor, out: torch.Tensor, config) -> object:
    """out [B, W >= D + F*(F-1)/2] = [t[:, 0] | the pairs | zeros]: DLRM's next step (the concat of
    the dense vector with the pairs) done in the same pass, padded with zeros to W columns so
    that the next layer's K can be 16-byte aligned (its weight padded with zero rows)."""
    batch, F, D = t.shape
    pairs_end = D + F * (F - 1) // 2
    if out.shape[0] != batch or out.shape[1] < pairs_end or out.stride(1) != 1:
        raise ValueError(f"the concatenated output must be [{batch}, >= {pairs_end}] with contiguous rows, "
                         f"got {tuple(out.shape)} strides {tuple(out.stride())}")
    return _launch(t, out, config, concat=True)


def _launch(t, out, config, concat: bool):
    batch, F, D = t.shape
    if t.stride(2) != 1:
        raise ValueError("dot_interaction needs the feature vectors contiguous (t.stride(2) == 1)")
    grid = (triton.cdiv(batch, config["SAMPLES_PER_PROGRAM"]),)
    use_dot = bool(config["USE_DOT"])
    pad = out.shape[1] - (D if concat else 0) - F * (F - 1) // 2
    return dot_interaction_kernel[grid](
        t, out, batch, F, D, t.stride(0), t.stride(1), out.stride(0), D if concat else 0, out.shape[1],
        F_PAD=padded_features(F, use_dot), BLOCK_D=config["BLOCK_D"],
        SAMPLES_PER_PROGRAM=config["SAMPLES_PER_PROGRAM"], USE_DOT=use_dot, CONCAT=concat,
        PAD_BLOCK=triton.next_power_of_2(max(pad, 1)), num_warps=config["num_warps"],
        num_stages=config["num_stages"])


def check_inputs(t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"dot_interaction takes a tensor [B, F, D], got {type(t).__name__}")
    if t.dim() != 3 or t.shape[1] < 2 or t.shape[1] > 128 or t.shape[2] < 1:
        raise ValueError(f"dot_interaction takes [B, F, D] with 2 <= F <= 128 and D >= 1, got {tuple(t.shape)}")
    if t.dtype not in DTYPES.values():
        raise TypeError(f"dot_interaction takes float16, bfloat16 or float32, got {t.dtype}")
    check_device("dot_interaction", t)


def dot_interaction(t: torch.Tensor, config=None) -> torch.Tensor:
    """[B, F*(F-1)/2]: the pairwise dot products of each sample's features, DLRM's order."""
    check_inputs(t)
    batch, F, _ = t.shape
    out = torch.empty((batch, F * (F - 1) // 2), dtype=t.dtype, device=t.device)
    if batch:
        if not config:  # the tuned table's config (kernels/tuned.py), else DEFAULT_CONFIG
            config = tuned.config_for("dot_interaction", {"batch": batch, "features": F, "dim": t.shape[2]},
                                      t.dtype, t.device, DEFAULT_CONFIG)
        launch((t.contiguous(),), out, config)
    return out


def make_inputs(problem: InteractionProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    t = torch.randn((problem.batch, problem.features, problem.dim), generator=gen, device=device)
    return (t.to(DTYPES[problem.dtype]),)


def make_output(problem: InteractionProblem, inputs) -> torch.Tensor:
    F = problem.features
    return torch.empty((problem.batch, F * (F - 1) // 2), dtype=inputs[0].dtype, device=inputs[0].device)


def _pairs(F: int, device):
    li, lj = torch.tril_indices(F, F, offset=-1, device=device)  # row-major: DLRM's li, lj
    return li, lj


def reference(inputs) -> torch.Tensor:
    t = inputs[0].double()
    li, lj = _pairs(t.shape[1], t.device)
    return torch.bmm(t, t.transpose(1, 2))[:, li, lj]


def baseline(inputs) -> torch.Tensor:
    """DLRM's own eager code: bmm, then the triangular gather."""
    t = inputs[0]
    li, lj = _pairs(t.shape[1], t.device)
    return torch.bmm(t, t.transpose(1, 2))[:, li, lj]


def flops(problem: InteractionProblem) -> float:
    # The useful work: one D-long dot product per output pair.
    F = problem.features
    return 2.0 * problem.batch * (F * (F - 1) // 2) * problem.dim


def bytes_moved(problem: InteractionProblem) -> float:
    F = problem.features
    return float(problem.batch * (F * problem.dim + F * (F - 1) // 2) * element_size(problem.dtype))


SPEC = KernelSpec(
    name="dot_interaction",
    description="DLRM dot interaction + strictly triangular gather, fused; tl.dot or CUDA cores, "
                "BLOCK_D, samples per program",
    problem=InteractionProblem, make_inputs=make_inputs, make_output=make_output, launch=launch,
    reference=reference, baseline=baseline, flops=flops, bytes_moved=bytes_moved,
    reduction=lambda p: p.dim,  # each pairwise interaction is a dot product over dim
)
