"""Batched GEMM on odd and even shapes, pointer loads and per-batch tensor descriptors (TMA),
against float64. Warp specialization's code path is verified on the GPU only (gpu test below)."""
import pytest
import torch

from kernelevolve.kernels import bmm as bm
from kernelevolve.tuner.measure.verify import check, poison

CFG = dict(bm.DEFAULT_CONFIG, BLOCK_M=32, BLOCK_N=32, BLOCK_K=16)


def run(device, shape, dtype, cfg):
    B, M, N, K = shape
    p = bm.BmmProblem(B=B, M=M, N=N, K=K, dtype=dtype)
    inputs = bm.make_inputs(p, device, seed=5)
    out = bm.make_output(p, inputs)
    poison(out)
    bm.launch(inputs, out, cfg)
    return check(out, bm.reference(inputs))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", [(3, 33, 17, 65), (2, 64, 32, 64)], ids=["odd", "even"])
def test_pointer_loads(device, shape, dtype):
    result = run(device, shape, dtype, CFG)
    assert result.ok, result.reason


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("extra", [dict(TMA=True), dict(TMA=True, WARP_SPECIALIZE=True)], ids=["tma", "tma-ws"])
def test_per_batch_descriptors(device, dtype, extra):
    if extra.get("WARP_SPECIALIZE") and dtype == "float32" and device.type == "cuda":
        pytest.skip("Hopper's warp specialization does not compile for float32 (tf32) inputs")
    result = run(device, (3, 33, 40, 24), dtype, dict(CFG, **extra))  # ragged tiles, aligned rows
    assert result.ok, result.reason


def test_entry_point_and_errors(device):
    a = torch.randn(2, 5, 7, device=device)
    b = torch.randn(2, 7, 3, device=device)
    assert check(bm.bmm(a, b), torch.bmm(a.double(), b.double())).ok
    with pytest.raises(ValueError, match=r"\[B, M, K\]"):
        bm.bmm(a, b.transpose(1, 2))
    with pytest.raises(ValueError, match="TMA"):
        bm.launch((a, b), torch.empty(2, 5, 3, device=device), dict(CFG, TMA=True))  # 7*4 B rows


@pytest.mark.gpu
def test_bmm_bf16_tma_ws_on_gpu(device):
    cfg = dict(bm.DEFAULT_CONFIG, BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, TMA=True, WARP_SPECIALIZE=True,
               num_warps=4, num_stages=3)
    result = run(device, (8, 1000, 512, 1024), "bfloat16", cfg)
    assert result.ok, result.reason
