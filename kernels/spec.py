"""The small contract between a kernel module and the tuner.

A kernel module (kernels/<op>.py, or a user's own file) describes one operator family with a
`KernelSpec`: how to make a problem's inputs, how to launch the Triton template for one config,
the higher-precision reference, the torch peer that is timed beside it, and the cost model. The
tuner imports this type and nothing else from the kernel side; kernels never import the tuner.
"""
from __future__ import annotations

import contextvars
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

# The dtypes a problem may name, by the names used in experiment files.
DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}

Inputs = tuple  # a kernel's positional inputs, whatever its launcher takes
Config = Mapping[str, Any]  # one point of the search space: constexprs plus num_warps/num_stages


@dataclass(frozen=True)
class KernelSpec:
    """Everything the tuner needs to verify and time one operator family.

    problem:      a pydantic model class; one instance is one problem (shapes, dtype).
    make_inputs:  (problem, device, seed) -> inputs; fresh random values, never zeros.
    make_output:  (problem, inputs) -> an output tensor; the tuner poisons it before each run.
    launch:       (inputs, out, config) -> whatever the Triton launch returned (a compiled kernel
                  handle on a GPU, where the tuner reads registers and spills); writes `out`.
    reference:    inputs -> the result in higher precision (float64 where the device has it).
    baseline:     inputs -> the torch peer (cuBLAS for matmul) timed in the same run.
    flops/bytes_moved: problem -> the work and the bytes a kernel moves that reads each input
                  element it needs once (what "% of the copy bandwidth" is reported against).
    min_bytes:    problem -> the fewest bytes any correct kernel must move between DRAM and the
                  chip, which the judge's ceiling check holds a latency to (None, the default:
                  bytes_moved). Fewer where an input is read more than once: an embedding bag
                  that names a table row twice can read it once (tuner/measure/guards.py).
    reduction:    problem -> how many products each output element sums (K of a GEMM), for
                  kernels built on dot products; None (the default) means none is declared (1).
                  The tuner's tolerance grows with it at the rate of an fp32 accumulator, and an
                  fp32 output with a declared reduction is allowed Triton's tf32 dot
                  (tuner/measure/verify.py: tolerance_for).
    vendor_configs: problem -> the configs that run the vendor library instead of Triton (the
                  GEMM family: {"IMPL": "vendor"}, and cuBLAS on padded operands where rows are
                  misaligned, kernels/gemm_vendor.py), evaluated first in every study so that
                  nothing is dispatched that is slower than them. Honoured only for the built-in
                  kernels (tuner/measure/vendor.py): a plug-in may declare them, and its
                  candidates are then judged as any other, which fails one that launches no
                  Triton kernel.
    """

    name: str
    description: str
    problem: type
    make_inputs: Callable[[Any, torch.device, int], Inputs]
    make_output: Callable[[Any, Inputs], torch.Tensor]
    launch: Callable[[Inputs, torch.Tensor, Config], Any]
    reference: Callable[[Inputs], torch.Tensor]
    baseline: Callable[[Inputs], torch.Tensor]
    flops: Callable[[Any], float]
    bytes_moved: Callable[[Any], float]
    reduction: Callable[[Any], int] | None = None
    vendor_configs: Callable[[Any], list[Mapping[str, Any]]] | None = None
    min_bytes: Callable[[Any], float] | None = None


def least_bytes(spec: KernelSpec, problem) -> float:
    """The fewest bytes any correct kernel of `spec` moves for `problem` (min_bytes, else
    bytes_moved): what the ceiling check holds a latency to."""
    return float((spec.min_bytes or spec.bytes_moved)(problem))


def reduction_length(spec: KernelSpec, problem) -> int:
    """The spec's declared reduction length for a problem (1 when it declares none)."""
    return max(1, int(spec.reduction(problem))) if spec.reduction is not None else 1


def element_size(dtype_name: str) -> int:
    return torch.empty((), dtype=DTYPES[dtype_name]).element_size()


# Compiling a config ahead of its GPU run (the tuner's compile slots) needs only what a Triton
# specialization reads of the inputs: shapes, strides, dtypes and address alignments. Meta tensors
# carry exactly those, with no bytes and no CUDA context. Inside `described()` a launch is only
# ever compiled, never run (the tuner's compile_only), so the ops accept meta tensors there and
# nowhere else: launched for real, a meta tensor's address 0 would be read by the GPU.
_DESCRIBED = contextvars.ContextVar("kernelevolve_described_inputs", default=None)


@contextmanager
def described(sm_count: int = 0):
    """Launches inside compile on meta tensors (described inputs) instead of device tensors.
    `sm_count`: the SMs of the GPU the compiled kernel will run on, as its target's profile says
    (0: not known here), for launchers that size a grid by it (a persistent kernel's programs):
    read here, the compile asks the CUDA driver nothing."""
    token = _DESCRIBED.set(int(sm_count))
    try:
        yield
    finally:
        _DESCRIBED.reset(token)


def describing(device: torch.device) -> bool:
    """Whether `device` is a described input's, inside described()."""
    return device.type == "meta" and _DESCRIBED.get() is not None


def described_sm_count() -> int:
    """The SM count described() was given (0: none given, or not inside described())."""
    return _DESCRIBED.get() or 0


def check_device(op: str, *tensors: torch.Tensor) -> None:
    """One device for all inputs, and one the kernels can run on (CUDA, or the CPU interpreter;
    meta tensors while a launch is only compiled: described())."""
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"{op}: inputs are on different devices ({', '.join(map(str, devices))})")
    dev = devices.pop()
    if describing(dev):
        return
    if dev.type != "cuda" and not (dev.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"):
        raise ValueError(f"{op}: tensors must be on a CUDA device (or the CPU with TRITON_INTERPRET=1), "
                         f"got {dev}")
