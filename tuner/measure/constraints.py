"""What the space's rules say of a config, as the evaluation process asks (step 1 of an evaluation).

Its own module because both the evaluation process (tuner/measure/evaluate.py: `evaluate` and
`compile` requests) and the profiler's launches (tuner/profile/launches.py) refuse a config that
breaks its space's constraints before anything is compiled, and both must leave the kernel's
declared vendor config (torch's GEMM, kernels/gemm_vendor.py) unasked: it is no point of the space.
"""
from __future__ import annotations


def violations(tunable, problem, hw, cfg) -> list[str]:
    """The space's constraints broken by cfg. The kernel's declared vendor config (torch's GEMM,
    kernels/gemm_vendor.py) is no point of its space: the constraints read tile sizes it does not
    have, so it is not asked. This waives no check of the judge's: whether a config may skip the
    no-Triton-launch check is the parent's decision (tuner/measure/vendor.py), not this process's."""
    if is_vendor_config(tunable.kernel, problem, cfg):
        return []
    return tunable.space(problem, hw).violations(cfg)


def is_vendor_config(spec, problem, cfg) -> bool:
    """cfg is one of the kernel's declared vendor configs for the problem (what it declares:
    whether the judge may skip its launch check is not this process's to say)."""
    declare = getattr(spec, "vendor_configs", None)
    return declare is not None and dict(cfg) in [dict(c) for c in declare(problem)]
