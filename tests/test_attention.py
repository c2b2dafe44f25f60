"""Flash-attention forward: causal and not, head dims 64 and 128, ragged sequence lengths, both
masking strategies, against the float64 reference; rejected inputs."""
import pytest
import torch

from kernelevolve.kernels import attention as at
from kernelevolve.search_spaces.attention import space
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.measure.verify import check, poison

CASES = [(1, 64), (37, 64), (50, 128)]  # (seq_len, head_dim)
CONFIGS = [{"BLOCK_M": m, "BLOCK_N": n, "SPLIT_MASKED": s} for m, n in ((16, 16), (32, 16), (16, 32)) for s in (False, True)]


def _run(problem, cfg, device, seed=1):
    inputs = at.make_inputs(problem, device, seed)
    out = at.make_output(problem, inputs)
    poison(out)
    at.launch(inputs, out, {"num_warps": 4, "num_stages": 1, **cfg})
    return check(out, at.reference(inputs))


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"s{c[0]}_d{c[1]}")
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"m{c['BLOCK_M']}n{c['BLOCK_N']}split{int(c['SPLIT_MASKED'])}")
def test_template_matches_reference(device, causal, dtype, case, cfg):
    problem = at.AttentionProblem(batch=1, heads=2, seq_len=case[0], head_dim=case[1], causal=causal, dtype=dtype)
    result = _run(problem, cfg, device)
    assert result.ok, result.reason


def test_public_entry_point_and_peer(device):
    q, k, v = (torch.randn(2, 3, 40, 64, device=device, dtype=torch.float16) for _ in range(3))
    for causal in (False, True):
        ref = at.reference((q, k, v, causal))
        cfg = dict(at.DEFAULT_CONFIG, BLOCK_M=16, BLOCK_N=16)
        assert check(at.attention(q, k, v, causal, cfg), ref).ok
        assert check(at.baseline((q, k, v, causal)), ref).ok


Q = torch.ones(1, 2, 8, 64)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: at.attention(Q, Q[:, :, :4], Q), ValueError, "one shape"),
    (lambda: at.attention(Q[0], Q[0], Q[0]), ValueError, "one shape"),
    (lambda: at.attention(torch.ones(1, 2, 8, 96), torch.ones(1, 2, 8, 96), torch.ones(1, 2, 8, 96)), ValueError, "64 or 128"),
    (lambda: at.attention(Q, Q.half(), Q), TypeError, "one dtype"),
    (lambda: at.attention(Q.int(), Q.int(), Q.int()), TypeError, "one dtype"),
    (lambda: at.attention(Q, "k", Q), TypeError, "k must be a tensor"),
    (lambda: at.attention(Q, Q, Q.to("meta")), ValueError, "different devices"),
    (lambda: at.attention(Q.to("meta"), Q.to("meta"), Q.to("meta")), ValueError, "CUDA"),
])
def test_rejected_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_search_space(device):
    problem = at.AttentionProblem(batch=1, heads=1, seq_len=32, head_dim=64, causal=False, dtype="float32")
    configs = space(problem, profile("cpu-interpreter")).valid_configs()
    assert configs and not any(c["SPLIT_MASKED"] for c in configs)  # 32 is whole key blocks
    for cfg in configs:
        assert _run(problem, cfg, device).ok, cfg
    big = at.AttentionProblem(batch=4, heads=16, seq_len=4096, head_dim=128, causal=True)
    valid = space(big, profile("h100")).valid_configs()
    assert valid and all(c["BLOCK_M"] * (128 + c["BLOCK_N"]) / (32 * c["num_warps"]) <= 192 for c in valid)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_bfloat16_on_gpu(device, causal, head_dim):
    problem = at.AttentionProblem(batch=2, heads=4, seq_len=1000, head_dim=head_dim, causal=causal, dtype="bfloat16")
    for split in (False, True):
        assert _run(problem, dict(at.DEFAULT_CONFIG, SPLIT_MASKED=split, num_stages=2), device).ok


def test_cost_model():
    p = at.AttentionProblem(batch=2, heads=3, seq_len=10, head_dim=64, causal=True, dtype="float16")
    assert at.flops(p) == 4 * 2 * 3 * 100 * 64 / 2 and at.bytes_moved(p) == 4 * 2 * 3 * 10 * 64 * 2
