"""The GEMM template on odd shapes, for every transform, against the float64 reference."""
import pytest
import torch

from kernelevolve.kernels import matmul as mm
from kernelevolve.tuner.measure.verify import check, poison

SHAPES = [(100, 72, 130), (33, 17, 65), (1, 1, 1), (64, 64, 64)]
CONFIGS = [
    dict(mm.DEFAULT_CONFIG),
    dict(mm.DEFAULT_CONFIG, GROUP_M=1),
    dict(mm.DEFAULT_CONFIG, BLOCK_M=16, BLOCK_N=32, BLOCK_K=16),
    dict(mm.DEFAULT_CONFIG, SPLIT_K=2),
    dict(mm.DEFAULT_CONFIG, SPLIT_K=4, BLOCK_K=16, GROUP_M=4),
]


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"bm{c['BLOCK_M']}bn{c['BLOCK_N']}bk{c['BLOCK_K']}g{c['GROUP_M']}s{c['SPLIT_K']}")
def test_template_matches_reference(device, dtype, shape, cfg):
    M, N, K = shape
    problem = mm.MatmulProblem(M=M, N=N, K=K, dtype=dtype)
    inputs = mm.make_inputs(problem, device, seed=M * 7 + K)
    out = mm.make_output(problem, inputs)
    poison(out)
    mm.launch(inputs, out, cfg)
    result = check(out, mm.reference(inputs))
    assert result.ok, result.reason
    assert result.rel_error < 1e-2


def test_public_entry_point(device):
    a = torch.randn(37, 50, device=device, dtype=torch.float16)
    b = torch.randn(50, 29, device=device, dtype=torch.float16)
    out = mm.matmul(a, b)
    assert out.shape == (37, 29) and out.dtype == torch.float16
    assert check(out, a.double() @ b.double()).ok


@pytest.mark.parametrize("a_shape,b_shape,dtype,match", [
    ((4, 5), (6, 3), torch.float16, "inner dimensions"),
    ((4, 5, 1), (5, 3), torch.float16, "2-D"),
    ((4, 5), (5, 3), torch.int32, "dtype"),
    ((0, 5), (5, 3), torch.float16, "empty"),
])
def test_public_entry_point_rejects_bad_inputs(a_shape, b_shape, dtype, match):
    a = torch.zeros(a_shape, dtype=dtype)
    b = torch.zeros(b_shape, dtype=dtype)
    with pytest.raises((ValueError, TypeError), match=match):
        mm.matmul(a, b)


def test_mixed_dtypes_rejected():
    with pytest.raises(TypeError, match="one dtype"):
        mm.matmul(torch.zeros(2, 2, dtype=torch.float16), torch.zeros(2, 2, dtype=torch.float32))


def test_cost_model():
    p = mm.MatmulProblem(M=4096, N=4096, K=4096, dtype="bfloat16")
    assert mm.flops(p) == 2 * 4096 ** 3
    assert mm.bytes_moved(p) == 3 * 4096 * 4096 * 2
