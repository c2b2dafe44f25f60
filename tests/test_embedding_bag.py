"""EmbeddingBag forward and backward: jagged and empty bags, hot rows, every switch, vs float64."""
import pytest
import torch

from kernelevolve.kernels import embedding_bag as eb
from kernelevolve.search_spaces.embedding_bag import backward_space, forward_space
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.measure.verify import check, poison

# Few table rows for many ids: rows repeat inside a bag and across bags (atomics collide,
# sorted runs are long); dims that are not powers of two.
PROBLEMS = [dict(num_bags=9, avg_bag_len=3, dim=20, num_rows=7), dict(num_bags=1, avg_bag_len=1, dim=1, num_rows=1),
            dict(num_bags=13, avg_bag_len=5, dim=37, num_rows=50)]
FWD = [{"BLOCK_D": 16, "BAGS_PER_PROGRAM": 1, "IDS_PER_STEP": 1}, {"BLOCK_D": 32, "BAGS_PER_PROGRAM": 4, "IDS_PER_STEP": 8},
       {"BLOCK_D": 16, "BAGS_PER_PROGRAM": 2, "IDS_PER_STEP": 2, "PREFETCH": True},
       {"BLOCK_D": 32, "BAGS_PER_PROGRAM": 1, "IDS_PER_STEP": 8, "PREFETCH": True, "ROW_LOAD": "cg"},
       {"BLOCK_D": 16, "BAGS_PER_PROGRAM": 1, "IDS_PER_STEP": 4, "ROW_LOAD": "evict_first"}]
BWD = [dict(c, SORTED=s) for s in (False, True) for c in
       ({"BLOCK_D": 16, "ITEMS_PER_PROGRAM": 1, "IDS_PER_STEP": 1}, {"BLOCK_D": 32, "ITEMS_PER_PROGRAM": 3, "IDS_PER_STEP": 4})]


def _cfg(c):
    return {"num_warps": 4, "num_stages": 1, **c}


def _ids(c):
    return "_".join(f"{k.split('_')[0][:3]}{v if isinstance(v, str) else int(v)}" for k, v in c.items())


def _run(spec, problem, device, cfg, seed=1):
    inputs = spec.make_inputs(problem, device, seed)
    out = spec.make_output(problem, inputs)
    poison(out)
    spec.launch(inputs, out, _cfg(cfg))
    return out, spec.reference(inputs)


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", PROBLEMS, ids=lambda p: f"b{p['num_bags']}d{p['dim']}r{p['num_rows']}")
@pytest.mark.parametrize("cfg", FWD, ids=_ids)
def test_forward_matches_reference(device, mode, dtype, shape, cfg):
    problem = eb.EmbeddingBagProblem(**shape, mode=mode, dtype=dtype)
    result = check(*_run(eb.EMBEDDING_BAG_FWD, problem, device, cfg))
    assert result.ok, result.reason


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", PROBLEMS[::2], ids=lambda p: f"b{p['num_bags']}d{p['dim']}r{p['num_rows']}")
@pytest.mark.parametrize("cfg", BWD, ids=_ids)
def test_backward_matches_reference(device, mode, dtype, shape, cfg):
    problem = eb.EmbeddingBagProblem(**shape, mode=mode, dtype=dtype)
    result = check(*_run(eb.EMBEDDING_BAG_BWD, problem, device, cfg))
    assert result.ok, result.reason


def test_empty_and_single_bags_through_public_entry_points(device):
    weight = torch.randn(10, 6, device=device)
    indices = torch.tensor([3, 3, 7, 0], device=device)
    offsets = torch.tensor([0, 0, 1, 1, 4, 4], device=device)  # empty, single, empty, three, empty
    for mode in ("sum", "mean"):
        out = eb.embedding_bag(weight, indices, offsets, mode)
        want = torch.nn.functional.embedding_bag(indices, weight, offsets, mode=mode, include_last_offset=True)
        assert torch.allclose(out, want, atol=1e-6) and (out[[0, 2, 4]] == 0).all()
        grad = torch.randn(5, 6, device=device)
        for sorted_ in (False, True):
            gw = eb.embedding_bag_backward(grad, indices, offsets, 10, mode, dict(eb.BWD_DEFAULT, SORTED=sorted_, BLOCK_D=16))
            assert check(gw, eb.reference_backward(grad, indices, offsets, 10, mode)).ok
    no_ids = eb.embedding_bag(weight, indices[:0], torch.zeros(3, dtype=torch.int64, device=device))
    assert no_ids.shape == (2, 6) and (no_ids == 0).all()
    assert (eb.embedding_bag_backward(torch.ones(2, 6, device=device), indices[:0],
                                      torch.zeros(3, dtype=torch.int64, device=device), 4) == 0).all()


def test_peers_agree_with_reference(device):
    problem = eb.EmbeddingBagProblem(num_bags=6, avg_bag_len=3, dim=8, num_rows=9, mode="mean")
    for spec in (eb.EMBEDDING_BAG_FWD, eb.EMBEDDING_BAG_BWD):
        inputs = spec.make_inputs(problem, device, 4)
        assert check(spec.baseline(inputs), spec.reference(inputs)).ok


# Built where the kernels run, so that on a GPU machine the value checks, not the device check, answer.
DEV = "cuda" if torch.cuda.is_available() else "cpu"
W, I, O = torch.ones(5, 4, device=DEV), torch.tensor([1, 2, 4], device=DEV), torch.tensor([0, 1, 3], device=DEV)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: eb.embedding_bag(W, I, torch.tensor([0, 2, 1], device=DEV)), ValueError, "monotone"),
    (lambda: eb.embedding_bag(W, I, torch.tensor([1, 2, 3], device=DEV)), ValueError, r"offsets\[0\]"),
    (lambda: eb.embedding_bag(W, I, torch.tensor([0, 1, 2], device=DEV)), ValueError, "out of range"),
    (lambda: eb.embedding_bag(W, torch.tensor([1, 2, 5], device=DEV), O), ValueError, r"indices must lie in \[0, 5\)"),
    (lambda: eb.embedding_bag(W, torch.tensor([1, -1, 2], device=DEV), O), ValueError, "indices must lie"),
    (lambda: eb.embedding_bag(W, I.float(), O), TypeError, "int32/int64"),
    (lambda: eb.embedding_bag(W, I, O.float()), TypeError, "offsets must be int"),
    (lambda: eb.embedding_bag(W.int(), I, O), TypeError, "float16"),
    (lambda: eb.embedding_bag(W, I, O, mode="max"), ValueError, "mode"),
    (lambda: eb.embedding_bag(W.to("meta"), I.to("meta"), O.to("meta")), ValueError, "CUDA"),
    (lambda: eb.embedding_bag(W, I, O.to("meta")), ValueError, "different devices"),
    (lambda: eb.embedding_bag_backward(torch.ones(3, 4, device=DEV), I, O, 5), ValueError, "3 rows for 2 bags"),
    (lambda: eb.embedding_bag_backward(torch.ones(2, 4, device=DEV), I, O, 2.5), ValueError, "num_rows"),
    (lambda: eb.embedding_bag("w", I, O), TypeError, "must be a tensor"),
])
def test_rejected_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_search_spaces_cover_both_scatters(device):
    problem = eb.EmbeddingBagProblem(num_bags=5, avg_bag_len=2, dim=12, num_rows=6, mode="mean")
    configs = backward_space(problem, profile("cpu-interpreter")).valid_configs()
    assert {c["SORTED"] for c in configs} == {False, True}
    for cfg in configs[::5]:
        result = check(*_run(eb.EMBEDDING_BAG_BWD, problem, device, cfg, seed=2))
        assert result.ok, (cfg, result.reason)
    big = eb.EmbeddingBagProblem(num_bags=16384, avg_bag_len=20, dim=128, num_rows=1_000_000)
    assert forward_space(big, profile("h100")).valid_configs()


@pytest.mark.gpu
@pytest.mark.parametrize("spec", [eb.EMBEDDING_BAG_FWD, eb.EMBEDDING_BAG_BWD], ids=lambda s: s.name)
def test_bfloat16_tables_on_gpu(device, spec):
    problem = eb.EmbeddingBagProblem(num_bags=500, avg_bag_len=20, dim=96, num_rows=300, mode="mean", dtype="bfloat16")
    cfgs = [eb.FWD_DEFAULT] if spec is eb.EMBEDDING_BAG_FWD else [dict(eb.BWD_DEFAULT, SORTED=s) for s in (False, True)]
    for cfg in cfgs:
        result = check(*_run(spec, problem, device, cfg))
        assert result.ok, result.reason


@pytest.mark.parametrize("prefetch", [False, True])
def test_table_batched_forward_pools_every_table_into_a_strided_view(device, prefetch):
    """Three tables of different row counts in one weight, bags table-major (fbgemm's TBE layout),
    empty bags included, pooled into slots 1..3 of a [B, 4, dim] buffer whose slot 0 is untouched."""
    gen = torch.Generator().manual_seed(3)
    rows, dim, bags = [5, 11, 7], 20, 6
    tables = [torch.randn(r, dim, generator=gen) for r in rows]
    weight = torch.cat(tables).to(device)
    starts = torch.tensor([0, 5, 16], device=device)
    lengths = [torch.randint(0, 5, (bags,), generator=gen) for _ in rows]
    lengths[1][2] = 0
    ids = [torch.randint(0, r, (int(n.sum()),), generator=gen) for r, n in zip(rows, lengths)]
    offsets = torch.zeros(len(rows) * bags + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.cat(lengths), 0)
    buf = torch.full((bags, 4, dim), 7.0, device=device)
    cfg = _cfg({"BLOCK_D": 16, "BAGS_PER_PROGRAM": 2, "IDS_PER_STEP": 4, "PREFETCH": prefetch})
    eb.launch_forward_tables(weight, starts, torch.cat(ids).to(device), offsets.to(device), buf[:, 1:], cfg, "sum")
    for t, (table, n, i) in enumerate(zip(tables, lengths, ids)):
        off = torch.zeros(bags + 1, dtype=torch.int64)
        off[1:] = torch.cumsum(n, 0)
        want = eb.reference_forward(table, i, off, "sum")
        torch.testing.assert_close(buf[:, 1 + t].cpu().double(), want, rtol=1e-5, atol=1e-5)
    assert bool((buf[:, 0] == 7.0).all())
    with pytest.raises(ValueError, match="offsets"):
        eb.launch_forward_tables(weight, starts, torch.cat(ids).to(device), offsets[:-1].to(device), buf[:, 1:],
                                 cfg, "sum")


def test_cost_model():
    p = eb.EmbeddingBagProblem(num_bags=4, avg_bag_len=2, dim=8, num_rows=10, dtype="float16")
    n = eb.count_ids(p)
    assert n == int(eb.make_bags(p, "cpu", 0)[1][-1])
    assert eb.EMBEDDING_BAG_FWD.bytes_moved(p) == n * 8 + 5 * 8 + (n + 4) * 8 * 2
    assert eb.EMBEDDING_BAG_BWD.bytes_moved(p) == n * 8 + 5 * 8 + (4 + 10) * 8 * 2
