"""The transforms of Triton's persistent-matmul tutorial in the GEMM template: EPILOGUE_SUBTILE (the
output tile stored as two column halves), FLATTEN (the persistent tile loop flattened with its K
loop) and maxnreg (the NVIDIA compile option capping registers per thread).

On the CPU the interpreter runs them (fp16 and fp32; tensor descriptors run there for real): the
halves' indexing, the flattened loop's separate store counter, the fused epilogue and the fp8
scales before a subtiled store. The interpreter has no registers, so maxnreg is checked here for
reaching the launch, and in tests/test_gemm_sm90_compile.py for reaching the sm90 code (.maxnreg).
Their constraints, the Hopper-only domains, and configs written before the switches (launches,
start points, warm starts, priors from recorded spaces) are checked too. On a GPU machine every
kernel test here runs compiled; the gpu-marked one runs bf16, which the interpreter garbles.
"""
import dataclasses

import pytest
import torch

from kernelevolve.kernels import gemm_epilogue as ge
from kernelevolve.kernels import gemm_fp8 as g8
from kernelevolve.kernels import matmul as mm
from kernelevolve.kernels.bmm import BmmProblem
from kernelevolve.kernels.gemm_tiles import (HAS_LOOP_FLATTEN, HAS_MAXNREG, HAS_TENSOR_DESCRIPTORS,
                                             launch_options)
from kernelevolve.search_spaces import bmm, gemm_epilogue, gemm_fp8, matmul
from kernelevolve.search_spaces.matmul import MAXNREG_VALUES, SEARCH_MAXNREG
from kernelevolve.search_spaces.gemm_resources import MAXNREG_HEADROOM, shared_memory_bytes
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.measure.verify import check, poison
from test_gemm_switches import run  # one launch-and-check helper for the GEMM switch tests

ODD = (100, 72, 130)  # M, N, K ragged everywhere (K*2 bytes not 16-byte aligned: pointers only)
TMA_ODD = (100, 72, 136)  # ragged tiles, 16-byte aligned rows (what TMA needs)
EVEN = (128, 64, 128)
# 64x32 tiles: 6 tiles on the odd shapes, more than the interpreter's 4 persistent programs, so
# persistent (and flattened) programs run their tile loop more than once
BASE = dict(mm.DEFAULT_CONFIG, BLOCK_M=64, BLOCK_N=32, BLOCK_K=32)
NEW = ("EPILOGUE_SUBTILE", "FLATTEN", "maxnreg")
H100 = profile("h100")
BIG = mm.MatmulProblem(M=4096, N=4096, K=4096, dtype="bfloat16")
GOOD = dict(mm.DEFAULT_CONFIG, BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_warps=4, num_stages=3)


POINTER_CASES = {
    "subtile": dict(EPILOGUE_SUBTILE=True),
    "persistent_subtile": dict(PERSISTENT=True, EPILOGUE_SUBTILE=True),
    "persistent_flatten": dict(PERSISTENT=True, FLATTEN=True),
    "persistent_flatten_subtile": dict(PERSISTENT=True, FLATTEN=True, EPILOGUE_SUBTILE=True),
    "maxnreg": dict(maxnreg=168),
}
TMA_CASES = {
    "tma_subtile": dict(TMA=True, EPILOGUE_SUBTILE=True),
    "tma_persistent_subtile": dict(TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True),
    "tma_persistent_flatten": dict(TMA=True, PERSISTENT=True, FLATTEN=True),
    "tma_persistent_flatten_subtile": dict(TMA=True, PERSISTENT=True, FLATTEN=True, EPILOGUE_SUBTILE=True),
    "tma_ws_subtile": dict(TMA=True, WARP_SPECIALIZE=True, EPILOGUE_SUBTILE=True, num_warps=4),
    "tma_persistent_maxnreg": dict(TMA=True, PERSISTENT=True, maxnreg=232),
}


def needs(cfg):
    if cfg.get("FLATTEN") and not HAS_LOOP_FLATTEN:
        pytest.skip("this Triton's tl.range has no flatten")


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", [ODD, EVEN], ids=["odd", "even"])
@pytest.mark.parametrize("name", sorted(POINTER_CASES))
def test_pointer_path(device, name, shape, dtype):
    needs(POINTER_CASES[name])
    result = run(device, shape, dtype, dict(BASE, **POINTER_CASES[name]))
    assert result.ok, result.reason


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", [TMA_ODD, EVEN], ids=["odd", "even"])
@pytest.mark.parametrize("name", sorted(TMA_CASES))
def test_tma_path(device, name, shape, dtype):
    cfg = TMA_CASES[name]
    needs(cfg)
    if cfg.get("WARP_SPECIALIZE") and dtype == "float32" and device.type == "cuda":
        pytest.skip("Hopper's warp specialization does not compile for fp32 (tf32)")
    result = run(device, shape, dtype, dict(BASE, **cfg))
    assert result.ok, result.reason


@pytest.mark.parametrize("extra", [dict(EPILOGUE_SUBTILE=True), dict(TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True),
                                   dict(TMA=True, PERSISTENT=True, FLATTEN=True, EPILOGUE_SUBTILE=True)],
                         ids=["pointers", "tma_persistent", "tma_persistent_flatten"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_fused_epilogue_before_the_subtiled_store(device, activation, extra):
    """bias + activation + residual on the whole tile, then the halves: each half's columns get
    their own bias and residual (a swapped half would fail here)."""
    needs(extra)
    p = ge.FusedGemmProblem(M=100, N=72, K=136, dtype="float16", activation=activation, residual=True)
    inputs = ge.make_inputs(p, device, seed=3)
    out = ge.make_output(p, inputs)
    poison(out)
    ge.launch(inputs, out, dict(BASE, **extra))
    result = check(out, ge.reference(inputs))
    assert result.ok, result.reason


@pytest.mark.parametrize("extra", [dict(TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True),
                                   dict(TMA=True, PERSISTENT=True, FLATTEN=True, EPILOGUE_SUBTILE=True, maxnreg=168)],
                         ids=["tma_persistent_subtile", "flatten_subtile_maxnreg"])
def test_fp8_scales_before_the_subtiled_store(device, extra):
    needs(extra)
    if device.type == "cuda" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 e4m3 dots need sm89 or newer")
    p = g8.Fp8GemmProblem(M=100, N=72, K=144, out_dtype="float16")
    inputs = g8.make_inputs(p, device, seed=4)
    out = g8.make_output(p, inputs)
    poison(out)
    g8.launch(inputs, out, dict(BASE, **extra))
    result = check(out, g8.reference(inputs))
    assert result.ok, result.reason


def test_configs_without_the_tutorial_switches_launch_as_before(device):
    old = {k: v for k, v in BASE.items() if k not in NEW}
    assert not set(NEW) & set(old)
    assert run(device, TMA_ODD, "float16", dict(old, TMA=True, PERSISTENT=True)).ok
    assert mm.matmul(torch.ones(5, 3, device=device), torch.ones(3, 4, device=device), old).sum() == 60
    # the defaults are the switches off: the same launch options as a config without them
    assert launch_options(dict(old)) == launch_options(dict(old, **{k: mm.SWITCH_DEFAULTS[k] for k in NEW}))
    assert {k: mm.SWITCH_DEFAULTS[k] for k in NEW} == {"EPILOGUE_SUBTILE": False, "FLATTEN": False, "maxnreg": 0}


def test_maxnreg_reaches_the_launch_only_when_set():
    assert "maxnreg" not in launch_options(BASE)  # BASE has maxnreg=0: the compiler's choice
    assert "maxnreg" not in launch_options({k: v for k, v in BASE.items() if k != "maxnreg"})
    assert launch_options(dict(BASE, maxnreg=168)) == {"num_warps": 4, "num_stages": 3, "maxnreg": 168}


@pytest.mark.parametrize("cfg,words", [
    (dict(EPILOGUE_SUBTILE=True, SPLIT_K=2), "EPILOGUE_SUBTILE"),
    (dict(FLATTEN=True), "needs PERSISTENT"),
])
def test_launcher_rejects_impossible_switches(device, cfg, words):
    with pytest.raises(ValueError, match=words):
        run(device, ODD, "float16", dict(BASE, **cfg))


# --- the search space ------------------------------------------------------------------------------

def names(sp):
    return {d.name for d in sp.domains}


def reasons(sp, **cfg):
    return " ".join(sp.violations(dict(GOOD, **cfg)))


def test_the_switches_are_searched_on_sm90_only():
    h100 = names(matmul.space(BIG, H100))
    assert ("EPILOGUE_SUBTILE" in h100) == HAS_TENSOR_DESCRIPTORS
    assert ("FLATTEN" in h100) == HAS_LOOP_FLATTEN
    # maxnreg: in the template and the rules, not searched (search_spaces/matmul.py SEARCH_MAXNREG says why)
    assert ("maxnreg" in h100) == (HAS_MAXNREG and SEARCH_MAXNREG)
    for target in ("a100", "mi300x", "cpu-interpreter"):
        assert not names(matmul.space(BIG, profile(target))) & set(NEW), target
        assert not names(gemm_epilogue.space(ge.FusedGemmProblem(M=512, N=512, K=512), profile(target))) & set(NEW)
    fused = gemm_epilogue.space(ge.FusedGemmProblem(M=4096, N=4096, K=4096), H100)
    fp8 = gemm_fp8.space(g8.Fp8GemmProblem(M=4096, N=4096, K=4096), H100)
    assert names(fused) & set(NEW) == names(fp8) & set(NEW) == h100 & set(NEW)
    # bmm's template has no persistent loop and stores whole tiles: only maxnreg, no rule of the others
    b = bmm.space(BmmProblem(B=8, M=512, N=512, K=512, dtype="bfloat16"), H100)
    assert names(b) & set(NEW) == ({"maxnreg"} if HAS_MAXNREG and SEARCH_MAXNREG else set())
    assert not any(w in (c.__doc__ or "") for c in b.constraints for w in ("FLATTEN", "EPILOGUE_SUBTILE"))


def test_maxnreg_values_are_plain_ints():
    assert all(type(v) is int for v in MAXNREG_VALUES) and 0 in MAXNREG_VALUES


def test_epilogue_subtile_rules():
    sp = matmul.space(BIG, H100)
    assert reasons(sp, TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True) == ""
    # a warp-specialized TMA store stages its tile too, but subtiled it failed to compile on the H100
    assert "failed to compile" in reasons(sp, TMA=True, WARP_SPECIALIZE=True, EPILOGUE_SUBTILE=True)
    assert "stage none" in reasons(sp, EPILOGUE_SUBTILE=True)  # pointer store
    assert "stage none" in reasons(sp, TMA=True, EPILOGUE_SUBTILE=True)  # one tile per program
    few_tiles = matmul.space(mm.MatmulProblem(M=128, N=128, K=8192, dtype="bfloat16"), H100)
    assert "finish kernel stores C" in reasons(few_tiles, TMA=True, WARP_SPECIALIZE=True, EPILOGUE_SUBTILE=True,
                                               SPLIT_K=4, SPLIT_K_REDUCE="two_pass")


def test_flatten_rules():
    sp = matmul.space(BIG, H100)
    assert reasons(sp, PERSISTENT=True, FLATTEN=True) == ""
    assert reasons(sp, PERSISTENT=True, TMA=True, FLATTEN=True, EPILOGUE_SUBTILE=True) == ""
    assert "needs PERSISTENT" in reasons(sp, FLATTEN=True)
    assert "WARP_SPECIALIZE" in reasons(sp, PERSISTENT=True, TMA=True, WARP_SPECIALIZE=True, FLATTEN=True)


def test_maxnreg_rules():
    sp = matmul.space(BIG, H100)
    # 128x128 on 4 warps: 128 accumulator registers a thread; 128 + 40 = 168 is the least cap
    assert reasons(sp, maxnreg=168) == "" and reasons(sp, maxnreg=232) == ""
    assert f"+ {MAXNREG_HEADROOM}" in reasons(sp, maxnreg=128)
    assert reasons(sp, maxnreg=128, BLOCK_M=64) == ""  # 64 registers of accumulator
    assert reasons(sp, maxnreg=128, num_warps=8) == ""  # the same tile over twice the threads
    # a register file too small for 232 a thread at 8 warps: the compiler caps them lower anyway
    small = matmul.space(BIG, dataclasses.replace(H100, regs_per_sm=32768))
    assert "the same kernel as maxnreg=0" in reasons(small, maxnreg=168, num_warps=8)
    assert reasons(small, maxnreg=0, num_warps=8) == ""


def test_shared_memory_model_halves_the_staged_tile():
    staged = dict(GOOD, TMA=True, PERSISTENT=True)
    base = shared_memory_bytes(GOOD, "bfloat16")
    assert shared_memory_bytes(staged, "bfloat16") == base + 1024 + 128 * 128 * 2
    assert shared_memory_bytes(dict(staged, EPILOGUE_SUBTILE=True), "bfloat16") == base + 1024 + 128 * 64 * 2
    ws = dict(GOOD, TMA=True, WARP_SPECIALIZE=True, BLOCK_M=64, EPILOGUE_SUBTILE=True)
    assert shared_memory_bytes(ws, "bfloat16") == 3 * (64 + 128) * 64 * 2 + 1024 + 128 * 64 * 2
    # 4 stages of 128x256x64 with the whole staged tile are past 227 KiB; with half of it they fit
    sp = matmul.space(BIG, H100)
    big = dict(BLOCK_N=256, num_warps=8, num_stages=4, TMA=True, PERSISTENT=True)
    assert "shared memory" in reasons(sp, **big)
    assert "shared memory" not in reasons(sp, **big, EPILOGUE_SUBTILE=True)


def test_a_flattened_fused_residual_counts_its_staged_tile():
    cfg = dict(BLOCK_N=256, num_warps=8, TMA=True, PERSISTENT=True, FLATTEN=True, EPILOGUE_SUBTILE=True)
    with_res = gemm_epilogue.space(ge.FusedGemmProblem(M=4096, N=4096, K=4096, residual=True), H100)
    without = gemm_epilogue.space(ge.FusedGemmProblem(M=4096, N=4096, K=4096, residual=False), H100)
    assert "shared memory" in reasons(with_res, **cfg) and reasons(without, **cfg) == ""
    assert reasons(with_res, **dict(cfg, FLATTEN=False)) == ""


# --- configs and recordings from before the switches ----------------------------------------------

def test_old_configs_read_as_the_switches_off():
    sp = matmul.space(BIG, H100)
    old = {k: v for k, v in GOOD.items() if k not in NEW and k in names(sp)}
    full = sp.complete(old)
    assert set(full) == names(sp) and all(full[k] == mm.SWITCH_DEFAULTS[k] for k in NEW if k in names(sp))
    assert sp.complete(full) is full
    from kernelevolve.tuner.deploy.export import fits
    assert fits(sp, old) == []


def test_recorded_h100_gemm_spaces_stay_priors():
    """benchmarks/data/recorded/h100 was recorded before the switches: its GEMM spaces still
    qualify as the prior of an H100 GEMM study, their configs read with the switches off."""
    from kernelevolve.tuner.search import prior
    from kernelevolve.tuner.search.learned_sampler import LearnedSampler
    recorded = prior.load("benchmarks/data/recorded/h100/matmul__M4096_N4096_K4096_bfloat16__h100.jsonl.gz")
    problem = mm.MatmulProblem(M=2048, N=2048, K=2048, dtype="bfloat16")
    sp = matmul.space(problem, H100)
    old_names = {p["name"] for p in recorded[0].header["space"]["parameters"]}
    assert old_names < names(sp)  # older than the switches: a prior only through Space.defaults
    chosen = prior.prior_for(recorded, "matmul", problem.model_dump(), "h100", space=sp)
    assert len(chosen) == 1
    sampler = LearnedSampler(sp, seed=0, prior=chosen, problem=problem.model_dump())
    assert sampler.prior is not None
    # without the defaults the recording would be left out, as a space of other parameters is
    bare = dataclasses.replace(sp, defaults={})
    assert prior.prior_for(recorded, "matmul", problem.model_dump(), "h100", space=bare) == []


@pytest.mark.gpu
@pytest.mark.parametrize("extra", [dict(TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True, num_warps=8, BLOCK_N=256),
                                   dict(TMA=True, PERSISTENT=True, FLATTEN=True, num_warps=8),
                                   dict(TMA=True, PERSISTENT=True, FLATTEN=True, EPILOGUE_SUBTILE=True, maxnreg=168),
                                   dict(PERSISTENT=True, FLATTEN=True, num_warps=8),
                                   dict(maxnreg=232, num_warps=4)],
                         ids=["tma-persistent-subtile-256", "tma-persistent-flatten", "flatten-subtile-maxnreg",
                              "pointers-persistent-flatten", "pointers-maxnreg"])
def test_tutorial_switches_bf16_on_gpu(device, extra):
    needs(extra)
    cfg = {**mm.DEFAULT_CONFIG, **dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_stages=3), **extra}
    assert matmul.space(mm.MatmulProblem(M=4000, N=4096, K=1024, dtype="bfloat16"), H100).violations(cfg) == []
    result = run(device, (4000, 4096, 1024), "bfloat16", cfg)
    assert result.ok, result.reason
    p = ge.FusedGemmProblem(M=4000, N=4096, K=1024, dtype="bfloat16", activation="gelu", residual=True)
    if not cfg.get("WARP_SPECIALIZE"):  # the fused space excludes warp specialization (wrong results)
        inputs = ge.make_inputs(p, device, seed=3)
        out = ge.make_output(p, inputs)
        poison(out)
        ge.launch(inputs, out, cfg)
        fused = check(out, ge.reference(inputs))
        assert fused.ok, fused.reason
