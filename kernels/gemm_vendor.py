"""The vendor path of the GEMM family: cuBLAS/cuBLASLt through torch, as one candidate among the
Triton configs (matmul and gemm_epilogue launch it here; bmm's launcher calls torch.bmm itself).

Why it is a candidate at all: a tuned table that dispatches to the best Triton config can be
slower than what the user would have called instead (torch.mm, torch.addmm). So every GEMM study
also verifies and times VENDOR_CONFIG in the same harness as its Triton candidates, and the table,
the exported configs and the entry points dispatch to it where it is the fastest correct choice.

The config is a separate key, not a search dimension: `IMPL="vendor"` is a whole implementation,
none of the template's tile or pipeline switches apply to it, and a sampler must not spend
proposals on it. The tuner enqueues it once per study (tuner/search/constrained.py) and only for
built-in kernels, which declare it with `KernelSpec.vendor_config` (tuner/measure/vendor.py
decides that trust; a plug-in that declares it is judged like any other candidate).

The launcher writes the harness's own output buffer (`out=`, then in-place epilogue ops), so the
output checks, guard zones and canaries apply to it exactly as to a Triton candidate.
"""
from __future__ import annotations

# torch is imported where it is used: the trusted parent (tuner/measure/vendor.py) reads IMPL_KEY
# to skip every config that cannot be a vendor one without importing torch or a kernel module.
IMPL_KEY = "IMPL"
VENDOR = "vendor"
TRITON = "triton"
VENDOR_CONFIG = {IMPL_KEY: VENDOR}  # a copy is what callers get (vendor_config())


def vendor_config() -> dict:
    return dict(VENDOR_CONFIG)


def is_vendor(config) -> bool:
    """Whether a config asks for the vendor path (any config without IMPL is a Triton config)."""
    return bool(config) and config.get(IMPL_KEY, TRITON) == VENDOR


def impl_of(config) -> str:
    return VENDOR if is_vendor(config) else TRITON


def launch_vendor(a, b, out, epilogue) -> None:
    """out = epilogue(a @ b) through torch. `epilogue` is kernels/matmul.py's Epilogue (read by
    attribute: this module is imported by matmul.py). With a bias, torch.addmm (cuBLASLt fuses the
    bias on CUDA); the activation and the residual are then in-place ops on `out`: cuBLASLt's own
    GELU epilogue is the tanh approximation, not the exact-erf gelu the template computes."""
    import torch
    import torch.nn.functional as F

    if getattr(epilogue, "scale_a", None) is not None or getattr(epilogue, "scale_b", None) is not None:
        raise ValueError("IMPL='vendor' has no fp8 per-tensor scales path (torch._scaled_mm is "
                         "not wired in); tune gemm_fp8 with Triton configs")
    bias = getattr(epilogue, "bias", None)
    if bias is not None:
        torch.addmm(bias, a, b, out=out)
    else:
        torch.mm(a, b, out=out)
    activation = getattr(epilogue, "activation", "none")
    if activation == "relu":
        out.relu_()
    elif activation == "silu":
        F.silu(out, inplace=True)
    elif activation == "gelu":
        out.copy_(F.gelu(out))
    elif activation != "none":
        raise ValueError(f"IMPL='vendor': unknown activation {activation!r}")
    residual = getattr(epilogue, "residual", None)
    if residual is not None:
        out.add_(residual)
