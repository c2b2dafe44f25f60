"""Helion's autotuner as a GEMM peer: a Helion matmul kernel, tuned per shape, then timed like the rest.

The kernel is Helion's own examples/matmul.py (pytorch/helion v1.2.0, BSD-3-Clause) without its
epilogue argument: static_shapes=True, the autotuner's range_unroll_factors / range_num_stages
pinned to 0 as the example does (tl.dot is pipelined by num_stages), an fp32 accumulator over
hl.tile(k) of torch.addmm, stored in the inputs' dtype.

Tuning: `kernel.autotune((a, b))` with settings autotune_effort=EFFORT ("quick" in helion 1.2.0:
helion/autotuner/effort_profile.py, the LFBO tree search with an initial population of 30, 2 copies,
at most 5 generations, no re-benchmarking; "full", the default, took about 300 s per shape on the
H100), autotune_random_seed=the suite's --seed, the on-disk autotune cache skipped
(HELION_SKIP_CACHE=1) so that every shape is tuned from scratch in the run. Its wall time is the
row's tuning_s; the number of configs it tested (helion's AutotuneMetrics.num_configs_tested, from a
post-autotune hook) its candidates. The tuned kernel is then called as `kernel(a, b)` and timed by
the suite's clock, its output checked against the float64 reference like every other row.

helion is imported here, and this module is imported by the suite only when Helion rows are asked
for (--helion-shapes > 0); `available()` says why not where helion is missing or fails to import.
helion 1.2.0 runs with torch 2.11 (1.5.1 does not). Its autotuner compiles candidates in worker
processes that may re-import the main module: the suite's entry point is guarded
(`if __name__ == "__main__":`).
"""
from __future__ import annotations

import os
import time

import torch

try:
    import helion
    import helion.language as hl

    _MISSING = None
except Exception as _exc:  # noqa: BLE001 - ImportError, or a helion that fails against this torch
    helion = hl = None
    _MISSING = f"{type(_exc).__name__}: {_exc}"[:300]

EFFORT = "quick"


def available() -> str | None:
    """None if helion imports; else why not (for the row's 'not run' note)."""
    if _MISSING is None:
        return None
    if "No module named 'helion'" in _MISSING:
        return "not run: helion not installed"
    return f"not run: helion failed to import ({_MISSING})"


def version() -> str | None:
    if helion is None:
        return None
    try:
        from importlib.metadata import version as dist_version

        return dist_version("helion")
    except Exception:  # noqa: BLE001
        return getattr(helion, "__version__", None)


def _matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m, k = x.size()
    k2, n = y.size()
    assert k == k2, f"size mismatch {k} != {k2}"
    out = torch.empty([m, n], dtype=torch.promote_types(x.dtype, y.dtype), device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = torch.addmm(acc, x[tile_m, tile_k], y[tile_k, tile_n])
        out[tile_m, tile_n] = acc
    return out


def make_kernel(effort: str = EFFORT, seed: int = 0):
    """A fresh Helion kernel of _matmul (each shape binds and tunes its own specialization)."""
    if helion is None:
        raise RuntimeError(available())
    overrides = {"range_unroll_factors": [0, 0], "range_num_stages": [0, 0]}
    try:  # the example's guard: these tunables do not exist on the tileir backend
        from helion._compat import use_tileir_tunables

        if use_tileir_tunables():
            overrides = {}
    except ImportError:
        pass
    return helion.kernel(_matmul, static_shapes=True, autotune_effort=effort, autotune_random_seed=seed,
                         autotune_progress_bar=False, autotune_config_overrides=overrides)


def tune(a: torch.Tensor, b: torch.Tensor, effort: str = EFFORT, seed: int = 0) -> tuple:
    """(no-argument launch of the tuned kernel, tuning wall s, configs tested or None, details).
    effort "none": no search, helion's default config (the CPU smoke run: the autotuner times on CUDA)."""
    if effort == "none":
        kernel = make_kernel(effort, seed)
        t0 = time.perf_counter()
        kernel(a, b)
        return (lambda: kernel(a, b)), time.perf_counter() - t0, 0, {"config": "helion's default (no search)"}
    os.environ.setdefault("HELION_SKIP_CACHE", "1")
    metrics = {}

    def hook(m):
        metrics.update(configs=m.num_configs_tested, compile_failures=m.num_compile_failures,
                       accuracy_failures=m.num_accuracy_failures, algorithm=m.search_algorithm)

    try:
        from helion.autotuner.metrics import register_post_autotune_hook, remove_post_autotune_hook

        register_post_autotune_hook(hook)
    except ImportError:  # another helion: no count of configs, the rest as usual
        remove_post_autotune_hook = None
    kernel = make_kernel(effort, seed)
    try:
        t0 = time.perf_counter()
        config = kernel.autotune((a, b), force=True)
        kernel(a, b)
        torch.cuda.synchronize()
        tuning_s = time.perf_counter() - t0
    finally:
        if remove_post_autotune_hook is not None:
            remove_post_autotune_hook(hook)
    return (lambda: kernel(a, b)), tuning_s, metrics.get("configs"), {"config": str(config), **metrics}
