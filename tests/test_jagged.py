"""Jagged <-> padded dense, jagged softmax, jagged x dense bmm: empty and length-1 sequences,
odd dims, every switch, against float64 references; rejected offsets and shapes."""
import pytest
import torch

from kernelevolve.kernels import jagged as jg, jagged_bmm as jbmm, jagged_softmax as jsm
from kernelevolve.search_spaces.jagged import bmm_space, copy_space, softmax_space
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.measure.verify import check, poison

# make_offsets draws lengths in [0, max_len]: with these the batches hold empty sequences,
# sequences of one and full ones (the tests below assert it).
PROBLEMS = [(6, 13, 10), (1, 1, 3), (12, 4, 17), (9, 33, 5)]
COPY = [{"LOOP_L": l, "BLOCK_L": b, "BLOCK_D": 16} for l in (False, True) for b in (4, 16)]
SOFTMAX = [{"ONLINE": False}, {"ONLINE": True, "BLOCK_L": 4}, {"ONLINE": True, "BLOCK_L": 16, "BLOCK_D": 32}]
BMM = [{"LOOP_L": l, "BLOCK_M": 16, "BLOCK_N": n, "BLOCK_K": 16} for l in (False, True) for n in (16, 32)]


def _cfg(c, problem=None):
    base = {"BLOCK_D": 16, "num_warps": 4, "num_stages": 1}
    if problem is not None:  # softmax in registers: the padded max_len
        base["BLOCK_L"] = max(16, 1 << (problem.max_len - 1).bit_length())
    return {**base, **c}


def _run(spec, problem, cfg, device, seed=1):
    inputs = spec.make_inputs(problem, device, seed)
    out = spec.make_output(problem, inputs)
    poison(out)
    spec.launch(inputs, out, cfg)
    return check(out, spec.reference(inputs))


def _ids(c):
    return "_".join(f"{k[-1]}{int(v)}" for k, v in c.items())


def test_lengths_cover_edge_cases():
    lengths = torch.cat([jg.make_offsets(b, m, "cpu").diff() for b, m, _ in PROBLEMS])
    assert (lengths == 0).any() and (lengths == 1).any()


@pytest.mark.parametrize("spec", [jg.JAGGED_TO_PADDED, jg.PADDED_TO_JAGGED], ids=lambda s: s.name)
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", PROBLEMS, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cfg", COPY, ids=_ids)
def test_conversions_match_reference(device, spec, dtype, shape, cfg):
    problem = jg.JaggedProblem(batch=shape[0], max_len=shape[1], dim=shape[2], dtype=dtype)
    result = _run(spec, problem, _cfg(cfg), device)
    assert result.ok, result.reason


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", PROBLEMS, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cfg", SOFTMAX, ids=_ids)
def test_softmax_matches_reference(device, dtype, shape, cfg):
    problem = jg.JaggedProblem(batch=shape[0], max_len=shape[1], dim=shape[2], dtype=dtype)
    result = _run(jsm.JAGGED_SOFTMAX, problem, _cfg(cfg, problem), device)
    assert result.ok, result.reason


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", [(5, 20, 24, 18), (1, 1, 3, 5), (3, 40, 33, 40)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cfg", BMM, ids=_ids)
def test_bmm_matches_reference(device, dtype, shape, cfg):
    problem = jbmm.JaggedBmmProblem(batch=shape[0], max_len=shape[1], k=shape[2], n=shape[3], dtype=dtype)
    result = _run(jbmm.JAGGED_DENSE_BMM, problem, _cfg(cfg), device)
    assert result.ok, result.reason


def test_public_entry_points(device):
    offsets = torch.tensor([0, 0, 1, 4, 4, 9], device=device)  # empty, one, three, empty, five
    values = torch.randn(9, 7, device=device)
    dense = jg.jagged_to_padded_dense(values, offsets, max_len=4, padding_value=-1.0)
    assert torch.equal(dense, torch.ops.aten._jagged_to_padded_dense_forward(values, [offsets], [4], -1.0))
    back = jg.padded_dense_to_jagged(jg.jagged_to_padded_dense(values, offsets, 5), offsets)
    assert torch.equal(back, values)
    sm = jsm.jagged_softmax(values, offsets)
    assert check(sm, jsm.softmax_reference(values, offsets)).ok
    online = dict(jsm.default_softmax_config(5, 7), ONLINE=True, BLOCK_L=2)
    assert check(jsm.jagged_softmax(values, offsets, config=online), jsm.softmax_reference(values, offsets)).ok
    y = torch.randn(5, 7, 3, device=device)
    assert check(jbmm.jagged_dense_bmm(values, offsets, y), jbmm.bmm_reference(values, offsets, y, 5)).ok


# Built where the kernels run, so that on a GPU machine the value checks, not the device check, answer.
DEV = "cuda" if torch.cuda.is_available() else "cpu"
V, OFF = torch.ones(4, 3, device=DEV), torch.tensor([0, 1, 4], device=DEV)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: jsm.jagged_softmax(V, torch.tensor([0, 3, 2, 4], device=DEV)), ValueError, "monotone"),
    (lambda: jsm.jagged_softmax(V, torch.tensor([0, 1, 5], device=DEV)), ValueError, "out of range"),
    (lambda: jsm.jagged_softmax(V, torch.tensor([2, 4], device=DEV)), ValueError, r"offsets\[0\]"),
    (lambda: jsm.jagged_softmax(V, torch.tensor([[0, 4]], device=DEV)), ValueError, "1-D"),
    (lambda: jsm.jagged_softmax(V, OFF.float()), TypeError, "int32 or int64"),
    (lambda: jsm.jagged_softmax(V.int(), OFF), TypeError, "float16"),
    (lambda: jsm.jagged_softmax(V[0], OFF), ValueError, "2-D"),
    (lambda: jsm.jagged_softmax(V, OFF, max_len=2), ValueError, "max_len"),
    (lambda: jsm.jagged_softmax(V, OFF, config=dict(jsm.default_softmax_config(3, 3), BLOCK_L=2)), ValueError,
     "ONLINE"),
    (lambda: jsm.jagged_softmax(V, OFF.to("meta")), ValueError, "different devices"),
    (lambda: jg.jagged_to_padded_dense(V, OFF, max_len=0), ValueError, "positive int"),
    (lambda: jg.padded_dense_to_jagged(torch.ones(2, 2, 3, device=DEV), OFF), ValueError, "> max_len 2"),
    (lambda: jg.padded_dense_to_jagged(torch.ones(3, 4, 3, device=DEV), OFF), ValueError, "3 sequences"),
    (lambda: jbmm.jagged_dense_bmm(V, OFF, torch.ones(2, 4, 5, device=DEV)), ValueError, r"K=3"),
    (lambda: jbmm.jagged_dense_bmm(V, OFF, torch.ones(2, 3, 5, device=DEV).half()), TypeError, "one dtype"),
    (lambda: jbmm.jagged_dense_bmm(V.to("meta"), OFF.to("meta"), torch.ones(2, 3, 5, device="meta")), ValueError,
     "CUDA"),
])
def test_rejected_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_search_spaces_run(device):
    problem = jg.JaggedProblem(batch=4, max_len=9, dim=12, dtype="float32")
    for spec, space in ((jg.JAGGED_TO_PADDED, copy_space), (jsm.JAGGED_SOFTMAX, softmax_space)):
        configs = space(problem, profile("cpu-interpreter")).valid_configs()
        for cfg in configs[::3]:
            result = _run(spec, problem, cfg, device)
            assert result.ok, (cfg, result.reason)
    bmm = jbmm.JaggedBmmProblem(batch=1024, max_len=512, k=128, n=128, dtype="bfloat16")
    assert bmm_space(bmm, profile("h100")).valid_configs()
    assert {c["ONLINE"] for c in softmax_space(problem, profile("cpu-interpreter")).valid_configs()} == {False, True}


@pytest.mark.gpu
@pytest.mark.parametrize("spec", [jg.JAGGED_TO_PADDED, jg.PADDED_TO_JAGGED, jsm.JAGGED_SOFTMAX], ids=lambda s: s.name)
def test_bfloat16_on_gpu(device, spec):
    problem = jg.JaggedProblem(batch=300, max_len=200, dim=96, dtype="bfloat16")
    cfg = _cfg({"LOOP_L": True, "BLOCK_L": 32, "ONLINE": True}) if spec is not jsm.JAGGED_SOFTMAX \
        else _cfg({"ONLINE": True, "BLOCK_L": 32})
    assert _run(spec, problem, cfg, device).ok


@pytest.mark.gpu
def test_bfloat16_bmm_on_gpu(device):
    problem = jbmm.JaggedBmmProblem(batch=64, max_len=300, k=128, n=96, dtype="bfloat16")
    assert _run(jbmm.JAGGED_DENSE_BMM, problem, dict(jbmm.BMM_DEFAULT), device).ok


def test_cost_model():
    p = jg.JaggedProblem(batch=8, max_len=10, dim=4, dtype="float32")
    total = int(jg.make_offsets(8, 10, "cpu")[-1])
    assert jg.JAGGED_TO_PADDED.bytes_moved(p) == (total + 80) * 16 + 72
    assert jsm.JAGGED_SOFTMAX.flops(p) == 5 * total * 4
    b = jbmm.JaggedBmmProblem(batch=8, max_len=10, k=3, n=5, dtype="float16")
    assert jbmm.JAGGED_DENSE_BMM.flops(b) == 2 * total * 15
