"""fp8 (e4m3) GEMM with per-tensor scales.

The interpreter (triton 3.9) runs it with fp16 output: the indexing, the scales and the K-major B
are checked here on the CPU. Hopper's fp8 tensor-core path (bf16 output, TMA, warp
specialization) and the comparison with torch._scaled_mm are VERIFIED ON THE GPU ONLY (the gpu
tests below); tests/test_gemm_sm90_compile.py checks that path compiles for sm90 on any machine.
"""
import pytest
import torch

from kernelevolve.kernels import gemm_fp8 as g8
from kernelevolve.kernels.matmul import DEFAULT_CONFIG
from kernelevolve.tuner.measure.verify import check, poison

CFG = dict(DEFAULT_CONFIG, BLOCK_M=64, BLOCK_N=32, BLOCK_K=32)


def run(device, shape, out_dtype, cfg):
    if device.type == "cuda" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 e4m3 dots need sm89 or newer")
    M, N, K = shape
    p = g8.Fp8GemmProblem(M=M, N=N, K=K, out_dtype=out_dtype)
    inputs = g8.make_inputs(p, device, seed=4)
    out = g8.make_output(p, inputs)
    poison(out)
    g8.launch(inputs, out, cfg)
    return check(out, g8.reference(inputs)), inputs, out


@pytest.mark.parametrize("shape,extra", [
    ((100, 72, 130), {}),
    ((100, 72, 144), dict(TMA=True)),
    ((100, 72, 144), dict(TMA=True, PERSISTENT=True)),
    ((64, 64, 256), dict(SPLIT_K=2, SPLIT_K_REDUCE="two_pass")),
    ((64, 64, 256), dict(SPLIT_K=2, SPLIT_K_REDUCE="in_kernel")),
], ids=["pointers-odd", "tma", "tma-persistent", "splitk-two-pass", "splitk-in-kernel"])
def test_fp8_scaled_matches_reference(device, shape, extra):
    result, _, _ = run(device, shape, "float16", dict(CFG, **extra))
    assert result.ok, result.reason


def test_quantize_is_per_tensor_and_in_range():
    x = torch.randn(64, 32) * 1000
    q, scale = g8.quantize(x)
    assert q.dtype == torch.float8_e4m3fn and scale.dim() == 0
    assert float(q.float().abs().max()) <= g8.E4M3_MAX
    assert torch.allclose(q.float() * scale, x, rtol=0.07, atol=float(scale) * 2)


@pytest.mark.gpu
@pytest.mark.parametrize("extra", [dict(num_warps=8), dict(TMA=True, num_warps=8),
                                   dict(TMA=True, WARP_SPECIALIZE=True, num_warps=4),
                                   dict(TMA=True, PERSISTENT=True, num_warps=8)],
                         ids=["pointers", "tma", "tma-ws", "tma-persistent"])
def test_fp8_hopper_bf16_against_reference_and_scaled_mm(device, extra):
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("this checks Hopper's fp8 path (sm90 or newer)")
    cfg = dict(DEFAULT_CONFIG, BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, num_stages=3, **extra)
    result, inputs, out = run(device, (4000, 4096, 1024), "bfloat16", cfg)
    assert result.ok, result.reason
    assert check(out, g8.baseline(inputs).double()).ok  # cuBLASLt agrees within bf16 rounding
