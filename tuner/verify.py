"""Correctness of one output against its higher-precision reference.

Two measures, both must pass: the relative Frobenius error (the whole output is close), and the
largest element error relative to the reference's RMS (no small region is wrong: a kernel wrong
in one tile moves the Frobenius error little but this one a lot). Any NaN or inf fails, and the
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


TOLERANCES = {
    torch.float32: Tolerance(rel_fro=5e-3, max_rel_rms=5e-2),
    torch.float16: Tolerance(rel_fro=5e-3, max_rel_rms=3e-2),
    torch.bfloat16: Tolerance(rel_fro=2e-2, max_rel_rms=8e-2),
}


@dataclass(frozen=True)
class Check:
    ok: bool
    rel_error: float  # relative Frobenius error (inf when not finite)
    max_error: float  # largest element error / RMS of the reference
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
    worst = float(diff.abs().max()) / max(rms, 1e-30) if diff.numel() else 0.0
    if rel > tol.rel_fro:
        return Check(False, rel, worst, f"relative error {rel:.3g} > {tol.rel_fro:g} for {out.dtype}")
    if worst > tol.max_rel_rms:
        idx = int(diff.abs().argmax())
        return Check(False, rel, worst,
                     f"element {idx} off by {worst:.3g} x RMS > {tol.max_rel_rms:g} for {out.dtype}")
    return Check(True, rel, worst)
