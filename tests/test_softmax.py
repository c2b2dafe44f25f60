"""Row softmax on odd shapes, both strategies, against the float64 reference; rejected inputs."""
import pytest
import torch

from kernelevolve.kernels import softmax as sm
from kernelevolve.search_spaces.softmax import space
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.measure.verify import check, poison

SHAPES = [(1, 1), (37, 100), (5, 1000), (3, 33)]
CONFIGS = [
    {"ONLINE": False, "ROWS": 1},
    {"ONLINE": False, "ROWS": 4},
    {"ONLINE": True, "BLOCK": 16, "ROWS": 1},
    {"ONLINE": True, "BLOCK": 64, "ROWS": 2},
]


def _full(cfg, cols):
    base = {"BLOCK": _padded(cols), "num_warps": 4, "num_stages": 1}
    return {**base, **cfg}


def _padded(n):
    return 1 << max(4, (n - 1).bit_length())


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"online{int(c['ONLINE'])}_b{c.get('BLOCK', 'row')}_r{c['ROWS']}")
def test_template_matches_reference(device, dtype, shape, cfg):
    problem = sm.SoftmaxProblem(rows=shape[0], cols=shape[1], dtype=dtype)
    inputs = sm.make_inputs(problem, device, seed=shape[0] + shape[1])
    out = sm.make_output(problem, inputs)
    poison(out)
    sm.launch(inputs, out, _full(cfg, shape[1]))
    result = check(out, sm.reference(inputs))
    assert result.ok, result.reason


def test_public_entry_point_any_rank(device):
    x = torch.randn(2, 3, 50, device=device, dtype=torch.float16)
    y = sm.softmax(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert check(y, torch.softmax(x.double(), -1)).ok
    assert sm.softmax(torch.empty(0, 5, device=device)).shape == (0, 5)


def test_rows_past_32768_default_to_online(device):
    assert sm.default_config(9000) == {"ONLINE": False, "BLOCK": 16384, "ROWS": 1, "num_warps": 16, "num_stages": 1}
    assert sm.default_config(40000)["ONLINE"]
    for cols in (9000, 40000):
        x = torch.randn(2, cols, device=device)
        assert check(sm.softmax(x), torch.softmax(x.double(), -1)).ok


def test_in_registers_too_narrow_is_rejected(device):
    x = torch.randn(2, 100, device=device)
    with pytest.raises(ValueError, match="ONLINE"):
        sm.softmax(x, {"ONLINE": False, "BLOCK": 64, "ROWS": 1, "num_warps": 4, "num_stages": 1})


@pytest.mark.parametrize("bad,exc,match", [
    (lambda: torch.zeros(3, 4, dtype=torch.int32), TypeError, "float16"),
    (lambda: torch.tensor(1.0), ValueError, "scalar"),
    (lambda: [1.0, 2.0], TypeError, "tensor"),
    (lambda: torch.zeros(3, 4, device="meta"), ValueError, "device"),
])
def test_rejected_inputs(bad, exc, match):
    with pytest.raises(exc, match=match):
        sm.softmax(bad())


@pytest.mark.gpu
def test_bfloat16_on_gpu(device):
    problem = sm.SoftmaxProblem(rows=300, cols=3000, dtype="bfloat16")
    inputs = sm.make_inputs(problem, device, seed=1)
    for online in (False, True):
        out = sm.make_output(problem, inputs)
        poison(out)
        cfg = dict(sm.default_config(3000), ONLINE=online, BLOCK=4096 if not online else 512)
        sm.launch(inputs, out, cfg)
        assert check(out, sm.reference(inputs)).ok


def test_search_space_configs_are_runnable(device):
    problem = sm.SoftmaxProblem(rows=7, cols=40, dtype="float32")
    sp = space(problem, profile("cpu-interpreter"))
    configs = sp.valid_configs()
    assert configs and all(sp.violations(c) == [] for c in configs)
    assert {c["ONLINE"] for c in configs} == {False, True}
    inputs = sm.make_inputs(problem, device, seed=0)
    for cfg in configs:
        out = sm.make_output(problem, inputs)
        poison(out)
        sm.launch(inputs, out, cfg)
        assert check(out, sm.reference(inputs)).ok, cfg
    h100 = space(sm.SoftmaxProblem(rows=4096, cols=4096), profile("h100"))
    assert all(not c["ONLINE"] or c["BLOCK"] < 4096 for c in h100.valid_configs())


def test_cost_model():
    p = sm.SoftmaxProblem(rows=10, cols=20, dtype="float32")
    assert sm.bytes_moved(p) == 2 * 10 * 20 * 4 and sm.flops(p) == 5 * 200
