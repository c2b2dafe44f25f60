"""Fault-injection kernels: each is an ordinary Tunable (y = 2 * x) that breaks in one way.

The sweep meets them as candidates like any other; tests check that each ends in its own status
with its cause, and that none is ever chosen as best.
"""
from __future__ import annotations

import os
import signal
import tempfile

import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.spec import KernelSpec
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Choice, Const, Space


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
def oob_write_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    # Correct values, but one extra block past the end of y: writes outside its output.
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, 2 * tl.load(x_ptr + offs, mask=offs < n), mask=offs < n + BLOCK)


@triton.jit
def illegal_address_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    # Stores a terabyte past the output: an illegal memory access on the GPU (GPU only).
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs + (1 << 40), tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


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
    # One extra program for the out-of-bounds writer, so its extra block is really stored.
    return (triton.cdiv(n, cfg["BLOCK"]) + (1 if cfg.get("fault") == "oob_write" else 0),)


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


def _launch_crash(inputs, out, cfg):
    os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-candidate


def _launch_flaky_crash(inputs, out, cfg):
    # Dies the first time a given worker owner runs it, then works: the retry policy's case.
    marker = os.path.join(tempfile.gettempdir(), f"kernelevolve-flaky-{os.getppid()}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return _launch_with(double_kernel)(inputs, out, cfg)


def _launch_raise(inputs, out, cfg):
    raise RuntimeError("launcher bug: index out of range in grid computation")


def _launch_out_of_resources(inputs, out, cfg):
    # A GEMM tile far beyond Hopper's 227 KB of shared memory per program (GPU only).
    import torch

    from kernelevolve.kernels.matmul import launch

    a = torch.randn(512, 512, device=out.device, dtype=torch.float16)
    c = torch.empty(512, 512, device=out.device, dtype=torch.float16)
    launch((a, a), c, {"BLOCK_M": 256, "BLOCK_N": 256, "BLOCK_K": 256, "GROUP_M": 1,
                       "SPLIT_K": 1, "num_warps": 8, "num_stages": 5})


LAUNCHERS = {
    "none": _launch_with(double_kernel),
    "compile_error": _launch_with(bad_compile_kernel),
    "hang": _launch_hang,
    "nan": _launch_with(nan_kernel),
    "partial": _launch_with(partial_kernel),
    "some_inputs": _launch_with(some_inputs_kernel),
    "cached": _launch_cached,
    "oob_write": _launch_with(oob_write_kernel),
    "crash": _launch_crash,
    "flaky_crash": _launch_flaky_crash,
    "raise": _launch_raise,
    "illegal_address": _launch_with(illegal_address_kernel),
    "out_of_resources": _launch_out_of_resources,
}
# What each fault must end as (flaky_crash: retried once in a fresh process, then ok).
EXPECTED = {"none": "ok", "compile_error": "compile_error", "hang": "timeout", "nan": "incorrect",
            "partial": "incorrect", "some_inputs": "incorrect", "cached": "incorrect",
            "oob_write": "incorrect", "crash": "runtime_error", "flaky_crash": "ok",
            "raise": "runtime_error", "illegal_address": "runtime_error",
            "out_of_resources": "out_of_resources"}
GPU_ONLY = ("illegal_address", "out_of_resources")


def _launch_fault(inputs, out, cfg):
    return LAUNCHERS[cfg["fault"]](inputs, out, cfg)


def _spec(name, launch):
    return KernelSpec(
        name=name, description=f"fault injection: {name}", problem=VecProblem,
        make_inputs=_inputs, make_output=_output, launch=launch,
        reference=lambda inputs: 2 * inputs[0].double(), baseline=lambda inputs: 2 * inputs[0],
        flops=lambda p: float(p.n), bytes_moved=lambda p: 8.0 * p.n)


def _space(problem, hw):
    return Space((Choice("BLOCK", (64, 128)),))


def _fault_space(problem, hw):
    kinds = [k for k in LAUNCHERS if hw.interpreter is False or k not in GPU_ONLY]
    # hang, crash and flaky_crash are for targeted tests with short timeouts, not every sweep
    return Space((Choice("fault", tuple(kinds)), Const("BLOCK", 64)))


HANG = Tunable(_spec("hang", _launch_hang), _space)
GOOD = Tunable(_spec("good", _launch_with(double_kernel)), _space)
# Every fault as one kernel whose `fault` switch picks the way it breaks: a grid sweep meets all.
FAULTS = Tunable(_spec("faults", _launch_fault), _fault_space)
