"""DLRM dot interaction: DLRM's own pair order, odd feature counts and dims, both product paths."""
import pytest
import torch

from kernelevolve.kernels import interaction as it
from kernelevolve.search_spaces.interaction import space
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.measure.verify import check, poison

SHAPES = [(3, 27, 40), (1, 2, 1), (5, 5, 130), (2, 17, 16)]  # (batch, features, dim)
CONFIGS = [{"USE_DOT": d, "BLOCK_D": b, "SAMPLES_PER_PROGRAM": s} for d in (False, True) for b, s in ((16, 1), (64, 2))]


def _run(problem, cfg, device, seed=1):
    inputs = it.make_inputs(problem, device, seed)
    out = it.make_output(problem, inputs)
    poison(out)
    it.launch(inputs, out, {"num_warps": 4, "num_stages": 1, **cfg})
    return check(out, it.reference(inputs))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"dot{int(c['USE_DOT'])}_d{c['BLOCK_D']}_s{c['SAMPLES_PER_PROGRAM']}")
def test_template_matches_reference(device, dtype, shape, cfg):
    problem = it.InteractionProblem(batch=shape[0], features=shape[1], dim=shape[2], dtype=dtype)
    result = _run(problem, cfg, device)
    assert result.ok, result.reason


def test_order_is_dlrms(device):
    """DLRM: li = [i for i in range(F) for j in range(i)], lj = [j for i ... for j in range(i)]."""
    t = torch.randn(2, 6, 8, device=device)
    li = torch.tensor([i for i in range(6) for j in range(i)])
    lj = torch.tensor([j for i in range(6) for j in range(i)])
    want = torch.bmm(t.double(), t.double().transpose(1, 2))[:, li, lj]
    got = it.dot_interaction(t)
    assert got.shape == (2, 15) and check(got, want).ok
    assert check(it.baseline((t,)), want).ok


@pytest.mark.parametrize("use_dot", [False, True])
def test_concat_writes_dense_pairs_and_zero_padding(device, use_dot):
    """launch_concat: out = [t[:, 0] | pairs | zeros] for a padded width, from a strided t (a slice of
    a bigger buffer, as DLRM's forward passes it)."""
    big = torch.randn(3, 7, 20, device=device)
    t = big[:, 1:, :]  # F = 6, D = 20 (a full and a ragged block of 16), 15 pairs
    out = torch.full((3, 20 + 15 + 5), float("nan"), device=device)
    it.launch_concat(t, out, {"USE_DOT": use_dot, "BLOCK_D": 16, "SAMPLES_PER_PROGRAM": 2, "num_warps": 4,
                              "num_stages": 1})
    want = torch.cat([t[:, 0].double(), it.reference((t.contiguous(),)), torch.zeros(3, 5, dtype=torch.float64,
                                                                                      device=device)], 1)
    assert check(out, want).ok
    with pytest.raises(ValueError, match="concatenated"):
        it.launch_concat(t, out[:, :30], {"USE_DOT": use_dot, "BLOCK_D": 16, "SAMPLES_PER_PROGRAM": 2,
                                          "num_warps": 4, "num_stages": 1})


@pytest.mark.parametrize("bad,exc,match", [
    (lambda: torch.ones(2, 5), ValueError, r"\[B, F, D\]"),
    (lambda: torch.ones(2, 1, 4), ValueError, "2 <= F"),
    (lambda: torch.ones(2, 3, 4, dtype=torch.int64), TypeError, "float16"),
    (lambda: [[1.0]], TypeError, "tensor"),
    (lambda: torch.ones(2, 3, 4, device="meta"), ValueError, "CUDA"),
])
def test_rejected_inputs(bad, exc, match):
    with pytest.raises(exc, match=match):
        it.dot_interaction(bad())


def test_empty_batch(device):
    assert it.dot_interaction(torch.ones(0, 4, 8, device=device)).shape == (0, 6)


def test_search_space_runs(device):
    problem = it.InteractionProblem(batch=6, features=9, dim=20, dtype="float32")
    configs = space(problem, profile("cpu-interpreter")).valid_configs()
    assert {c["USE_DOT"] for c in configs} == {False, True}
    for cfg in configs[::4]:
        assert _run(problem, cfg, device).ok, cfg
    big = space(it.InteractionProblem(batch=16384, features=27, dim=128, dtype="bfloat16"), profile("h100"))
    assert {c["USE_DOT"] for c in big.valid_configs()} == {False, True}


@pytest.mark.gpu
@pytest.mark.parametrize("use_dot", [False, True])
def test_bfloat16_on_gpu(device, use_dot):
    problem = it.InteractionProblem(batch=1000, features=27, dim=128, dtype="bfloat16")
    assert _run(problem, dict(it.DEFAULT_CONFIG, USE_DOT=use_dot, BLOCK_D=32), device).ok


def test_cost_model():
    p = it.InteractionProblem(batch=10, features=4, dim=8, dtype="float16")
    assert it.flops(p) == 2 * 10 * 6 * 8 and it.bytes_moved(p) == 10 * (32 + 6) * 2
