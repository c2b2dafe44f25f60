"""LayerNorm / RMSNorm forward and backward on odd shapes, every strategy, against float64."""
import pytest
import torch

from kernelevolve.kernels import norms
from kernelevolve.search_spaces.norms import backward_space, forward_space
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.measure.verify import check, poison

SHAPES = [(1, 1), (37, 100), (3, 1000)]
# A row of one is ill-conditioned backward (RMS dx ~ eps / x^2: all cancellation), so not there.
BWD_SHAPES = [(1, 7), (37, 100), (3, 1000)]
FWD = [{"LOOPED": False, "ROWS": 1}, {"LOOPED": False, "ROWS": 4},
       {"LOOPED": True, "BLOCK": 16, "ROWS": 2}, {"LOOPED": True, "BLOCK": 128, "ROWS": 1}]
BWD = [{"LOOPED": False, "ROWS_PER_PROGRAM": 1}, {"LOOPED": False, "ROWS_PER_PROGRAM": 8},
       {"LOOPED": True, "BLOCK": 16, "ROWS_PER_PROGRAM": 3}, {"LOOPED": True, "BLOCK": 128, "ROWS_PER_PROGRAM": 16}]
KINDS = {"layer": (norms.LAYER_NORM_FWD, norms.LAYER_NORM_BWD), "rms": (norms.RMS_NORM_FWD, norms.RMS_NORM_BWD)}


def _full(cfg, cols):
    return {"BLOCK": 1 << max(4, (cols - 1).bit_length()), "num_warps": 4, "num_stages": 1, **cfg}


def _ids(c):
    return "_".join(f"{k[0]}{int(v)}" for k, v in c.items())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("cfg", FWD, ids=_ids)
def test_forward_matches_reference(device, kind, dtype, shape, cfg):
    spec = KINDS[kind][0]
    problem = norms.NormProblem(rows=shape[0], cols=shape[1], dtype=dtype)
    inputs = spec.make_inputs(problem, device, seed=shape[0])
    out = spec.make_output(problem, inputs)
    poison(out)
    spec.launch(inputs, out, _full(cfg, shape[1]))
    result = check(out, spec.reference(inputs))
    assert result.ok, result.reason


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", BWD_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("cfg", BWD, ids=_ids)
def test_backward_matches_reference(device, kind, dtype, shape, cfg):
    problem = norms.NormProblem(rows=shape[0], cols=shape[1], dtype=dtype)
    rms = kind == "rms"
    spec = KINDS[kind][1]
    inputs = spec.make_inputs(problem, device, seed=shape[1])
    dy, x, w, *stats = inputs
    dx = spec.make_output(problem, inputs)
    poison(dx)
    _, dw, db = norms.launch_backward(dy, x, w, None if rms else stats[0], stats[-1], dx,
                                      _full(cfg, shape[1]), rms)
    want_dx, want_dw, want_db = norms.reference_backward(dy, x, w, rms)
    for got, want in ((dx, want_dx), (dw, want_dw)) + (() if rms else ((db, want_db),)):
        # dweight/dbias are sums over rows: compare them in fp32, as the kernel accumulates them.
        result = check(got.float() if got is not dx else got, want)
        assert result.ok, result.reason
    assert rms or db is not None


def test_public_entry_points_round_trip(device):
    x = torch.randn(2, 5, 70, device=device, dtype=torch.float16)
    w = torch.rand(70, device=device, dtype=torch.float16) + 0.5
    b = torch.randn(70, device=device, dtype=torch.float16)
    y, mean, rstd = norms.layer_norm(x, w, b, return_stats=True)
    assert y.shape == x.shape and check(y, norms.reference_forward(x.reshape(-1, 70), w, b).view(x.shape)).ok
    dy = torch.randn_like(x)
    dx, dw, db = norms.layer_norm_backward(dy, x, w, mean, rstd)
    ref = norms.reference_backward(dy.reshape(-1, 70), x.reshape(-1, 70), w, rms=False)
    assert check(dx.reshape(-1, 70), ref[0]).ok and check(dw.float(), ref[1]).ok and check(db.float(), ref[2]).ok
    y, rstd = norms.rms_norm(x, w, return_stats=True)
    assert check(y, norms.reference_forward(x.reshape(-1, 70), w).view(x.shape)).ok
    dx, dw = norms.rms_norm_backward(dy, x, w, rstd)
    ref = norms.reference_backward(dy.reshape(-1, 70), x.reshape(-1, 70), w, rms=True)
    assert check(dx.reshape(-1, 70), ref[0]).ok and check(dw.float(), ref[1]).ok


def test_long_rows_default_to_looped(device):
    x = torch.randn(2, 9000, device=device)
    w = torch.ones(9000, device=device)
    assert norms.default_config(9000)["LOOPED"]
    assert check(norms.rms_norm(x, w), norms.reference_forward(x, w)).ok


# Built where the kernels run, so that on a GPU machine the checks of values and shapes answer, not
# the device check.
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _t(*shape, dtype=torch.float32, device=DEV):
    return torch.ones(shape, dtype=dtype, device=device)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: norms.layer_norm(_t(3, 4), _t(5), _t(4)), ValueError, r"shape \(4,\)"),
    (lambda: norms.layer_norm(_t(3, 4, dtype=torch.int32), _t(4), _t(4)), TypeError, "dtype"),
    (lambda: norms.rms_norm(_t(3, 4), _t(4, dtype=torch.float16)), TypeError, "one dtype"),
    (lambda: norms.rms_norm(_t(0, 4), _t(4)), ValueError, "non-empty"),
    (lambda: norms.rms_norm(_t(3, 4), "w"), TypeError, "tensors"),
    (lambda: norms.rms_norm(_t(3, 4, device="meta"), _t(4, device="meta")), ValueError, "CUDA"),
    (lambda: norms.rms_norm(_t(3, 4), _t(4, device="meta")), ValueError, "different devices"),
    (lambda: norms.rms_norm_backward(_t(3, 5), _t(3, 4), _t(4), _t(3)), ValueError, "dy shape"),
    (lambda: norms.layer_norm_backward(_t(3, 4), _t(3, 4), _t(4), _t(2), _t(3)), ValueError, "one value per row"),
    (lambda: norms.rms_norm(_t(3, 100), _t(100), config={"LOOPED": False, "BLOCK": 64, "ROWS": 1,
                                                          "num_warps": 4, "num_stages": 1}), ValueError, "LOOPED"),
])
def test_rejected_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_search_spaces_run(device):
    problem = norms.NormProblem(rows=9, cols=40, dtype="float32")
    for spec, space in ((norms.LAYER_NORM_FWD, forward_space), (norms.RMS_NORM_BWD, backward_space)):
        sp = space(problem, profile("cpu-interpreter"))
        configs = sp.valid_configs()
        assert {c["LOOPED"] for c in configs} == {False, True}
        inputs = spec.make_inputs(problem, device, seed=3)
        for cfg in configs:
            out = spec.make_output(problem, inputs)
            poison(out)
            spec.launch(inputs, out, cfg)
            assert check(out, spec.reference(inputs)).ok, cfg
    big = backward_space(norms.NormProblem(rows=16384, cols=4096, dtype="bfloat16"), profile("h100"))
    assert big.valid_configs() and all(c["ROWS_PER_PROGRAM"] >= 2 for c in big.valid_configs())


@pytest.mark.gpu
@pytest.mark.parametrize("spec", [norms.LAYER_NORM_FWD, norms.LAYER_NORM_BWD, norms.RMS_NORM_FWD, norms.RMS_NORM_BWD],
                         ids=lambda s: s.name)
def test_bfloat16_on_gpu(device, spec):
    problem = norms.NormProblem(rows=513, cols=3000, dtype="bfloat16")
    inputs = spec.make_inputs(problem, device, seed=5)
    for looped in (False, True):
        cfg = norms.default_config(3000, backward="bwd" in spec.name)
        cfg.update(LOOPED=looped, BLOCK=512 if looped else 4096)
        out = spec.make_output(problem, inputs)
        poison(out)
        spec.launch(inputs, out, cfg)
        assert check(out, spec.reference(inputs)).ok


def test_cost_model():
    p = norms.NormProblem(rows=10, cols=20, dtype="float16")
    assert norms.LAYER_NORM_FWD.bytes_moved(p) == (2 * 200 + 2 * 20) * 2
    assert norms.RMS_NORM_BWD.bytes_moved(p) == (3 * 200 + 2 * 20) * 2 + 4 * 10  # w; dw
    assert norms.LAYER_NORM_BWD.bytes_moved(p) == (3 * 200 + 3 * 20) * 2 + 8 * 10  # w; dw, db; mean, rstd
