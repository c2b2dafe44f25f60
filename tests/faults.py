"""Fault-injection kernels: each is an ordinary Tunable (y = 2 * x) that breaks in one way.

The sweep meets them as candidates like any other; tests check that each ends in its own status
with its cause, and that none is ever chosen as best.
"""
from __future__ import annotations

import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernels.spec import KernelSpec
from tuner.registry import Tunable
from tuner.space import Choice, Space


class VecProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    n: PositiveInt = 4096
    dtype: str = "float32"


@triton.jit
def double_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(y_ptr + offs, 2 * tl.load(x_ptr + offs, mask=m), mask=m)


@triton.jit
def hang_kernel(x_ptr, y_ptr, flag_ptr, n, BLOCK: tl.constexpr):
    # Spins until a flag that nobody sets: an endless loop on the GPU and in the interpreter.
    while tl.load(flag_ptr, volatile=True) == 0:
        pass
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


@triton.jit
def nan_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m)
    tl.store(y_ptr + offs, tl.where(offs == 17, float("nan"), 2 * x), mask=m)


@triton.jit
def partial_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    # Writes only the first half: the rest keeps whatever the buffer held.
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n // 2
    tl.store(y_ptr + offs, 2 * tl.load(x_ptr + offs, mask=m), mask=m)


@triton.jit
def some_inputs_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    # Right for most values, wrong for the rare |x| > 2.5: passes many spot checks, not ours.
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m)
    tl.store(y_ptr + offs, tl.where(tl.abs(x) > 2.5, x, 2 * x), mask=m)


@triton.jit
def bad_compile_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, 3)  # not a power of two: Triton refuses to compile this
    tl.store(y_ptr + offs, tl.load(x_ptr + offs))


def _inputs(problem, device, seed):
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    return (torch.randn(problem.n, generator=g, device=device),)


def _output(problem, inputs):
    return inputs[0].new_empty(inputs[0].shape)


def _grid(n, cfg):
    return (triton.cdiv(n, cfg["BLOCK"]),)


def _launch_with(kernel):
    def launch(inputs, out, cfg):
        (x,) = inputs
        return kernel[_grid(x.numel(), cfg)](x, out, x.numel(), BLOCK=cfg["BLOCK"])
    return launch


def _launch_hang(inputs, out, cfg):
    import torch

    (x,) = inputs
    flag = torch.zeros(1, dtype=torch.int32, device=x.device)
    return hang_kernel[_grid(x.numel(), cfg)](x, out, flag, x.numel(), BLOCK=cfg["BLOCK"])


_CACHE: dict = {}


def _launch_cached(inputs, out, cfg):
    # Computes once, then replays its first result for any new input.
    (x,) = inputs
    if "first" not in _CACHE:
        double_kernel[_grid(x.numel(), cfg)](x, out, x.numel(), BLOCK=cfg["BLOCK"])
        _CACHE["first"] = out.clone()
    out.copy_(_CACHE["first"])


def _spec(name, launch):
    return KernelSpec(
        name=name, description=f"fault injection: {name}", problem=VecProblem,
        make_inputs=_inputs, make_output=_output, launch=launch,
        reference=lambda inputs: 2 * inputs[0].double(), baseline=lambda inputs: 2 * inputs[0],
        flops=lambda p: float(p.n), bytes_moved=lambda p: 8.0 * p.n)


def _space(problem, hw):
    return Space((Choice("BLOCK", (64, 128)),))


GOOD = Tunable(_spec("good", _launch_with(double_kernel)), _space)
HANG = Tunable(_spec("hang", _launch_hang), _space)
NAN = Tunable(_spec("nan", _launch_with(nan_kernel)), _space)
PARTIAL = Tunable(_spec("partial", _launch_with(partial_kernel)), _space)
SOME_INPUTS = Tunable(_spec("some_inputs", _launch_with(some_inputs_kernel)), _space)
CACHED = Tunable(_spec("cached", _launch_cached), _space)
COMPILE_ERROR = Tunable(_spec("compile_error", _launch_with(bad_compile_kernel)), _space)
