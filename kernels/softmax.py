"""Row softmax: y[r, :] = softmax(x[r, :]), one Triton template with its transforms as switches.

Switches the search space flips:
  ONLINE   False: the whole row sits in registers (BLOCK >= the row), one read and one write.
           True:  the row is walked in BLOCK-wide steps twice: the first pass keeps a running max
                  and a running sum rescaled as the max grows (the "online" softmax), the second
                  writes exp(x - max) / sum. Two reads, but any row length fits.
  BLOCK    columns held at once (the whole padded row when ONLINE is False).
  ROWS     rows per program, held as a [ROWS, BLOCK] tile: short rows leave a warp idle otherwise.
  num_warps / num_stages   launch options; num_stages only pipelines the ONLINE loops.

Arithmetic is fp32 whatever the input dtype; the output has the input's dtype. The public entry
point `softmax(x, config=None)` takes any tensor and reduces over its last dimension.
"""
from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.spec import DTYPES, KernelSpec, check_device, element_size

LOG2E = tl.constexpr(1.4426950408889634)  # a constexpr: kernels may only read constexpr globals


class SoftmaxProblem(BaseModel):
    """rows x cols, softmax over cols."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rows: PositiveInt
    cols: PositiveInt
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@triton.jit
def softmax_kernel(x_ptr, y_ptr, n_rows, n_cols, stride_x, stride_y,
                   BLOCK: tl.constexpr, ROWS: tl.constexpr, ONLINE: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    # Rows past the end read the last row instead (never stored): no -inf rows, no NaN traffic.
    safe_rows = tl.minimum(rows, n_rows - 1).to(tl.int64)
    x_rows = x_ptr + safe_rows[:, None] * stride_x
    y_rows = y_ptr + safe_rows[:, None] * stride_y
    cols = tl.arange(0, BLOCK)
    if not ONLINE:
        mask = cols[None, :] < n_cols
        x = tl.load(x_rows + cols[None, :], mask=mask, other=-float("inf")).to(tl.float32)
        m = tl.max(x, axis=1)
        e = tl.exp2((x - m[:, None]) * LOG2E)
        y = e * (1.0 / tl.sum(e, axis=1))[:, None]
        tl.store(y_rows + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=row_ok[:, None] & mask)
    else:
        m = tl.full((ROWS,), -float("inf"), tl.float32)
        d = tl.zeros((ROWS,), tl.float32)
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            x = tl.load(x_rows + c[None, :], mask=c[None, :] < n_cols, other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=1))
            # Rescale the sum so far to the new max, then add this block's terms.
            d = d * tl.exp2((m - m_new) * LOG2E) + tl.sum(tl.exp2((x - m_new[:, None]) * LOG2E), axis=1)
            m = m_new
        inv = 1.0 / d
        for start in range(0, n_cols, BLOCK):
            c = start + cols
            mask = c[None, :] < n_cols
            x = tl.load(x_rows + c[None, :], mask=mask, other=-float("inf")).to(tl.float32)
            y = tl.exp2((x - m[:, None]) * LOG2E) * inv[:, None]
            tl.store(y_rows + c[None, :], y.to(y_ptr.dtype.element_ty), mask=row_ok[:, None] & mask)


def default_config(n_cols: int) -> dict:
    """Rows up to 32768 wide are held in registers (one read of x), 64 fp32 values per thread at
    most: 16 warps for a row wider than 8192. On the H100 a 32768-wide bf16 row ran in 190 us that
    way against 207 us for the best online loop (4096 rows; docs/results/softmax_probe.json). Longer
    rows take the online loop."""
    width = triton.next_power_of_2(max(n_cols, 16))
    if width <= 8192:
        return {"ONLINE": False, "BLOCK": width, "ROWS": max(1, min(16, 1024 // width)),
                "num_warps": 4 if width <= 2048 else 8, "num_stages": 1}
    if width <= 32768:
        return {"ONLINE": False, "BLOCK": width, "ROWS": 1, "num_warps": 16, "num_stages": 1}
    return {"ONLINE": True, "BLOCK": 16384, "ROWS": 1, "num_warps": 16, "num_stages": 3}


def launch(inputs, out: torch.Tensor, config) -> object:
    (x,) = inputs
    n_rows, n_cols = x.shape
    if not config["ONLINE"] and config["BLOCK"] < n_cols:
        raise ValueError(f"softmax: BLOCK={config['BLOCK']} < row length {n_cols} needs ONLINE=True")
    grid = (triton.cdiv(n_rows, config["ROWS"]),)
    return softmax_kernel[grid](
        x, out, n_rows, n_cols, x.stride(0), out.stride(0),
        BLOCK=config["BLOCK"], ROWS=config["ROWS"], ONLINE=bool(config["ONLINE"]),
        num_warps=config["num_warps"], num_stages=config["num_stages"])


def check_inputs(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"softmax takes a tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError("softmax takes a tensor of at least one dimension, got a scalar")
    if x.dtype not in DTYPES.values():
        raise TypeError(f"softmax takes float16, bfloat16 or float32, got {x.dtype}")
    check_device("softmax", x)


def softmax(x: torch.Tensor, config=None) -> torch.Tensor:
    """Softmax over the last dimension of x (DEFAULT by row length unless a config is given)."""
    check_inputs(x)
    if x.numel() == 0:
        return torch.empty_like(x)
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.empty_like(x2)
    launch((x2,), out, config or default_config(x2.shape[1]))
    return out.view(x.shape)


def make_inputs(problem: SoftmaxProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    # Scale 3 spreads the logits so that the max subtraction matters.
    x = 3 * torch.randn((problem.rows, problem.cols), generator=gen, device=device)
    return (x.to(DTYPES[problem.dtype]),)


def make_output(problem: SoftmaxProblem, inputs) -> torch.Tensor:
    return torch.empty_like(inputs[0])


def reference(inputs) -> torch.Tensor:
    return torch.softmax(inputs[0].double(), dim=-1)


def baseline(inputs) -> torch.Tensor:
    return torch.softmax(inputs[0], dim=-1)


def flops(problem: SoftmaxProblem) -> float:
    # Per element: max compare, subtract, exp, add to the sum, multiply by 1/sum.
    return 5.0 * problem.rows * problem.cols


def bytes_moved(problem: SoftmaxProblem) -> float:
    return 2.0 * problem.rows * problem.cols * element_size(problem.dtype)


SPEC = KernelSpec(
    name="softmax",
    description="row softmax; whole row in registers or online (looped), rows per program, BLOCK",
    problem=SoftmaxProblem, make_inputs=make_inputs, make_output=make_output, launch=launch,
    reference=reference, baseline=baseline, flops=flops, bytes_moved=bytes_moved,
)
