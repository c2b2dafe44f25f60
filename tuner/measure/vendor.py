"""Which candidate is a kernel's declared vendor config: decided in the trusted parent, never by
the evaluation process or by the kernel's own code.

The judge fails a candidate that launched no Triton kernel (launch_watch.NO_LAUNCH): that is what stops
a plug-in from handing back torch's result as its own. The vendor candidate of the GEMM family
(kernels/gemm_vendor.py: torch.mm / torch.addmm, timed so that nothing slower than it is
dispatched) launches none by design, so it needs the one exemption, and the exemption must not be
claimable by a candidate:
  - only a built-in kernel, named by its registry reference (tuner.experiment.registry.BUILTIN:
    a module of this package, never a user's file or module), may have one;
  - the config must equal one of the configs that kernel's `KernelSpec.vendor_configs` declares
    for the request's problem, exactly;
  - this is computed by the parent (tuner/execution/worker.py) from the request it sends, before
    any candidate code runs for it, and sent to the judge in its `begin` message; the evaluator's
    claims play no part.
A plug-in that declares the same `vendor_configs`, or names {"IMPL": "vendor"} in its space, is
therefore judged like every other candidate, and fails with NO_LAUNCH if it launches no Triton
kernel. Every other check (outputs, guard zones, inputs, canaries) applies to the vendor
candidate too.
"""
from __future__ import annotations

import functools

from kernelevolve.kernels.gemm_vendor import IMPL_KEY


@functools.lru_cache(maxsize=None)
def _builtin_kernel(kernel_ref: str):
    """The KernelSpec of a built-in kernel, None for a plug-in. Imports the built-in module
    (package code, trusted) once."""
    from kernelevolve.tuner.experiment import registry

    ref = registry.current_ref(kernel_ref or "")
    if ref not in registry.BUILTIN.values():
        return None
    try:
        return registry.load(ref).kernel
    except registry.KernelNotFound:
        return None


def vendor_configs_of(kernel_ref: str, problem: dict) -> list[dict]:
    """The vendor configs a built-in kernel declares for this problem (kernels/gemm_vendor.py:
    cuBLAS, and cuBLAS on padded operands where rows are misaligned); [] for a plug-in, a kernel
    without any, or a problem the kernel's model refuses."""
    spec = _builtin_kernel(kernel_ref)
    declare = getattr(spec, "vendor_configs", None)
    if declare is None:
        return []
    try:
        model = spec.problem.model_validate(dict(problem or {}))
    except Exception:  # noqa: BLE001 - a problem the kernel refuses has no vendor path either
        return []
    return [dict(c) for c in declare(model)]


def is_declared_vendor(kernel_ref: str, config, problem: dict) -> bool:
    """Whether this request's config is one of the vendor configs a built-in kernel declares for
    the request's problem."""
    if not isinstance(config, dict) or IMPL_KEY not in config:
        return False  # a Triton config: no kernel module is imported to say so
    return dict(config) in vendor_configs_of(kernel_ref, problem)
