"""conv2d as an NHWC implicit GEMM against F.conv2d in float64: stride, padding, dilation, odd
channel counts, non-square filters, both K-loop shapes (flat and nested) and TMA weight tiles."""
import pytest
import torch

from kernels import conv2d as cv
from tuner.verify import check, poison

CFG = dict(cv.DEFAULT_CONFIG, BLOCK_M=32, BLOCK_N=16, BLOCK_K=16)
CASES = {  # name: problem fields
    "stride2_pad1_dil2_odd_channels": dict(N=2, H=9, W=7, C_in=5, C_out=7, stride=2, padding=1, dilation=2),
    "3x3_same": dict(N=1, H=8, W=8, C_in=24, C_out=20),
    "1x1_stride2": dict(N=2, H=7, W=6, C_in=19, C_out=9, R=1, S=1, stride=2, padding=0),
    "5x3_pad2": dict(N=1, H=6, W=9, C_in=3, C_out=5, R=5, S=3, padding=2),
}


def run(device, fields, dtype, cfg, out_channels_last=True):
    p = cv.Conv2dProblem(dtype=dtype, **fields)
    inputs = cv.make_inputs(p, device, seed=2)
    out = cv.make_output(p, inputs)
    if not out_channels_last:  # what the tuner's guarded output buffer is: plain NCHW
        out = out.contiguous()
    poison(out)
    cv.launch(inputs, out, cfg)
    return check(out, cv.reference(inputs))


@pytest.mark.parametrize("flat_k", [True, False], ids=["flat", "nested"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_conv_matches_reference(device, case, flat_k):
    result = run(device, CASES[case], "float16", dict(CFG, FLAT_K=flat_k))
    assert result.ok, result.reason


def test_fp32_and_nchw_output(device):
    result = run(device, CASES["stride2_pad1_dil2_odd_channels"], "float32", CFG, out_channels_last=False)
    assert result.ok, result.reason


@pytest.mark.parametrize("flat_k", [True, False], ids=["flat", "nested"])
def test_tma_weight_tiles(device, flat_k):
    # C_in = 24 with BLOCK_K = 16: a K block straddles two taps and meets the masked zeros of x
    result = run(device, CASES["3x3_same"], "float16", dict(CFG, TMA=True, FLAT_K=flat_k))
    assert result.ok, result.reason


def test_tma_rejects_unaligned_weight_rows(device):
    with pytest.raises(ValueError, match="TMA"):
        run(device, CASES["5x3_pad2"], "float16", dict(CFG, TMA=True))  # 5*3*3*2 = 90 B rows


def test_output_size_and_cost_model():
    p = cv.Conv2dProblem(N=32, H=56, W=56, C_in=64, C_out=64)
    assert (p.P, p.Q) == (56, 56)
    assert cv.flops(p) == 2 * 32 * 56 * 56 * 64 * 64 * 9
    odd = cv.Conv2dProblem(N=1, H=9, W=7, C_in=1, C_out=1, R=3, S=2, stride=2, padding=1, dilation=2)
    torch_out = torch.nn.functional.conv2d(torch.zeros(1, 1, 9, 7), torch.zeros(1, 1, 3, 2), stride=2,
                                           padding=1, dilation=2)
    assert (odd.P, odd.Q) == tuple(torch_out.shape[2:])


@pytest.mark.gpu
@pytest.mark.parametrize("tma", [False, True])
def test_resnet_layer_bf16_on_gpu(device, tma):
    fields = dict(N=8, H=28, W=28, C_in=128, C_out=128)
    cfg = dict(cv.DEFAULT_CONFIG, BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, TMA=tma, num_warps=8, num_stages=3)
    result = run(device, fields, "bfloat16", cfg)
    assert result.ok, result.reason
