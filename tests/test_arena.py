"""The evaluator's arena: buffers carved from one allocation, named to the judge by offset."""
import pytest
import torch

from kernelevolve.tuner.measure import evidence
from kernelevolve.tuner.measure.arena import ALIGN, Arena, view
from kernelevolve.tuner.measure.judge import Judge
from kernelevolve.tuner.measure.timed_outputs import differs
from kernelevolve.tuner.measure.timed_outputs import GUARD_ELEMENTS, guarded_outputs


def test_a_request_takes_aligned_buffers_and_the_next_gets_an_arena_that_fits():
    a = Arena(torch.device("cpu"))
    assert not a.reset() and a.size == 0
    first = a.take(1000)  # no arena yet: a buffer of its own
    assert first.numel() == 1000 and a.want == 1000
    assert a.reset() and a.size >= 1000 and a.size % ALIGN == 0 and a.generation == 1
    x, y = a.take(100), a.take(300)
    assert x.data_ptr() == a.buf.data_ptr() and y.data_ptr() == a.buf.data_ptr() + ALIGN
    big = a.take(10 * a.size)  # does not fit: its own allocation, and the next arena is larger
    assert big.data_ptr() != a.buf.data_ptr() + 2 * ALIGN and a.want > a.size
    assert a.reset() and a.generation == 2 and a.size >= 10_000
    assert not a.reset()  # fits now: the same arena, from its start again
    assert a.take(8).data_ptr() == a.buf.data_ptr()


def test_the_judge_reads_an_arena_reference_and_refuses_one_out_of_bounds():
    held = {3: torch.arange(4096, dtype=torch.int32).view(torch.uint8)}
    t = view(held, ("arena", 3, 512, "int32", (4, 8), (8, 1)), torch.int32)
    assert torch.equal(t, torch.arange(128, 160, dtype=torch.int32).view(4, 8))
    t[0, 0] = -1  # a view of the arena itself, not a copy
    assert held[3].view(torch.int32)[128] == -1
    with pytest.raises(ValueError, match="past the arena's end"):
        view(held, ("arena", 3, 16384 - 4, "int32", (2,), (1,)), torch.int32)
    with pytest.raises(ValueError, match="does not hold"):
        view(held, ("arena", 2, 0, "int32", (2,), (1,)), torch.int32)
    with pytest.raises(ValueError, match="malformed"):
        view(held, ("arena", 3, 2, "int32", (2,), (1,)), torch.int32)  # misaligned
    msg = evidence.load(__import__("pickle").dumps({"x": ("arena", 3, 0, "int32", (2,), (1,))}))
    assert evidence.decode_all(msg, arenas=held)["x"].tolist() == [0, 1]


def test_the_judge_keeps_only_a_cuda_arena():
    with pytest.raises(ValueError, match="CUDA"):
        Judge().arena({"generation": 1, "tensor": torch.zeros(64, dtype=torch.uint8)})


def test_timed_outputs_in_one_slab_are_compared_as_rows_of_one_view():
    slots = guarded_outputs(torch.empty(1000), 6)
    for i, (_, out) in enumerate(slots):
        out.fill_(1.0 if i != 3 else 2.0)
    bufs = [buf for buf, _ in slots]
    views = [(buf[GUARD_ELEMENTS:GUARD_ELEMENTS + 1000], None) for buf in bufs]
    order = [2, 0, 5, 3, 1]  # any slots, in any order (a reservoir's sample)
    got = differs([bufs[i] for i in order], [views[i] for i in order])
    assert got.tolist() == [False, False, True, False]
    separate = [torch.full((1000 + 2 * GUARD_ELEMENTS,), 1.0) for _ in range(3)]
    separate[2][GUARD_ELEMENTS + 7] = float("nan")  # NaN never equals: checked in full
    assert differs(separate, [(b[GUARD_ELEMENTS:GUARD_ELEMENTS + 1000], None) for b in separate]).tolist() == [False, True]


@pytest.mark.gpu
def test_on_a_gpu_a_buffer_in_the_arena_travels_by_offset_and_others_by_ipc_handle():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from kernelevolve.tuner.measure.timed_outputs import guarded_output

    a = Arena(torch.device("cuda"))
    a.take(1 << 20)
    a.reset()
    buf, out = guarded_output(torch.empty(300, 7, device="cuda", dtype=torch.bfloat16), a.take)
    out.copy_(torch.randn(300, 7, device="cuda"))
    msg = evidence.encode_all({"outs": [[buf, None]], "other": torch.ones(3, device="cuda")}, ipc=True, arena=a)
    assert msg["outs"][0][0][0] == "arena" and msg["other"][0] == "ipc"
    # (an IPC handle cannot be opened in the process that made it: only the arena part is read here)
    back = evidence.decode_all(evidence.load(__import__("pickle").dumps({"outs": msg["outs"]})),
                               arenas={a.generation: a.buf})
    assert back["outs"][0][0].data_ptr() == buf.data_ptr() and torch.equal(back["outs"][0][0].isnan(), buf.isnan())


def test_a_judged_steps_buffers_are_reused_by_the_next_step():
    a = Arena(torch.device("cpu"))
    a.want = 4 * ALIGN
    a.reset()
    keep = a.take(ALIGN)
    mark = a.mark()
    first = a.take(2 * ALIGN)
    a.release(mark)
    second = a.take(2 * ALIGN)  # the same bytes: the request needs its largest step, not their sum
    assert second.data_ptr() == first.data_ptr() and keep.data_ptr() == a.buf.data_ptr()
    assert a.top == 3 * ALIGN  # not 5: the released step's bytes were taken again
