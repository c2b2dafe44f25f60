"""Correctness of one output against its higher-precision reference.

Two measures, both must pass: the relative Frobenius error (the whole output is close), and every
element within `max_rel_rms * RMS(ref) + rel_elem * |ref|` (no small region is wrong: a kernel wrong
in one tile moves the Frobenius error little but this one a lot). The absolute term covers
accumulation error in sums (GEMM); the relative term covers outputs whose few large elements carry
the dtype's rounding (softmax probabilities, causal attention's first rows), which a bound on
the RMS alone would reject though they are as exact as the dtype allows. Any NaN or inf fails, and the
tuner poisons outputs with NaN before each run, so an unwritten element fails too.

`TOLERANCES` (what `check` uses when given none) are per output dtype and generous: they are for
tests of one kernel. The tuner's evaluator uses `tolerance_for(dtype, reduction)`, which allows what
an honest kernel gives and no more, so that a kernel computing in a lower precision than it claims
fails:

    rel_fro = 2 u(out) + 128 u(fp32) + 4 u(tf32) [fp32 output with a declared reduction]
              + 4 u(fp32) sqrt(K)

u(dtype) is the unit roundoff (fp16 2^-11, bf16 2^-8, fp32 2^-24, tf32 2^-11) and K the reduction
length the KernelSpec declares (`reduction`, 1 when undeclared). The terms: the output's own
rounding (an honest kernel's error is about 0.43 u(out), measured); a few dozen fp32 ulps for the
arithmetic (exp, rsqrt, division approximations, short row sums); for fp32 GEMM-like kernels the
tf32 rounding of their operands that Triton's default dot does (measured 2.9e-4 rounding to
nearest, 7.7e-4 truncating); and an fp32 accumulator's error, which grows as sqrt(K). A 16-bit
accumulator's error grows at the same rate but from a unit roundoff 2^13 times larger, which is what
this bound catches. Calibration (tests/test_verify.py, torch emulation, 64 x K x 64):

    kernel                                   K=512     K=4096    K=16384   bound (K=4096)
    fp16 GEMM, fp32 accumulation (honest)    2.1e-4    2.1e-4    2.1e-4    1.0e-3
    fp16 GEMM, fp16 accumulation per 32-K    6.0e-4    1.7e-3    3.2e-3    -> incorrect from K ~ 2048
    bf16 GEMM, fp32 accumulation (honest)    1.7e-3    1.7e-3    1.7e-3    7.8e-3
    bf16 GEMM, bf16 accumulation             (about 8x the fp16 row)        -> incorrect at large K
    fp32 GEMM, tf32 truncating (honest)      7.7e-4    7.7e-4    7.7e-4    2.0e-3
    fp32 op without a reduction, honest      ~1e-7                         7.7e-6
    fp32 op computed in fp16 arithmetic      ~2.8e-4                       -> incorrect

Not caught, by construction: fp16 (not bf16) accumulation in a bf16 GEMM (its error, 3.6e-3 at
K=16384, stays within bf16's own output rounding), and fp16 arithmetic inside an fp32 GEMM-like
kernel below K ~ 8192 (tf32 operands are as coarse as fp16). The element-wise bound stays that of
`TOLERANCES`.
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


UNIT_ROUNDOFF = {torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8, torch.float32: 2.0 ** -24,
                 torch.float64: 2.0 ** -53}
U_TF32 = 2.0 ** -11
U_FP32 = 2.0 ** -24


def rel_fro_bound(dtype: torch.dtype, reduction: int = 1) -> float:
    """The relative Frobenius error an honest kernel stays within (the formula above)."""
    k = max(1, int(reduction or 1))
    u_out = UNIT_ROUNDOFF.get(dtype, U_FP32)
    dot = 4 * U_TF32 if dtype == torch.float32 and reduction and k > 1 else 0.0
    return 2 * u_out + 128 * U_FP32 + dot + 4 * U_FP32 * k ** 0.5


def tolerance_for(dtype: torch.dtype, reduction: int | None = None) -> Tolerance:
    """The evaluator's tolerance for an output of `dtype` that sums `reduction` products per
    element (None or 1: no declared reduction). Integer outputs get fp32's."""
    base = TOLERANCES.get(dtype, TOLERANCES[torch.float32])
    rel = rel_fro_bound(dtype if dtype in UNIT_ROUNDOFF else torch.float32, reduction or 1)
    return Tolerance(rel_fro=min(base.rel_fro, rel), max_rel_rms=base.max_rel_rms,
                     rel_elem=base.rel_elem)


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


# Outputs of these dtypes are compared in fp32: its rounding of the float64 reference (6e-8
# relative) is 100x below the tightest bound above (7.7e-6 for fp32 outputs), and fp32 halves the
# memory traffic of every pass and runs at full rate on GPUs (fp64 does not on most).
_FP32_COMPARED = (torch.float16, torch.bfloat16, torch.float32)


def check(out: torch.Tensor, ref: torch.Tensor, tol: Tolerance | None = None) -> Check:
    """`out` against `ref` by both measures. On a GPU: a few fused passes and one read back to the
    host (the judge runs this on every verified launch and on each sampled timed call)."""
    tol = tol or TOLERANCES.get(out.dtype, TOLERANCES[torch.float32])
    stats = check_stats(out, ref, tol)
    if isinstance(stats, Check):
        return stats
    return check_verdict(out, ref, tol, stats.tolist())  # one read back


def check_stats(out: torch.Tensor, ref: torch.Tensor, tol: Tolerance) -> torch.Tensor | Check:
    """`check`'s statistics on the device, not read back (the judge reads a message's statistics
    and flags in one transfer): float64 [non-finite outputs, ||ref||, ||out - ref||, worst element
    ratio, its flat index]; or the Check itself where no statistic is needed (shapes differ, empty)."""
    if tuple(out.shape) != tuple(ref.shape):
        return Check(False, float("inf"), float("inf"),
                     f"output shape {tuple(out.shape)} != reference shape {tuple(ref.shape)}")
    if not out.numel():
        return Check(True, 0.0, 0.0)
    return _stats(out.detach(), ref.detach().to(out.device), tol)


def check_verdict(out: torch.Tensor, ref: torch.Tensor, tol: Tolerance, values: list) -> Check:
    """The Check from `check_stats`' values, read back."""
    nonfinite, ref_norm, diff_norm, worst, idx = values
    if nonfinite:
        return Check(False, float("inf"), float("inf"),
                     f"{int(nonfinite)} of {out.numel()} outputs are NaN/inf (unwritten by the kernel, "
                     "or overflow)")
    rel = diff_norm / max(ref_norm, 1e-30)
    if rel > tol.rel_fro:
        return Check(False, rel, worst, f"relative error {rel:.3g} > {tol.rel_fro:g} for {out.dtype}")
    if worst > 1.0:
        idx = int(idx)
        got_v, want_v = float(out.reshape(-1)[idx]), float(ref.reshape(-1)[idx])
        return Check(False, rel, worst,
                     f"element {idx} is {got_v:.4g}, reference {want_v:.4g}: off by {worst:.3g}x "
                     f"its bound ({tol.max_rel_rms:g} x RMS + {tol.rel_elem:g} x |ref|) for {out.dtype}")
    return Check(True, rel, worst)


def _stats(out: torch.Tensor, ref: torch.Tensor, tol: Tolerance) -> torch.Tensor:
    """float64 [non-finite outputs, ||ref||, ||out - ref||, worst element ratio, its flat index]
    on out's device: two fused passes on a GPU (tuner/measure/check_kernel.py), torch elsewhere."""
    if out.is_cuda:
        from kernelevolve.tuner.measure import check_kernel

        # a GEMM's C with padded rows (kernels/gemm_tiles.py output_for) is read through one copy
        # into dense rows, then by the fused passes: ~20 torch operations otherwise (check_kernel)
        dense = out.contiguous()  # (out itself where it is)
        if check_kernel.usable(dense, ref):
            return check_kernel.stats(dense, ref, tol.rel_elem, tol.max_rel_rms)
    dtype = torch.float32 if out.dtype in _FP32_COMPARED else torch.float64
    got, want = out.to(dtype), ref.to(dtype)
    diff = got - want  # NaN or inf wherever the output is
    acc = torch.float64  # the norms accumulate in float64: the sums of squares of 1e8 elements
    finite = torch.isfinite(diff)
    ref_norm = torch.linalg.vector_norm(want, dtype=acc)
    rms = ref_norm / max(1, want.numel()) ** 0.5
    bound = want.abs().mul_(tol.rel_elem).add_(torch.clamp(rms, min=1e-30).to(dtype) * tol.max_rel_rms)
    ratio = diff.abs().div_(bound).nan_to_num_(nan=0.0, posinf=0.0)
    worst, idx = ratio.reshape(-1).max(dim=0)
    return torch.stack([(~finite).sum().to(acc), ref_norm,
                        torch.linalg.vector_norm(diff.where(finite, 0.0), dtype=acc), worst.to(acc),
                        idx.to(acc)])
