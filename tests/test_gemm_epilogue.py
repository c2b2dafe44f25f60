"""The fused GEMM epilogue (bias, relu/gelu/silu, residual) against float64, on odd shapes, in
each place the epilogue can run: the main kernel's store (pointers or TMA, one tile per program
or persistent) and the split-K finish kernel (after atomics or two-pass slabs)."""
import pytest

from kernelevolve.kernels import gemm_epilogue as ge
from kernelevolve.kernels.matmul import DEFAULT_CONFIG
from kernelevolve.tuner.measure.verify import check, poison

CFG = dict(DEFAULT_CONFIG, BLOCK_M=64, BLOCK_N=32, BLOCK_K=32)
WHERE = {
    "store": {},
    "tma_persistent": dict(TMA=True, PERSISTENT=True),
    "splitk_atomic": dict(SPLIT_K=2),
    "splitk_two_pass": dict(SPLIT_K=2, SPLIT_K_REDUCE="two_pass"),
    "splitk_in_kernel": dict(SPLIT_K=2, SPLIT_K_REDUCE="in_kernel"),
}


def run(device, problem, cfg):
    inputs = ge.make_inputs(problem, device, seed=3)
    out = ge.make_output(problem, inputs)
    poison(out)
    ge.launch(inputs, out, cfg)
    return check(out, ge.reference(inputs))


@pytest.mark.parametrize("where", sorted(WHERE))
@pytest.mark.parametrize("activation", ["none", "relu", "gelu", "silu"])
def test_epilogue_bias_activation_residual(device, activation, where):
    # 100 x 72 x 136: ragged tiles; rows 16-byte aligned so the TMA variant can run too
    p = ge.FusedGemmProblem(M=100, N=72, K=136, dtype="float16", activation=activation, residual=True)
    result = run(device, p, dict(CFG, **WHERE[where]))
    assert result.ok, result.reason


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # unwritten pitch columns of the staged B (masked lanes)
@pytest.mark.parametrize("where", sorted(WHERE))
def test_epilogue_with_a_staged_b_odd_n(device, where):
    # N=45: B's and C's rows 90 bytes; B staged (STAGE_B), TMA loads, C stored by pointers
    p = ge.FusedGemmProblem(M=100, N=45, K=136, dtype="float16", activation="gelu", residual=True)
    result = run(device, p, dict(CFG, STAGE_B=True, **WHERE[where]))
    assert result.ok, result.reason


@pytest.mark.parametrize("bias,residual", [(False, False), (True, False), (False, True)])
def test_epilogue_parts_alone_fp32_odd_k(device, bias, residual):
    p = ge.FusedGemmProblem(M=33, N=17, K=65, dtype="float32", activation="gelu", bias=bias, residual=residual)
    result = run(device, p, dict(CFG, BLOCK_M=16, BLOCK_N=16, BLOCK_K=16))
    assert result.ok, result.reason


def test_baseline_is_the_same_function(device):
    p = ge.FusedGemmProblem(M=20, N=24, K=16, dtype="float32", activation="silu", residual=True)
    inputs = ge.make_inputs(p, device, seed=1)
    assert check(ge.baseline(inputs), ge.reference(inputs)).ok


def test_cost_model_counts_bias_and_residual():
    p = ge.FusedGemmProblem(M=16384, N=4096, K=4096, dtype="bfloat16", residual=True)
    assert ge.flops(p) == 2 * 16384 * 4096 * 4096
    assert ge.bytes_moved(p) == 2 * (16384 * 4096 + 4096 * 4096 + 2 * 16384 * 4096 + 4096)


@pytest.mark.gpu
@pytest.mark.parametrize("extra", [pytest.param(dict(TMA=True, WARP_SPECIALIZE=True, num_warps=4), marks=pytest.mark.xfail(
                             reason="wrong results on the H100 with triton 3.6 (rel. error 0.81); the fused "
                                    "space excludes this combination", strict=False)),
                                   dict(TMA=True, PERSISTENT=True, num_warps=8), dict(num_warps=8)],
                         ids=["tma-ws", "tma-persistent", "pointers"])
def test_fused_gelu_bf16_on_gpu(device, extra):
    p = ge.FusedGemmProblem(M=4000, N=4096, K=1024, dtype="bfloat16", activation="gelu", residual=True)
    cfg = dict(DEFAULT_CONFIG, BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_stages=3, **extra)
    result = run(device, p, cfg)
    assert result.ok, result.reason


def test_fused_space_never_offers_warp_specialization():
    from kernelevolve.search_spaces.gemm_epilogue import space
    from kernelevolve.tuner.experiment.hardware import profile
    p = ge.FusedGemmProblem(M=4000, N=4096, K=1024, dtype="bfloat16", activation="gelu", residual=True)
    sp = space(p, profile("h100"))
    assert all(not c.get("WARP_SPECIALIZE", False) for c in sp.valid_configs()[:5000])
