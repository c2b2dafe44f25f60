"""Our kernels as registered PyTorch operators (kernels/ops): torch.library.opcheck on every op
(schema, fake implementation, autograd registration, AOT dispatch with dynamic shapes), gradients
of the ops that have a backward against torch's, and a small ranking model compiled with
fullgraph=True (a graph break raises) whose forward and gradients match eager torch.

On the CPU the kernels run in the Triton interpreter, so shapes are tiny and fp32. The compiled
model uses backend="aot_eager": dynamo and AOTAutograd trace exactly what inductor would be given
(our fake implementations and autograd formulas, where graph breaks come from), while inductor's
own C++ code generation for the torch ops around ours would add minutes on two cores and tests
nothing of ours (to the compiler our ops are opaque calls)."""
import pytest
import torch
import torch.nn.functional as F

import kernelevolve.kernels.ops  # noqa: F401  (registers torch.ops.kernelevolve.*)
from kernelevolve.kernels import interaction, tuned

OPS = torch.ops.kernelevolve


def _randn(*shape, device, grad=False, seed=0):
    g = torch.Generator(device=device).manual_seed(seed + sum(shape))
    return torch.randn(shape, generator=g, device=device).requires_grad_(grad)


def _bags(num_bags, rows, device, seed=0):
    """indices, offsets [num_bags + 1] of bags of 0..3 ids (empty ones included)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 4, (num_bags,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    indices = torch.randint(0, rows, (int(offsets[-1]),), generator=g)
    return indices.to(device), offsets.to(device)


def _jagged(device):
    offsets = torch.tensor([0, 2, 2, 5], device=device)
    return offsets, 3  # 3 sequences, the longest of 3


def _cases(device):
    """(op name, args) for opcheck, one or two per registered op; tensors that need gradients
    exercise the autograd formulas."""
    r = lambda *s, grad=False, seed=0: _randn(*s, device=device, grad=grad, seed=seed)  # noqa: E731
    idx, off = _bags(5, 7, device)
    t_idx, t_off = _bags(2 * 4, 6, device, seed=1)  # 2 tables x 4 bags, 6 rows each
    table_rows = torch.tensor([0, 6], device=device)
    offsets, longest = _jagged(device)
    x_ln = r(6, 24, grad=True)
    y, mean, rstd = OPS.layer_norm(x_ln.detach(), r(24), r(24), 1e-5)
    _, rms_rstd = OPS.rms_norm(x_ln.detach(), r(24), 1e-5)
    return [
        ("matmul", (r(10, 12, grad=True), r(12, 9, grad=True))),
        ("matmul", (r(12, 10).t(), r(9, 12).t())),  # transposed views, read in place
        ("bmm", (r(2, 5, 12, grad=True), r(2, 12, 7, grad=True))),
        ("linear", (r(10, 12, grad=True), r(12, 8, grad=True), r(8, grad=True), None, "relu")),
        ("linear", (r(10, 12, grad=True), r(12, 8, grad=True), r(8, grad=True), r(10, 8, grad=True), "gelu")),
        ("linear", (r(10, 12, grad=True), r(12, 8, grad=True), None, None, "silu")),
        ("embedding_bag", (r(7, 16, grad=True), idx, off, "sum")),
        ("embedding_bag", (r(7, 16, grad=True), idx, off, "mean")),
        ("embedding_bag_backward", (r(5, 16), idx, off, 7, "sum")),
        ("embedding_bag_tables", (r(12, 16, grad=True), table_rows, t_idx, t_off, "sum", None)),
        ("embedding_bag_tables", (r(12, 16, grad=True), table_rows, t_idx, t_off, "mean", r(4, 16, grad=True))),
        ("dot_interaction", (r(3, 4, 16, grad=True),)),
        ("dot_interaction_concat", (r(3, 4, 16, grad=True), 24)),
        ("layer_norm", (x_ln, r(24, grad=True), r(24, grad=True), 1e-5)),
        ("rms_norm", (r(2, 3, 24, grad=True), r(24, grad=True), 1e-5)),
        ("layer_norm_backward", (r(6, 24), x_ln.detach(), r(24), mean, rstd)),
        ("rms_norm_backward", (r(6, 24), x_ln.detach(), r(24), rms_rstd)),
        ("softmax", (r(5, 33, grad=True),)),
        ("attention", (r(1, 2, 16, 64), r(1, 2, 16, 64), r(1, 2, 16, 64), True)),
        ("jagged_to_padded_dense", (r(5, 16, grad=True), offsets, longest + 1, 0.0)),
        ("padded_dense_to_jagged", (r(3, longest, 16, grad=True), offsets, 5)),
        ("jagged_softmax", (r(5, 16), offsets, longest)),
        ("jagged_dense_bmm", (r(5, 12), offsets, r(3, 12, 8), longest)),
    ]


CASES = 23  # len(_cases(...)): a constant, so that collection launches no kernel


def test_every_registered_op_has_a_case(device):
    cases = _cases(device)
    assert len(cases) == CASES and {name for name, _ in cases} == set(kernelevolve.kernels.ops.registered())


@pytest.mark.parametrize("case", range(CASES))
def test_opcheck(device, case):
    name, args = _cases(device)[case]
    torch.library.opcheck(getattr(OPS, name), args)


# ---- gradients against torch -----------------------------------------------------------------------
def _grads(fn, inputs):
    out = fn(*inputs)
    out = out[0] if isinstance(out, tuple) else out
    weights = _randn(*out.shape, device=out.device, seed=7)  # a loss that weighs every output
    return [out.detach()] + list(torch.autograd.grad((out * weights).sum(), inputs))


def _assert_close(ours, theirs):
    # fp32: exact products in the interpreter; on a GPU our fp32 dots run as tf32 (10-bit mantissa)
    tol = 1e-4 if ours[0].device.type == "cpu" else 2e-2
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("activation", ["none", "relu", "gelu", "silu"])
def test_linear_gradients(device, activation):
    x, wt, b, res = (_randn(*s, device=device, grad=True, seed=i) for i, s in enumerate([(9, 12), (12, 7), (7,), (9, 7)]))
    act = {"none": lambda z: z, "relu": F.relu, "gelu": F.gelu, "silu": F.silu}[activation]
    _assert_close(_grads(lambda *a: OPS.linear(*a, activation), (x, wt, b, res)),
                  _grads(lambda x, wt, b, res: act(x @ wt + b) + res, (x, wt, b, res)))


def test_embedding_bag_tables_gradients_through_our_backward_kernel(device):
    weight = _randn(12, 16, device=device, grad=True)
    dense = _randn(4, 16, device=device, grad=True, seed=1)
    idx, off = _bags(2 * 4, 6, device, seed=3)
    table_rows = torch.tensor([0, 6], device=device)

    def torch_tables(weight, dense):
        tables = weight.split(6)
        pooled = [F.embedding_bag(idx[off[t * 4]:off[(t + 1) * 4]], tables[t], off[t * 4:(t + 1) * 4 + 1] - off[t * 4],
                                  mode="sum", include_last_offset=True) for t in range(2)]
        return torch.stack([dense, *pooled], 1)

    _assert_close(_grads(lambda w, d: OPS.embedding_bag_tables(w, table_rows, idx, off, "sum", d), (weight, dense)),
                  _grads(torch_tables, (weight, dense)))


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_norm_gradients(device, kind):
    x, w, b = _randn(7, 40, device=device, grad=True), _randn(40, device=device, grad=True, seed=1), \
        _randn(40, device=device, grad=True, seed=2)
    if kind == "layer":
        _assert_close(_grads(lambda *a: OPS.layer_norm(*a, 1e-5), (x, w, b)),
                      _grads(lambda x, w, b: F.layer_norm(x, (40,), w, b, 1e-5), (x, w, b)))
    else:
        _assert_close(_grads(lambda *a: OPS.rms_norm(*a, 1e-5), (x, w)),
                      _grads(lambda x, w: F.rms_norm(x, (40,), w, 1e-5), (x, w)))


def test_interaction_and_softmax_gradients(device):
    t = _randn(3, 5, 16, device=device, grad=True)
    _assert_close(_grads(lambda t: OPS.dot_interaction_concat(t, 32), (t,)),
                  _grads(lambda t: F.pad(torch.cat([t[:, 0], interaction.baseline((t,))], 1), (0, 6)), (t,)))
    x = _randn(4, 33, device=device, grad=True)
    _assert_close(_grads(OPS.softmax, (x,)), _grads(lambda x: torch.softmax(x, -1), (x,)))


# ---- a compiled model ------------------------------------------------------------------------------
def _toy_ranking_model(params, dense, idx, off, table_rows):
    """bottom layer -> table-batched bags (dense in slot 0) -> interaction + concat -> layer norm
    -> top layers -> softmax over two classes: every op with a backward, in one graph."""
    x = OPS.linear(dense, params["bottom"], params["bottom_b"], None, "relu")
    t = OPS.embedding_bag_tables(params["tables"], table_rows, idx, off, "sum", x)
    y = OPS.dot_interaction_concat(t, 24)
    y = OPS.layer_norm(y, params["ln_w"], params["ln_b"], 1e-5)[0]
    y = OPS.linear(y, params["top"], params["top_b"], None, "silu")
    return OPS.softmax(OPS.matmul(y, params["head"]))


def _toy_torch_model(params, dense, idx, off, table_rows):
    x = F.relu(dense @ params["bottom"] + params["bottom_b"])
    tables = params["tables"].split(6)
    pooled = [F.embedding_bag(idx[off[t * 4]:off[(t + 1) * 4]], tables[t], off[t * 4:(t + 1) * 4 + 1] - off[t * 4],
                              mode="sum", include_last_offset=True) for t in range(2)]
    t = torch.stack([x, *pooled], 1)
    y = F.pad(torch.cat([x, interaction.baseline((t,))], 1), (0, 24 - 16 - 3))
    y = F.layer_norm(y, (24,), params["ln_w"], params["ln_b"], 1e-5)
    y = F.silu(y @ params["top"] + params["top_b"])
    return torch.softmax(y @ params["head"], -1)


def test_compiled_model_has_no_graph_breaks_and_matches_torch(device):
    shapes = {"bottom": (13, 16), "bottom_b": (16,), "tables": (12, 16), "ln_w": (24,), "ln_b": (24,),
              "top": (24, 8), "top_b": (8,), "head": (8, 2)}
    params = {k: _randn(*s, device=device, grad=True, seed=i) for i, (k, s) in enumerate(shapes.items())}
    dense = _randn(4, 13, device=device, seed=9)
    idx, off = _bags(2 * 4, 6, device, seed=3)
    table_rows = torch.tensor([0, 6], device=device)
    torch._dynamo.reset()
    tuned.clear_table()
    compiled = torch.compile(_toy_ranking_model, backend="aot_eager", fullgraph=True)
    names = list(params)

    def run(model):
        out = model(params, dense, idx, off, table_rows)
        return [out.detach()] + list(torch.autograd.grad((out[:, 0] * torch.arange(4.0, device=device)).sum(),
                                                         [params[k] for k in names]))

    _assert_close(run(compiled), run(_toy_torch_model))
    explained = torch._dynamo.explain(_toy_ranking_model)(params, dense, idx, off, table_rows)
    assert explained.graph_break_count == 0 and explained.graph_count == 1


# ---- the tuned table at run time -------------------------------------------------------------------
def test_a_config_is_resolved_once_per_call_signature(device, tmp_path, monkeypatch):
    """The table is ranked on a signature's first call; later calls are one dictionary lookup;
    loading a table forgets the answers."""
    import json

    calls = []
    real = tuned.config_for
    monkeypatch.setattr(tuned, "config_for", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    x, wt = _randn(8, 12, device=device), _randn(12, 8, device=device)
    tuned.clear_table()
    for _ in range(3):
        OPS.linear(x, wt, None, None, "none")
    assert calls == ["gemm_epilogue"]
    cfg = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1, "SPLIT_K": 1, "num_warps": 4, "num_stages": 1}
    entry = {"kernel": "gemm_epilogue", "dtype": "float32", "interpreter": True, "config": cfg,
             "problem": {"M": 8, "N": 8, "K": 12, "dtype": "float32", "activation": "none", "bias": False,
                         "residual": False}}
    (tmp_path / "t.json").write_text(json.dumps({"schema": 1, "entries": [entry]}))
    tuned.load_table(str(tmp_path / "t.json"))
    try:
        _assert_close([OPS.linear(x, wt, None, None, "none")], [x @ wt])
        assert calls == ["gemm_epilogue"] * 2
        if device.type == "cpu":  # interpreter entries apply under the interpreter only
            assert cfg in tuned.resolved.values()
    finally:
        tuned.clear_table()


# ---- CUDA graphs ----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cuda_graphs_capture_the_compiled_model(device):
    """mode="reduce-overhead": inductor's CUDA graphs capture every op of ours (an op that synced
    with the host, or that inductor thought unsafe, would be counted as a skip) and replay them."""
    from torch._dynamo.utils import counters

    shapes = {"bottom": (13, 16), "bottom_b": (16,), "tables": (12, 16), "ln_w": (24,), "ln_b": (24,),
              "top": (24, 8), "top_b": (8,), "head": (8, 2)}
    params = {k: _randn(*s, device=device, seed=i) for i, (k, s) in enumerate(shapes.items())}
    dense = _randn(4, 13, device=device, seed=9)
    idx, off = _bags(2 * 4, 6, device, seed=3)
    table_rows = torch.tensor([0, 6], device=device)
    torch._dynamo.reset()
    counters.clear()
    graphed = torch.compile(_toy_ranking_model, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        want = _toy_torch_model(params, dense, idx, off, table_rows)
        for _ in range(3):  # warm-up, record, replay
            got = graphed(params, dense, idx, off, table_rows).clone()
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)  # fp32 GEMMs of ours run as tf32 on a GPU
    assert not counters["inductor"]["cudagraph_skips"]
