"""Which candidate is a kernel's declared vendor config: decided in the trusted parent, never by
the evaluation process or by the kernel's own code.

The judge fails a candidate that launched no Triton kernel (guards.NO_LAUNCH): that is what stops
a plug-in from handing back torch's result as its own. The vendor candidate of the GEMM family
(kernels/gemm_vendor.py: torch.mm / torch.addmm, timed so that nothing slower than it is
dispatched) launches none by design, so it needs the one exemption, and the exemption must not be
claimable by a candidate:
  - only a built-in kernel, named by its registry reference (tuner.experiment.registry.BUILTIN:
    a module of this package, never a user's file or module), may have one;
  - the config must equal that kernel's `KernelSpec.vendor_config` exactly;
  - this is computed by the parent (tuner/execution/worker.py) from the request it sends, before
    any candidate code runs for it, and sent to the judge in its `begin` message; the evaluator's
    claims play no part.
A plug-in that declares the same `vendor_config`, or names {"IMPL": "vendor"} in its space, is
therefore judged like every other candidate, and fails with NO_LAUNCH if it launches no Triton
kernel. Every other check (outputs, guard zones, inputs, canaries) applies to the vendor
candidate too.
"""
from __future__ import annotations

import functools

from kernelevolve.kernels.gemm_vendor import IMPL_KEY


@functools.lru_cache(maxsize=None)
def declared_vendor_config(kernel_ref: str) -> tuple | None:
    """The vendor config a built-in kernel declares, as sorted items (hashable); None for a
    plug-in or a kernel without one. Imports the built-in module (package code, trusted) once."""
    from kernelevolve.tuner.experiment import registry

    ref = registry.current_ref(kernel_ref or "")
    if ref not in registry.BUILTIN.values():
        return None
    try:
        cfg = getattr(registry.load(ref).kernel, "vendor_config", None)
    except registry.KernelNotFound:
        return None
    return tuple(sorted(dict(cfg).items())) if cfg else None


def vendor_config_of(kernel_ref: str) -> dict | None:
    found = declared_vendor_config(kernel_ref)
    return dict(found) if found is not None else None


def is_declared_vendor(kernel_ref: str, config) -> bool:
    """Whether this request's config is the declared vendor config of a built-in kernel."""
    if not isinstance(config, dict) or IMPL_KEY not in config:
        return False  # a Triton config: no kernel module is imported to say so
    declared = vendor_config_of(kernel_ref)
    return declared is not None and dict(config) == declared
