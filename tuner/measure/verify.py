"""Correctness of one output against its higher-precision reference.

Two measures, both must pass: the relative Frobenius error (the whole output is close), and every
element within `max_rel_rms * RMS(ref) + rel_elem * |ref|` (no small region is wrong: a kernel wrong
in one tile moves the Frobenius error little but this one a lot). The absolute term covers
accumulation error in sums (GEMM); the relative term covers outputs whose few large elements carry
the dtype's rounding (softmax probabilities, causal attention's first rows), which a bound on
the RMS alone would reject though they are as exact as the dtype allows. Any NaN or inf fails, and the
tuner poisons outputs with NaN before each run, so an unwritten element fails too.

Tolerances are per output dtype and allow what the dtype's rounding and fp32 accumulation give
(Triton's default float32 dot runs as tf32 on tensor cores, about 3e-4 relative).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    rel_fro: float
    max_rel_rms: float
    rel_elem: float  # a few units of the dtype's rounding (fp32: tf32's, as Triton's dot uses it)


TOLERANCES = {
    torch.float32: Tolerance(rel_fro=5e-3, max_rel_rms=5e-2, rel_elem=4e-3),
    torch.float16: Tolerance(rel_fro=5e-3, max_rel_rms=3e-2, rel_elem=4e-3),
    torch.bfloat16: Tolerance(rel_fro=2e-2, max_rel_rms=8e-2, rel_elem=3e-2),
}


@dataclass(frozen=True)
class Check:
    ok: bool
    rel_error: float  # relative Frobenius error (inf when not finite)
    max_error: float  # largest element error / its bound (> 1 fails)
    reason: str = ""


def poison(out: torch.Tensor) -> None:
    """Fill an output with values a correct kernel overwrites and the check never accepts."""
    if out.is_floating_point():
        out.fill_(float("nan"))
    else:
        out.fill_(torch.iinfo(out.dtype).min)


def check(out: torch.Tensor, ref: torch.Tensor, tol: Tolerance | None = None) -> Check:
    tol = tol or TOLERANCES.get(out.dtype, TOLERANCES[torch.float32])
    if tuple(out.shape) != tuple(ref.shape):
        return Check(False, float("inf"), float("inf"),
                     f"output shape {tuple(out.shape)} != reference shape {tuple(ref.shape)}")
    got = out.detach().to(torch.float64)
    want = ref.detach().to(device=got.device, dtype=torch.float64)
    bad = ~torch.isfinite(got)
    if bad.any():
        n = int(bad.sum())
        return Check(False, float("inf"), float("inf"),
                     f"{n} of {got.numel()} outputs are NaN/inf (unwritten by the kernel, or overflow)")
    diff = got - want
    ref_norm = float(want.norm())
    rms = ref_norm / max(1, want.numel()) ** 0.5
    rel = float(diff.norm()) / max(ref_norm, 1e-30)
    bound = tol.max_rel_rms * max(rms, 1e-30) + tol.rel_elem * want.abs()
    ratio = diff.abs() / bound
    worst = float(ratio.max()) if diff.numel() else 0.0
    if rel > tol.rel_fro:
        return Check(False, rel, worst, f"relative error {rel:.3g} > {tol.rel_fro:g} for {out.dtype}")
    if worst > 1.0:
        idx = int(ratio.argmax())
        got_v, want_v = float(got.flatten()[idx]), float(want.flatten()[idx])
        return Check(False, rel, worst,
                     f"element {idx} is {got_v:.4g}, reference {want_v:.4g}: off by {worst:.3g}x "
                     f"its bound ({tol.max_rel_rms:g} x RMS + {tol.rel_elem:g} x |ref|) for {out.dtype}")
    return Check(True, rel, worst)
