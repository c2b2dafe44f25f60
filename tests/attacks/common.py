"""What the attack kernels share: y = 2 * x on a vector, its Triton kernels, and a Tunable factory
whose space has one searched switch, `cheat`, that turns the attack on (off: an honest kernel)."""
from __future__ import annotations

import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.spec import KernelSpec
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Choice, Const, Space

BLOCK = 128


class VecProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    n: PositiveInt = 1000
    dtype: str = "float32"


@triton.jit
def double_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(y_ptr + offs, 2 * tl.load(x_ptr + offs, mask=m), mask=m)


@triton.jit
def copy_kernel(src_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(y_ptr + offs, tl.load(src_ptr + offs, mask=m), mask=m)


def grid(n):
    return (triton.cdiv(n, BLOCK),)


def double(x, out):
    return double_kernel[grid(x.numel())](x, out, x.numel(), BLOCK=BLOCK)


def vec_inputs(problem, device, seed):
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    return (torch.randn(problem.n, generator=g, device=device),)


def vec_tunable(name: str, launch, problem=VecProblem, **spec) -> Tunable:
    """A y = 2x Tunable whose launcher takes the config's `cheat` switch."""
    fields = dict(make_inputs=vec_inputs, make_output=lambda p, i: i[0].new_empty(i[0].shape),
                  reference=lambda i: 2 * i[0].double(), baseline=lambda i: 2 * i[0],
                  flops=lambda p: float(p.n), bytes_moved=lambda p: 8.0 * p.n)
    fields.update(spec)
    kernel = KernelSpec(name=name, description=f"attack: {name}", problem=problem, launch=launch,
                        **fields)
    return Tunable(kernel, lambda problem, hw: Space((Choice("cheat", (False, True)), Const("BLOCK", BLOCK))))
