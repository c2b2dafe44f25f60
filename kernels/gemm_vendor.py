"""The vendor path of the GEMM family: cuBLAS/cuBLASLt through torch, as one candidate among the
Triton configs (matmul and gemm_epilogue launch it here; bmm's launcher calls torch.bmm itself).

Why it is a candidate at all: a tuned table that dispatches to the best Triton config can be
slower than what the user would have called instead (torch.mm, torch.addmm). So every GEMM study
also verifies and times its vendor configs in the same harness as its Triton candidates, and the
table, the exported configs and the entry points dispatch to one where it is the fastest correct
choice.

The config is a separate key, not a search dimension: `IMPL="vendor"` is a whole implementation,
none of the template's tile or pipeline switches apply to it, and a sampler must not spend
proposals on it. The tuner enqueues each vendor config once per study (tuner/search/constrained.py)
and only for built-in kernels, which declare them with `KernelSpec.vendor_configs`
(tuner/measure/vendor.py decides that trust; a plug-in that declares them is judged like any
other candidate).

The launcher writes the harness's own output buffer (`out=`, then in-place epilogue ops), so the
output checks, guard zones and canaries apply to it exactly as to a Triton candidate.

Padded operands (PADDED_CONFIG, a second vendor candidate): cuBLAS runs its fast kernels only on
rows that start 16-byte aligned. A GEMM whose K or N is no multiple of 8 half-precision elements
(an odd K, N = 5145) gets slow fallback kernels: 0.19 ms for bf16 684x5145x3282 on an H100, where
torch.compile max-autotune took 0.069 ms by padding (Inductor's autotune log: cuBLAS on
688x3288 @ 3288x5152 zero-padded copies whose rows are 128-byte aligned, 0.038 ms, plus the
copies). So where K or N is misaligned, a GEMM study also times cuBLAS on copies of the operands
that need it, zero-padded to sizes of whole 16 bytes (zeros add nothing to the dot products) in
buffers whose rows start PAD_BYTES (128) apart, the product written into C's padded rows (below). The
copies are part of the measured latency: the study decides by measurement whether they pay, as
Inductor does by benchmarking both. The copies are one pass each (kernels/gemm_passes.py), as is
whatever of the epilogue cuBLAS does not apply.

Where N is misaligned, C's rows must be aligned too. A GEMM's C is made with its rows padded to
16 bytes (kernels/gemm_tiles.py output_for), and cuBLAS writes the padded product into it, the extra
columns into the rows' padding. A C without that room (a caller's contiguous one) is written
through an aligned buffer and copied out: cuBLAS writing such a C in place (the padded B read
through a view of its first N columns) was tried as a third candidate and measured 2.4x and 4.3x
slower than the copy on a 4 x H200 node (4330x3050x1649 and 62087x309x1672 bf16,
docs/benchmarks.md): its kernels for misaligned rows cost far more.
"""
from __future__ import annotations

# torch is imported where it is used: the trusted parent (tuner/measure/vendor.py) reads IMPL_KEY
# to skip every config that cannot be a vendor one without importing torch or a kernel module.
IMPL_KEY = "IMPL"
VENDOR = "vendor"
TRITON = "triton"
PAD_KEY = "PAD_BYTES"
ALIGN_BYTES = 16  # cuBLAS's alignment of sizes and rows for its tensor-core kernels (and TMA's)
ROW_BYTES = 128  # where the padded copies' rows start: Inductor's padding_alignment_bytes
VENDOR_CONFIG = {IMPL_KEY: VENDOR}  # a copy is what callers get (vendor_config())
PADDED_CONFIG = {IMPL_KEY: VENDOR, PAD_KEY: ROW_BYTES}


def vendor_config() -> dict:
    return dict(VENDOR_CONFIG)


def misaligned(problem) -> bool:
    """Whether a GEMM problem's rows (A's of K elements, B's and C's of N) do not all start
    ALIGN_BYTES-aligned: only then can padding change what cuBLAS runs."""
    from kernelevolve.kernels.spec import element_size  # (torch: only where a problem is asked about)

    size = element_size(problem.dtype)
    return any((d * size) % ALIGN_BYTES for d in (problem.K, problem.N))


def vendor_configs(problem) -> list[dict]:
    """The vendor candidates of one GEMM problem (KernelSpec.vendor_configs): cuBLAS as called,
    and, where a row is misaligned, cuBLAS on padded copies (module docstring)."""
    return [vendor_config()] + ([dict(PADDED_CONFIG)] if misaligned(problem) else [])


def is_vendor(config) -> bool:
    """Whether a config asks for the vendor path (any config without IMPL is a Triton config)."""
    return bool(config) and config.get(IMPL_KEY, TRITON) == VENDOR


def impl_of(config) -> str:
    return VENDOR if is_vendor(config) else TRITON


def _round_up(n: int, step: int) -> int:
    return -(-n // max(1, step)) * step


def _padded(t, rows: int, cols: int, row_bytes: int):
    """t [r, c] in a zero-padded [rows, cols] copy whose rows start row_bytes apart; t itself where
    nothing needs padding. A transposed view (a K-major B) is padded as the tensor it views, so the
    copy is a plain one, not a transposing one."""
    import torch

    r, c = t.shape
    if (r, c) == (rows, cols):
        return t
    if t.stride(0) == 1 and t.stride(1) != 1:
        return _padded(t.t(), cols, rows, row_bytes).t()
    buf = torch.empty((rows, _round_up(cols, row_bytes // t.element_size())), dtype=t.dtype, device=t.device)
    return _copy(t, buf[:, :cols])


def _padded_view(out, width: int):
    """out [M, N] seen `width` columns wide, where its rows are exactly that far apart and 16-byte
    aligned and its storage reaches that far (kernels/gemm_tiles.py output_for makes C so): then
    cuBLAS writes the padded product into C itself, the columns past N into the rows' padding.
    Else None: in a view of a wider buffer the columns past N are the caller's."""
    M = out.shape[0]
    esize = out.element_size()
    pitch = out.stride(0)
    if out.stride(1) != 1 or pitch != width or (pitch * esize) % ALIGN_BYTES or out.data_ptr() % ALIGN_BYTES:
        return None
    if (out.storage_offset() + (M - 1) * pitch + width) * esize > out.untyped_storage().nbytes():
        return None
    return out.as_strided((M, width), (pitch, 1))


def _on_triton(t) -> bool:
    """Whether the one-pass kernels (kernels/gemm_passes.py) run for t: on a GPU, or interpreted;
    elsewhere (a CPU tensor outside the interpreter) torch's ops do the same work."""
    import os

    return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def _copy(src, dst):
    """src into dst's top-left corner, zeros in the rest of dst: one pass of kernels/gemm_passes.py
    on a GPU (or the interpreter), torch's copies elsewhere."""
    rows_apart = src.stride(1) == 1 and src.stride(0) >= src.shape[1] and dst.stride(1) == 1
    if rows_apart and _on_triton(src):
        from kernelevolve.kernels.gemm_passes import copy_rows

        return copy_rows(src, dst)
    r, c = src.shape
    dst[:r, :c].copy_(src)
    dst[:r, c:].zero_()  # only the margins are written twice, not the whole buffer
    dst[r:].zero_()
    return dst


def _finish(src, out, bias, activation, residual) -> None:
    """out = activation(src + bias) + residual, src the product (out itself, or the padded
    buffer's first N columns): one pass of kernels/gemm_passes.py on a GPU (or the interpreter),
    torch's ops elsewhere."""
    import torch.nn.functional as F

    if src is out and bias is None and activation == "none" and residual is None:
        return
    if src.stride(1) == 1 and out.stride(1) == 1 and _on_triton(out):
        from kernelevolve.kernels.gemm_passes import epilogue_pass

        epilogue_pass(src, out, bias, activation, residual)
        return
    if src is not out:
        out.copy_(src)
    if bias is not None:
        out.add_(bias)
    if activation == "relu":
        out.relu_()
    elif activation == "silu":
        F.silu(out, inplace=True)
    elif activation == "gelu":
        out.copy_(F.gelu(out))
    if residual is not None:
        out.add_(residual)


def launch_vendor(a, b, out, epilogue, config=None) -> None:
    """out = epilogue(a @ b) through torch. `epilogue` is kernels/matmul.py's Epilogue (read by
    attribute: this module is imported by matmul.py). What cuBLASLt fuses it does: a bias alone
    through torch.addmm, bias + ReLU through torch._addmm_activation (its bias + ReLU epilogue, the
    ReLU on the fp32 accumulator before rounding, which equals the template's: rounding keeps the
    sign). Any other activation (cuBLASLt's GELU is the tanh approximation, not the exact-erf gelu
    the template computes) and the residual: torch.mm, then one pass over C for everything left,
    bias included (kernels/gemm_passes.py says what this saves, as measured).
    With PAD_BYTES in the config: the GEMM on zero-padded copies where K or N is misaligned
    (module docstring), into C itself where its rows are padded (kernels/gemm_tiles.py output_for),
    else into a buffer, C's copy out of it and the epilogue's rest then one pass."""
    import torch

    if getattr(epilogue, "scale_a", None) is not None or getattr(epilogue, "scale_b", None) is not None:
        raise ValueError("IMPL='vendor' has no fp8 per-tensor scales path (torch._scaled_mm is "
                         "not wired in); tune gemm_fp8 with Triton configs")
    bias = getattr(epilogue, "bias", None)
    activation = getattr(epilogue, "activation", "none")
    residual = getattr(epilogue, "residual", None)
    if activation not in ("none", "relu", "gelu", "silu"):
        raise ValueError(f"IMPL='vendor': unknown activation {activation!r}")
    target = out
    row_bytes = int((config or {}).get(PAD_KEY) or 0)
    if row_bytes:
        from kernelevolve.kernels.gemm_tiles import aligned_width  # (torch: imported where used)

        (M, K), N = a.shape, b.shape[1]
        Kp, Np = aligned_width(K, a.element_size()), aligned_width(N, a.element_size())
        a, b = _padded(a, M, Kp, row_bytes), _padded(b, Kp, Np, row_bytes)
        if Np != N:
            target = _padded_view(out, Np)
            if target is None:  # a C without room to the right: written through a buffer, copied out
                target = torch.empty((M, Np), dtype=out.dtype, device=out.device)
    # cuBLASLt takes the bias (and a ReLU) only where C is written in place (or its rows' padded
    # view, the bias then zero-padded as wide); a C copied out of a padded buffer gets the whole
    # epilogue in that copy's pass, at no extra pass
    in_place = target.data_ptr() == out.data_ptr()
    cublas_bias = bias if bias is not None and activation in ("none", "relu") and in_place else None
    if cublas_bias is not None and cublas_bias.shape[0] != target.shape[1]:
        cublas_bias = torch.nn.functional.pad(cublas_bias, (0, target.shape[1] - cublas_bias.shape[0]))
    if cublas_bias is not None and activation == "relu":
        torch._addmm_activation(cublas_bias, a, b, use_gelu=False, out=target)
    elif cublas_bias is not None:
        torch.addmm(cublas_bias, a, b, out=target)
    else:
        torch.mm(a, b, out=target)
    if cublas_bias is not None:
        bias, activation = None, "none"  # cuBLASLt applied them
    if in_place:
        _finish(out, out, bias, activation, residual)
    else:
        _finish(target[:, :out.shape[1]], out, bias, activation, residual)
