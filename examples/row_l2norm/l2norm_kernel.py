"""Row L2-normalize, y[r, :] = x[r, :] / sqrt(sum(x[r, :]^2) + eps): a complete kernel plug-in.

Everything kernelevolve needs to verify and time this operator is in this one file: the problem
(a pydantic model), the Triton template, its launcher taking (inputs, out, config), the float64
reference, the torch peer timed beside it, the cost model, and the `KernelSpec` that ties them
together. The search space lives beside it, in `plugin.py`.

The template walks each row in BLOCK-wide steps twice (sum of squares, then scale), ROWS rows per
program; BLOCK and ROWS are `tl.constexpr` so each config compiles to its own kernel.
"""
from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.spec import DTYPES, KernelSpec, element_size

EPS = 1e-6


class L2NormProblem(BaseModel):
    """rows x cols, normalized over cols. A problem is one entry of `problems:` in the YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rows: PositiveInt
    cols: PositiveInt
    dtype: Literal["float16", "float32"] = "float16"


@triton.jit
def l2norm_kernel(x_ptr, y_ptr, n_rows, n_cols, stride_x, stride_y, eps,
                  BLOCK: tl.constexpr, ROWS: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    cols = tl.arange(0, BLOCK)
    acc = tl.zeros((ROWS, BLOCK), tl.float32)
    for start in range(0, n_cols, BLOCK):
        c = start + cols
        mask = row_ok[:, None] & (c[None, :] < n_cols)
        x = tl.load(x_ptr + rows[:, None] * stride_x + c[None, :], mask=mask, other=0.0).to(tl.float32)
        acc += x * x
    inv = 1.0 / tl.sqrt(tl.sum(acc, axis=1) + eps)
    for start in range(0, n_cols, BLOCK):
        c = start + cols
        mask = row_ok[:, None] & (c[None, :] < n_cols)
        x = tl.load(x_ptr + rows[:, None] * stride_x + c[None, :], mask=mask, other=0.0).to(tl.float32)
        y = x * inv[:, None]
        tl.store(y_ptr + rows[:, None] * stride_y + c[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)


def launch(inputs, out: torch.Tensor, config) -> object:
    """One config of the space -> one launch that writes `out` (the tuner poisons it first)."""
    (x,) = inputs
    n_rows, n_cols = x.shape
    grid = (triton.cdiv(n_rows, config["ROWS"]),)
    return l2norm_kernel[grid](x, out, n_rows, n_cols, x.stride(0), out.stride(0), EPS,
                               BLOCK=config["BLOCK"], ROWS=config["ROWS"],
                               num_warps=config["num_warps"], num_stages=config["num_stages"])


def make_inputs(problem: L2NormProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn((problem.rows, problem.cols), generator=gen, device=device)
    return (x.to(DTYPES[problem.dtype]),)


def make_output(problem: L2NormProblem, inputs) -> torch.Tensor:
    return torch.empty_like(inputs[0])


def reference(inputs) -> torch.Tensor:
    x = inputs[0].double()
    return x / torch.sqrt((x * x).sum(dim=-1, keepdim=True) + EPS)


def baseline(inputs) -> torch.Tensor:
    """What you would write without a custom kernel: timed beside every sweep's winner."""
    x = inputs[0]
    return x / torch.sqrt((x.float() * x.float()).sum(dim=-1, keepdim=True) + EPS).to(x.dtype)


def flops(problem: L2NormProblem) -> float:
    return 3.0 * problem.rows * problem.cols  # square, add, scale


def bytes_moved(problem: L2NormProblem) -> float:
    return 2.0 * problem.rows * problem.cols * element_size(problem.dtype)  # read x once, write y


SPEC = KernelSpec(
    name="row_l2norm",
    description="row L2-normalize; BLOCK-wide steps over the row, ROWS rows per program",
    problem=L2NormProblem, make_inputs=make_inputs, make_output=make_output, launch=launch,
    reference=reference, baseline=baseline, flops=flops, bytes_moved=bytes_moved,
)
