"""A GEMM's C with its rows padded to 16 bytes where N leaves them misaligned (kernels/matmul.py
output_for): made so by the kernels, the entry points and the harness alike; cuBLAS on padded
operands writes it in place; the judge reads it in its layout and accepts no other."""
import pytest
import torch
from interpreted import interpreter_runs

from kernelevolve.kernels.gemm_vendor import PADDED_CONFIG, launch_vendor
from kernelevolve.kernels.gemm_tiles import output_for
from kernelevolve.kernels.matmul import DEFAULT_CONFIG, Epilogue
from kernelevolve.tuner.execution.worker import CandidateWorker
from kernelevolve.tuner.measure.timed_outputs import (GUARD_ELEMENTS, extent, guarded_output, layout_ok,
                                                      output_view, span)

ENV = {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
MISALIGNED_N = {"M": 40, "N": 45, "K": 64, "dtype": "float16"}  # C's rows of 90 bytes


def test_c_rows_are_padded_to_16_bytes_only_where_they_are_misaligned():
    like = torch.empty(1, dtype=torch.float16)
    c = output_for(40, 45, like)
    assert c.shape == (40, 45) and c.stride() == (48, 1) and not c.is_contiguous()
    assert output_for(40, 48, like).is_contiguous()
    assert output_for(40, 45, like, dtype=torch.float32).stride() == (48, 1)  # 4-byte elements: 4 a row's step
    assert output_for(40, 44, like, dtype=torch.float32).is_contiguous()
    assert extent(c) == span((40, 45), (48, 1)) == 40 * 48  # the last row's padding too
    assert extent(output_for(40, 48, like)) == 40 * 48


def test_only_layouts_without_aliasing_are_accepted_from_a_message():
    assert layout_ok((40, 45), (48, 1)) and layout_ok((40, 45), (45, 1)) and layout_ok((2, 3, 4), (12, 4, 1))
    assert not layout_ok((40, 45), (0, 1))  # every row the first one: a kernel writing one row would pass
    assert not layout_ok((40, 45), (44, 1)) and not layout_ok((40, 45), (48, 2))
    assert not layout_ok((2, 3, 4), (12, 5, 1))


def test_a_guarded_output_keeps_its_layout_inside_its_slot():
    c = output_for(40, 45, torch.empty(1, dtype=torch.float16))
    buf, out = guarded_output(c)
    assert out.stride() == (48, 1) and buf.numel() == 40 * 48 + 2 * GUARD_ELEMENTS
    assert out.data_ptr() == buf.data_ptr() + GUARD_ELEMENTS * buf.element_size()
    assert torch.equal(output_view(buf, (40, 45), (48, 1)).isnan(), out.isnan())


@interpreter_runs
@pytest.mark.parametrize("activation", ["none", "relu", "gelu"])
def test_cublas_on_padded_operands_writes_a_padded_c_in_place(activation):
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(37, 71, generator=gen), torch.randn(71, 45, generator=gen)
    bias = torch.randn(45, generator=gen)
    out = output_for(37, 45, a)
    whole = out.as_strided((37, 48), (48, 1))
    whole.fill_(float("nan"))
    launch_vendor(a, b, out, Epilogue(bias=bias, activation=activation), PADDED_CONFIG)
    act = {"none": lambda x: x, "relu": torch.relu, "gelu": torch.nn.functional.gelu}[activation]
    assert torch.allclose(out.double(), act(a.double() @ b.double() + bias.double()), atol=1e-4)
    # the padded product's extra columns landed in the rows' padding: C itself was the target
    assert not whole[:, 45:].isnan().any()
    contiguous = torch.full((37, 45), float("nan"))  # a caller's C without room: through a buffer
    launch_vendor(a, b, contiguous, Epilogue(bias=bias, activation=activation), PADDED_CONFIG)
    assert torch.allclose(contiguous, out, atol=1e-5)
    wide = torch.full((37, 64), 7.0)  # C inside a wider buffer: its columns past N are the caller's
    launch_vendor(a, b, wide[:, :45], Epilogue(bias=bias, activation=activation), PADDED_CONFIG)
    assert torch.allclose(wide[:, :45], out, atol=1e-5) and (wide[:, 45:] == 7.0).all()


@pytest.fixture(scope="module")
def worker():
    w = CandidateWorker(env=ENV)
    yield w
    w.close()


@interpreter_runs
@pytest.mark.parametrize("config", [PADDED_CONFIG, DEFAULT_CONFIG], ids=["cublas-padded", "triton"])
def test_a_padded_c_is_judged_ok_by_the_worker(worker, config):
    rec = worker.request({"op": "evaluate", "kernel_ref": "kernelevolve.search_spaces.matmul:TUNABLE",
                          "problem": MISALIGNED_N, "hardware": "cpu-interpreter", "config": dict(config),
                          "seed": 5}, timeout_s=300)
    assert rec["status"] == "ok", rec
    assert rec["judge_checks"] >= 4


def test_the_entry_point_returns_c_as_the_harness_made_it(device):
    import kernelevolve.kernels.ops  # noqa: F401 - registers torch.ops.kernelevolve

    a, b = torch.randn(10, 12, device=device), torch.randn(12, 9, device=device)
    y = torch.ops.kernelevolve.matmul(a, b)
    # fp32 operands: a GPU's tl.dot rounds them to tf32, torch's mm does not
    close = dict(atol=1e-2, rtol=1e-2) if device.type == "cuda" else dict(atol=1e-4)
    assert y.stride() == (12, 1) and torch.allclose(y, a @ b, **close)
    assert torch.allclose(y.contiguous(), a @ b, **close)


def test_sampled_padded_outputs_are_compared_in_their_layout():
    """timed_outputs.differs on slots holding a padded C: equal outputs are equal whatever the
    rows' padding holds; one changed element is found."""
    from kernelevolve.tuner.measure.timed_outputs import differs, guarded_outputs

    c = output_for(6, 5, torch.empty(1, dtype=torch.float16))
    slots = guarded_outputs(c, 4)
    for i, (_, view) in enumerate(slots):
        view.copy_(torch.arange(30, dtype=torch.float16).reshape(6, 5))
        view.as_strided((6, 8), (8, 1))[:, 5:].fill_(float(i))  # padding differs slot to slot
    slots[2][1][3, 4] = -1.0
    flags = differs([buf for buf, _ in slots], [(view, None, 0) for _, view in slots])
    assert flags.tolist() == [False, True, False]
