"""The Hopper-only code paths compile for sm90 with the installed Triton, on any machine.

No GPU is needed: a child process (without TRITON_INTERPRET) runs the real launchers with Triton's
launch intercepted, and compiles each captured launch for GPUTarget("cuda", 90) with the
arguments, constexprs and options the launcher chose. Checked per variant: it compiles, Hopper's
warpgroup MMA (wgmma) is used, warp specialization is really in the code when asked for, and
the shared memory the compiler reports is within our resource model (search_spaces/gemm_resources.py:
never below it, at most 2 KiB above; per CTA for clusters of two, num_ctas=2), and a config's
maxnreg and num_ctas are the code's. Also checked: the two Triton limits the warp-specialization constraint encodes (num_warps=8 silently drops it;
atomic split-K fails to compile), and the one the flatten constraint encodes (a flattened tile
loop drops the K loop's warp specialization). For an odd N with a staged B (STAGE_B): TMA loads,
C (its rows padded, kernels/gemm_tiles.py output_for) stored by its descriptor, and pointer loads
of B as asynchronous as an aligned B's. The
in-kernel split-K reduce compiles for sm80 too (the template's split start is offered there).
Running the kernels is what the gpu-marked tests do, on the GPU only.
"""
import json
import os
import re
import sys

import pytest
from uninterpreted import run_child

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, SPLIT_K=1, num_warps=4, num_stages=3)
ODD_N = dict(N=1001)
TAIL = dict(M=1152, N=1152)  # 9 x 9 tiles of 128: a last wave of 1 on 4 programs, cut into 4 K slices
CASES = {  # name: (kernel, problem fields, config changes)
    "matmul-pointers": ("matmul", {}, {}),
    "matmul-persistent": ("matmul", {}, dict(PERSISTENT=True)),
    "matmul-tma": ("matmul", {}, dict(TMA=True)),
    "matmul-tma-persistent-256": ("matmul", {}, dict(TMA=True, PERSISTENT=True, BLOCK_N=256, num_warps=8)),
    "matmul-tma-ws": ("matmul", {}, dict(TMA=True, WARP_SPECIALIZE=True)),
    "matmul-tma-ws-splitk-two-pass": ("matmul", {}, dict(TMA=True, WARP_SPECIALIZE=True, SPLIT_K=4,
                                                         SPLIT_K_REDUCE="two_pass")),
    # split-K reduced by the last split of each tile (one launch): its arrival count and slab loads
    "matmul-pointers-splitk-in-kernel": ("matmul", {}, dict(SPLIT_K=4, SPLIT_K_REDUCE="in_kernel")),
    "matmul-tma-splitk-in-kernel": ("matmul", {}, dict(TMA=True, SPLIT_K=4, SPLIT_K_REDUCE="in_kernel")),
    "epilogue-gelu-residual-splitk-in-kernel": ("gemm_epilogue", dict(activation="gelu", residual=True),
                                                dict(TMA=True, SPLIT_K=4, SPLIT_K_REDUCE="in_kernel")),
    "epilogue-gelu-residual-tma-ws": ("gemm_epilogue", dict(activation="gelu", residual=True),
                                      dict(TMA=True, WARP_SPECIALIZE=True)),
    "fp8-pointers": ("gemm_fp8", {}, dict(BLOCK_K=128)),
    "fp8-tma-ws": ("gemm_fp8", {}, dict(BLOCK_K=128, TMA=True, WARP_SPECIALIZE=True)),
    "bmm-tma-ws": ("bmm", {}, dict(TMA=True, WARP_SPECIALIZE=True)),
    "conv-flat-tma": ("conv2d", {}, dict(TMA=True, FLAT_K=True)),
    "conv-nested": ("conv2d", {}, dict(FLAT_K=False)),
    # the persistent-matmul tutorial's transforms (EPILOGUE_SUBTILE, FLATTEN, maxnreg):
    "matmul-tma-persistent-subtile": ("matmul", {}, dict(TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True)),
    "matmul-tma-persistent-256-subtile": ("matmul", {}, dict(TMA=True, PERSISTENT=True, BLOCK_N=256, num_warps=8,
                                                             EPILOGUE_SUBTILE=True)),
    "matmul-tma-ws-subtile": ("matmul", {}, dict(TMA=True, WARP_SPECIALIZE=True, EPILOGUE_SUBTILE=True)),
    "matmul-tma-persistent-flatten": ("matmul", {}, dict(TMA=True, PERSISTENT=True, FLATTEN=True)),
    "matmul-pointers-maxnreg": ("matmul", {}, dict(maxnreg=168)),
    # 64 rows in 8 warps: the halves are re-laid out through shared memory the flattened loop keeps apart
    "matmul-tma-persistent-flatten-subtile-64-rows": ("matmul", {}, dict(TMA=True, PERSISTENT=True, FLATTEN=True,
                                                                         EPILOGUE_SUBTILE=True, BLOCK_M=64,
                                                                         BLOCK_N=256, num_warps=8, num_stages=2)),
    "matmul-tma-persistent-flatten-subtile-maxnreg": ("matmul", {}, dict(TMA=True, PERSISTENT=True, FLATTEN=True,
                                                                         EPILOGUE_SUBTILE=True, maxnreg=232)),
    "epilogue-gelu-tma-persistent-flatten-subtile": ("gemm_epilogue", dict(activation="gelu"),
                                                     dict(TMA=True, PERSISTENT=True, FLATTEN=True, EPILOGUE_SUBTILE=True)),
    "fp8-tma-persistent-subtile": ("gemm_fp8", {}, dict(BLOCK_K=128, TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True)),
    # the Triton limits behind the warp-specialization constraint:
    "ws-splitk-in-kernel-refused": ("matmul", {}, dict(TMA=True, WARP_SPECIALIZE=True, SPLIT_K=4,
                                                        SPLIT_K_REDUCE="in_kernel")),
    "ws-dropped-with-8-warps": ("matmul", {}, dict(TMA=True, WARP_SPECIALIZE=True, num_warps=8)),
    "ws-atomic-splitk-fails": ("matmul", {}, dict(TMA=True, WARP_SPECIALIZE=True, SPLIT_K=4)),
    "ws-host-descriptors-fail": ("matmul", {}, dict(TMA=True, WARP_SPECIALIZE=True, PERSISTENT=True,
                                                    HOST_DESCRIPTORS=True)),
    # a residual in a flattened loop: the model's upper bound (one whole residual tile staged)
    "residual-flatten-upper-bound": ("gemm_epilogue", dict(activation="gelu", residual=True),
                                     dict(TMA=True, PERSISTENT=True, FLATTEN=True, EPILOGUE_SUBTILE=True)),
    # the Triton limit behind the flatten constraint:
    "ws-dropped-by-flatten": ("matmul", {}, dict(TMA=True, WARP_SPECIALIZE=True, PERSISTENT=True, FLATTEN=True)),
    # odd N (2002-byte rows of B and C): B staged, C stored by pointers (STAGE_B)
    "matmul-stage-b-pointers": ("matmul", ODD_N, dict(STAGE_B=True)),
    "matmul-stage-b-tma": ("matmul", ODD_N, dict(STAGE_B=True, TMA=True)),
    "matmul-stage-b-tma-persistent-256": ("matmul", ODD_N, dict(STAGE_B=True, TMA=True, PERSISTENT=True,
                                                                BLOCK_N=256, num_warps=8)),
    "epilogue-stage-b-tma-persistent": ("gemm_epilogue", dict(ODD_N, activation="gelu", residual=True),
                                        dict(STAGE_B=True, TMA=True, PERSISTENT=True)),
    "ws-stage-b-upper-bound": ("matmul", ODD_N, dict(STAGE_B=True, TMA=True, WARP_SPECIALIZE=True)),
    "odd-n-unstaged-pointers": ("matmul", ODD_N, {}),  # what STAGE_B is measured against
    # the last wave cut into K slices (SPLIT_TAIL): 81 tiles on the 4 programs the launcher sees here
    "matmul-persistent-split-tail": ("matmul", TAIL, dict(PERSISTENT=True, SPLIT_TAIL=True)),
    "matmul-tma-persistent-subtile-split-tail": ("matmul", TAIL, dict(TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True,
                                                                      SPLIT_TAIL=True)),
    "matmul-tma-persistent-flatten-split-tail": ("matmul", TAIL, dict(TMA=True, PERSISTENT=True, FLATTEN=True,
                                                                      SPLIT_TAIL=True)),
    "epilogue-gelu-residual-tma-persistent-split-tail": ("gemm_epilogue", dict(TAIL, activation="gelu", residual=True),
                                                         dict(TMA=True, PERSISTENT=True, SPLIT_TAIL=True)),
    # thread-block clusters of two CTAs (num_ctas=2): each CTA stages and accumulates half the tile
    "matmul-pointers-clusters": ("matmul", {}, dict(num_ctas=2)),
    "matmul-tma-clusters-64x256": ("matmul", {}, dict(TMA=True, BLOCK_M=64, BLOCK_N=256, num_ctas=2)),
    "matmul-tma-persistent-flatten-clusters": ("matmul", {}, dict(TMA=True, PERSISTENT=True, FLATTEN=True, num_ctas=2)),
    "epilogue-gelu-residual-tma-persistent-clusters": ("gemm_epilogue", dict(activation="gelu", residual=True),
                                                       dict(TMA=True, PERSISTENT=True, num_ctas=2)),
    # tiles widened past a power of two (EXTRA_M / EXTRA_N, kernels/gemm_tile_parts.py): up to four parts
    "matmul-pointers-extra-m": ("matmul", {}, dict(EXTRA_M=0.5, num_warps=8)),
    "matmul-tma-extra-m": ("matmul", {}, dict(TMA=True, EXTRA_M=0.5, num_warps=8)),
    "matmul-tma-extra-m-4-warps": ("matmul", {}, dict(TMA=True, EXTRA_M=0.5, num_stages=4)),
    "matmul-tma-extra-n-quarter": ("matmul", {}, dict(TMA=True, EXTRA_N=0.25, num_warps=8)),
    "matmul-tma-extra-mn": ("matmul", {}, dict(TMA=True, BLOCK_N=64, EXTRA_M=0.5, EXTRA_N=0.5)),
    "epilogue-gelu-residual-tma-extra-m": ("gemm_epilogue", dict(activation="gelu", residual=True),
                                           dict(TMA=True, EXTRA_M=0.5, num_warps=8)),
    "fp8-tma-extra-n": ("gemm_fp8", {}, dict(BLOCK_K=128, TMA=True, EXTRA_N=0.5, num_warps=8)),
    "matmul-stage-b-tma-extra-m": ("matmul", ODD_N, dict(STAGE_B=True, TMA=True, EXTRA_M=0.5, num_warps=8)),
    # ... in the persistent loop, flattened or not (1024 x 1024 in 192 x 128 tiles: 48, looped over by
    # the target's SMs only where the compile is given fewer; the loop is compiled either way)
    "matmul-tma-extra-m-persistent": ("matmul", {}, dict(TMA=True, EXTRA_M=0.5, PERSISTENT=True)),
    "matmul-tma-extra-mn-persistent-flatten": ("matmul", {}, dict(TMA=True, BLOCK_N=64, EXTRA_M=0.5, EXTRA_N=0.5,
                                                                   PERSISTENT=True, FLATTEN=True)),
    "matmul-tma-256x160-persistent-flatten": ("matmul", {}, dict(TMA=True, BLOCK_M=256, EXTRA_N=0.25, num_warps=8,
                                                                  PERSISTENT=True, FLATTEN=True)),
    "matmul-pointers-extra-m-persistent": ("matmul", {}, dict(EXTRA_M=0.5, num_warps=8, PERSISTENT=True)),
    # descriptors made on the host (HOST_DESCRIPTORS; "auto", the default, where they compile): passed
    # as launch parameters, none built on the device
    "matmul-tma-host-descriptors": ("matmul", {}, dict(TMA=True, HOST_DESCRIPTORS=True)),
    "matmul-tma-device-descriptors": ("matmul", {}, dict(TMA=True, HOST_DESCRIPTORS=False)),
    "matmul-tma-persistent-flatten-host-descriptors": ("matmul", {}, dict(TMA=True, PERSISTENT=True, FLATTEN=True,
                                                                          HOST_DESCRIPTORS=True)),
    "matmul-tma-persistent-subtile-host-descriptors": ("matmul", {}, dict(TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True,
                                                                          HOST_DESCRIPTORS=True)),
    "fp8-tma-host-descriptors": ("gemm_fp8", {}, dict(BLOCK_K=128, TMA=True, HOST_DESCRIPTORS=True)),
    "matmul-tma-extra-mn-host-descriptors": ("matmul", {}, dict(TMA=True, BLOCK_N=64, EXTRA_M=0.5, EXTRA_N=0.5,
                                                                HOST_DESCRIPTORS=True)),
}
# compiled for sm80 (Ampere: no TMA, no wgmma): the template's own split-K start (its generic tile,
# search_spaces/matmul.py GENERIC_TILES, offered on every target whose rules let a split help)
SM80_CASES = {
    "matmul-generic-split-start": ("matmul", {}, dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128, num_stages=3,
                                                      SPLIT_K=4, SPLIT_K_REDUCE="in_kernel")),
    "epilogue-gelu-residual-splitk-in-kernel": ("gemm_epilogue", dict(activation="gelu", residual=True),
                                                dict(SPLIT_K=4, SPLIT_K_REDUCE="in_kernel")),
}
PROBLEMS = {
    "matmul": dict(M=1024, N=1024, K=1024, dtype="bfloat16"),
    "gemm_epilogue": dict(M=1024, N=1024, K=1024, dtype="bfloat16"),
    "gemm_fp8": dict(M=1024, N=1024, K=1024),
    "bmm": dict(B=4, M=256, N=256, K=256, dtype="bfloat16"),
    "conv2d": dict(N=4, H=28, W=28, C_in=128, C_out=128, dtype="bfloat16"),
}


def _child() -> None:
    """Runs in a process without TRITON_INTERPRET: capture each case's launches, compile them."""
    from unittest import mock

    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from kernelevolve.search_spaces.gemm_resources import shared_memory_bytes
    from kernelevolve.tuner.experiment.registry import BUILTIN, load

    pointer = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32",
               torch.float8_e4m3fn: "*fp8e4nv", torch.int32: "*i32"}

    def compile_launch(kernel, args, kwargs, arch=90):
        # the signature Triton's own launcher would build: tensors are 16-byte aligned pointers,
        # ints equal to 1 are specialised to constants, multiples of 16 are marked as such
        names = kernel.arg_names
        bound = {**dict(zip(names, args)), **{k: v for k, v in kwargs.items() if k in names}}
        options = {k: v for k, v in kwargs.items() if k not in names}
        sig, consts, attrs = {}, {}, {}
        for i, (name, param) in enumerate(zip(names, kernel.params)):
            v = bound[name]
            if param.is_constexpr or v is None or (type(v) is int and v == 1):
                sig[name], consts[name] = "constexpr", v
            elif isinstance(v, torch.Tensor):
                sig[name], attrs[(i,)] = pointer[v.dtype], [["tt.divisibility", 16]]
            elif type(v).__name__ == "TensorDescriptor":  # made on the host (HOST_DESCRIPTORS)
                block = ", ".join(str(n) for n in v.block_shape)
                sig[name] = f"tensordesc<{pointer[v.base.dtype][1:]}[{block}]>"
            else:
                sig[name] = "i32" if abs(v) < 2 ** 31 else "i64"
                if v % 16 == 0:
                    attrs[(i,)] = [["tt.divisibility", 16]]
        return triton.compile(ASTSource(kernel, sig, consts, attrs), target=GPUTarget("cuda", arch, 32),
                              options=options)

    results = {}
    cases = [(name, case, 90) for name, case in CASES.items()]
    cases += [(f"{name}@sm80", case, 80) for name, case in SM80_CASES.items()]
    for name, (kernel_name, fields, changes), arch in cases:
        spec = load(BUILTIN[kernel_name]).kernel
        problem = spec.problem(**{**PROBLEMS[kernel_name], **fields})
        inputs = spec.make_inputs(problem, torch.device("cpu"), 0)
        out = spec.make_output(problem, inputs)
        cfg = {**BASE, **changes}
        calls = []
        with mock.patch.object(JITFunction, "run", lambda self, *a, grid, warmup, **kw: calls.append((self, a, kw))):
            try:
                spec.launch(inputs, out, cfg)
            except ValueError as exc:  # a combination the launcher refuses: reported as such
                results[name] = {"error": f"launcher: {exc}"}
                continue
        in_bytes = 1 if kernel_name == "gemm_fp8" else 2
        try:
            compiled = compile_launch(*calls[0], arch=arch)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            continue
        model = shared_memory_bytes(cfg, in_bytes, 2, residual=fields.get("residual", False),
                                    c_aligned=out.stride(0) * out.element_size() % 16 == 0)
        ptx = compiled.asm["ptx"]
        results[name] = {"shared": compiled.metadata.shared, "model": model,
                         "async_copies": len(re.findall(r"cp\.async\.c[ag]\.shared\.global", ptx)),
                         "tma_stores": len(re.findall(r"cp\.async\.bulk\.tensor[^;]*global\.shared", ptx)),
                         "wgmma": "wgmma" in ptx, "mma_sync": "mma.sync" in ptx,
                         "warp_specialized": "ttg.warp_specialize" in compiled.asm["ttgir"],
                         "maxnreg": [int(n) for n in re.findall(r"\.maxnreg\s+(\d+)", ptx)],
                         "device_descriptors": len(re.findall(r"tensormap\.replace", ptx)),
                         "num_ctas": getattr(compiled.metadata, "num_ctas", 1),
                         "atomics": re.findall(r"\b(?:atom|red)\.[\w.]+", ptx),
                         "cg_loads": len(re.findall(r"\bld\.global\.cg", ptx)),
                         "barriers": len(re.findall(r"\bbar\.sync\b", ptx))}
    print(json.dumps({"triton": triton.__version__, "results": results}))


@pytest.fixture(scope="module")
def compiled():
    fusion = {"TRITON_DEFAULT_FP_FUSION": os.environ.get("TRITON_DEFAULT_FP_FUSION", "1")}
    return run_child(__file__, "--child", fusion)["results"]


def _needs_features(name):
    from kernelevolve.kernels.gemm_tiles import HAS_LOOP_FLATTEN, HAS_MAXNREG
    changes = CASES[name][2]
    if (changes.get("FLATTEN") and not HAS_LOOP_FLATTEN) or (changes.get("maxnreg") and not HAS_MAXNREG):
        pytest.skip("this Triton has no tl.range(flatten=...) or no maxnreg option")


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith(("ws-", "residual-", "odd-n-"))])
def test_variant_compiles_for_sm90_within_the_shared_memory_model(compiled, name):
    _needs_features(name)
    r = compiled[name]
    assert "error" not in r, r.get("error")
    assert r["wgmma"], "Hopper's warpgroup MMA is not used"
    assert r["warp_specialized"] == CASES[name][2].get("WARP_SPECIALIZE", False)
    assert r["shared"] <= r["model"] <= r["shared"] + 2048, r
    if CASES[name][2].get("maxnreg"):  # the option reached the code (Triton sets its own for warp specialization)
        assert r["maxnreg"] == [CASES[name][2]["maxnreg"]], r
    assert r["num_ctas"] == CASES[name][2].get("num_ctas", 1)  # the launch option reached the compile


def test_warp_specialization_limits_the_constraint_encodes(compiled):
    assert not compiled["ws-dropped-with-8-warps"].get("warp_specialized", True)
    assert "error" in compiled["ws-atomic-splitk-fails"]
    # compiled with warp specialization (triton 3.9.0, 2026-11-28), the last split's reset of its
    # tile's counter was gone from the code: the launcher refuses the combination
    assert "launcher: WARP_SPECIALIZE=True with SPLIT_K_REDUCE='in_kernel'" in \
        compiled["ws-splitk-in-kernel-refused"]["error"]
    # descriptors made on the host do not compile with warp specialization (triton 3.6 and 3.9:
    # PassManager::run failed): the rules refuse the pair
    assert "error" in compiled["ws-host-descriptors-fail"]


def test_host_descriptors_leave_none_to_build_on_the_device(compiled):
    for name in [n for n in CASES if n.endswith("host-descriptors")]:
        assert compiled[name]["device_descriptors"] == 0, name
    assert compiled["matmul-tma"]["device_descriptors"] == 0  # "auto": on the host where they compile
    assert compiled["matmul-tma-device-descriptors"]["device_descriptors"] > 0  # each program writes its own
    assert compiled["matmul-tma-ws"]["device_descriptors"] > 0


@pytest.mark.parametrize("name", [n for n in CASES if n.endswith("splitk-in-kernel")])
def test_split_k_in_kernel_counts_arrivals_at_gpu_scope_and_reads_slabs_from_l2(compiled, name):
    r = compiled[name]
    assert "error" not in r, r.get("error")
    # one acquire-release count of the tile's arrivals, one reset, a barrier before the count
    # (every thread's partial stored first), and the last split's slab loads past L1 (.cg)
    assert "atom.global.gpu.acq_rel.add.u32" in r["atomics"], r["atomics"]
    assert any(a.startswith("atom.global.gpu") and ".exch." in a for a in r["atomics"]), r["atomics"]
    assert r["cg_loads"] > 0 and r["barriers"] > 0, r


@pytest.mark.parametrize("name", [f"{n}@sm80" for n in SM80_CASES])
def test_split_k_in_kernel_compiles_for_ampere_too(compiled, name):
    """The template's split start reduces in the kernel on every target: on sm80 it compiles to
    Ampere's MMA with the same arrival count, reset and L2-only slab loads."""
    r = compiled[name]
    assert "error" not in r, r.get("error")
    assert r["mma_sync"] and not r["wgmma"], r
    assert "atom.global.gpu.acq_rel.add.u32" in r["atomics"], r["atomics"]
    assert any(a.startswith("atom.global.gpu") and ".exch." in a for a in r["atomics"]), r["atomics"]
    assert r["cg_loads"] > 0 and r["barriers"] > 0, r


def test_a_flattened_residual_stays_under_the_model(compiled):
    _needs_features("residual-flatten-upper-bound")
    r = compiled["residual-flatten-upper-bound"]
    assert "error" not in r and r["shared"] <= r["model"], r


def test_flattening_drops_warp_specialization(compiled):
    _needs_features("ws-dropped-by-flatten")
    r = compiled["ws-dropped-by-flatten"]
    assert "error" not in r and not r["warp_specialized"], r


def test_a_staged_b_is_read_like_an_aligned_one(compiled):
    staged, unstaged, aligned = (compiled[n] for n in ("matmul-stage-b-pointers", "odd-n-unstaged-pointers",
                                                       "matmul-pointers"))
    # an odd N's B rows take scalar loads outside the pipeline; staged, B is copied asynchronously
    # into the pipeline's shared memory exactly as an aligned B is
    assert staged["async_copies"] == aligned["async_copies"] > unstaged["async_copies"], (staged, unstaged)
    assert staged["shared"] == aligned["shared"] > unstaged["shared"]
    for name in ("matmul-stage-b-tma", "matmul-stage-b-tma-persistent-256", "epilogue-stage-b-tma-persistent"):
        # C made as the kernels make it (kernels/gemm_tiles.py output_for): its rows padded from
        # 2002 to 2016 bytes, so stored by its descriptor as an aligned C is
        assert compiled[name]["tma_stores"] > 0, name
    assert compiled["matmul-tma-persistent-256"]["tma_stores"] > 0


def test_a_warp_specialized_staged_b_stays_under_the_model(compiled):
    r = compiled["ws-stage-b-upper-bound"]
    assert "error" not in r and r["warp_specialized"] and r["shared"] <= r["model"], r


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child()
