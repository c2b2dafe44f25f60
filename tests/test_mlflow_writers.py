"""The sweep's MLflow writes spread over writers (tuner/records/recorder.py Writer)."""
import threading
import time

from kernelevolve.tuner.records.recorder import Writer, writer_of


def test_a_studys_writes_keep_their_order_and_two_studies_are_written_at_once():
    keys = ["matmul/a", "softmax/b", "layer_norm/c", "embedding_bag/d", "rms_norm/e"]
    a, b = next((x, y) for x in keys for y in keys if writer_of(x) != writer_of(y))
    writer = Writer()
    done: list = []
    inside = threading.Event()
    release = threading.Event()

    def slow():  # a's first write holds its writer until b's has run
        inside.set()
        assert release.wait(30)
        done.append("a1")
    writer.submit(slow, a)
    writer.submit(lambda: done.append("a2"), a)
    assert inside.wait(30)
    writer.submit(lambda: (done.append("b1"), release.set()), b)
    writer.close()
    assert done == ["b1", "a1", "a2"]  # b was not held behind a; a's order kept


def test_a_queued_sync_stands_for_the_ones_submitted_after_it():
    writer = Writer()
    calls: list = []
    gate = threading.Event()
    writer.submit(lambda: gate.wait(30), "s")  # the study's writer is busy meanwhile
    for _ in range(5):
        writer.submit_sync("s", lambda: calls.append(time.monotonic()))
    gate.set()
    writer.submit_sync("s", lambda: calls.append(time.monotonic()))  # after the first began: runs too
    writer.close()
    assert 1 <= len(calls) <= 2
