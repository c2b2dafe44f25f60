"""On a GPU: the judge reads the evaluator's buffers through CUDA IPC, every clock checks its timed
calls, and the attacks that skip timed work end incorrect there too."""
import os

import pytest

from kernelevolve.tuner.execution.worker import CandidateWorker

pytestmark = pytest.mark.gpu
HERE = os.path.dirname(os.path.abspath(__file__))


def _hardware() -> str:
    import torch

    return "h200" if "H200" in torch.cuda.get_device_name(0) else "h100"


def request(attack, cheat, clock="do_bench"):
    return {"op": "evaluate", "kernel_ref": f"{HERE}/attacks/{attack}.py:KERNEL", "problem": {"n": 1 << 20},
            "hardware": _hardware(), "config": {"cheat": cheat, "BLOCK": 128}, "seed": 1,
            "bench": {"clock": clock, "warmup_ms": 5, "rep_ms": 10}}


@pytest.fixture(scope="module")
def worker():
    w = CandidateWorker()
    yield w
    w.close()


@pytest.mark.parametrize("clock", ["do_bench", "clean", "cudagraph"])
def test_every_clock_times_and_checks_an_honest_kernel(worker, clock):
    rec = worker.request(request("first_calls", False, clock), timeout_s=300)
    assert rec["status"] == "ok", rec
    # in place through CUDA IPC, or host copies where the probe found IPC unusable (seen once on the
    # H100 for the first candidate of a fresh evaluator): both verdicts are the judge's
    assert rec["judge_transport"] in ("cuda_ipc", "host"), rec
    assert rec["timed_checked"] >= 2 and rec["timed_calls"] >= rec["timed_checked"], rec
    assert rec["verify_s"] < rec["eval_s"]


# rewrite_inputs and stray_write: over CUDA IPC a guarded input is compared with the cached set the
# judge holds (no pristine copy), and its canary bands with the canary byte
@pytest.mark.parametrize("attack", ["first_calls", "skip_unpoisoned", "patch_harness", "poison_reference",
                                    "rewrite_inputs", "stray_write", "patch_timer",
                                    "deferred_launch"])
def test_attacks_end_incorrect_on_the_gpu(worker, attack):
    rec = worker.request(request(attack, True), timeout_s=300)
    assert rec["status"] == "incorrect", rec
    if attack == "rewrite_inputs":
        assert "rewrote its input" in rec["error"], rec
    # the same study's honest config after it: the cached sets and the standing input copies the
    # attack was given (restored by the judge where it changed them) judge it as they should
    assert worker.request(request(attack, False), timeout_s=300)["status"] == "ok"


@pytest.mark.parametrize("clock", ["do_bench", "clean", "cudagraph"])
def test_a_kernel_sent_to_a_stream_of_its_own_is_caught_under_each_clock(clock):
    """tests/attacks/side_stream.py: its output is right, only the timing would be cheated. On
    every call: caught in the verified launches; on the timed calls only: by the watched ones."""
    w = CandidateWorker()  # its own process: the attack's count of its calls starts at zero
    try:
        for cheat, where in (("timed", "timed calls"), ("always", "")):
            rec = w.request(dict(request("side_stream", cheat, clock)), timeout_s=300)
            assert rec["status"] == "incorrect", (clock, cheat, rec)
            assert "on a stream other than the one it was called on" in rec["error"], rec
            assert where in rec["error"], rec
        assert w.request(request("side_stream", False, clock), timeout_s=300)["status"] == "ok"
    finally:
        w.close()


@pytest.mark.parametrize("clock", ["do_bench", "clean", "cudagraph"])
def test_a_gemm_computed_by_cublas_behind_a_token_triton_launch_is_caught_under_each_clock(clock):
    """tests/attacks/library_call.py: torch.mm into its output and a one-element Triton copy, so
    that the launch count sees a Triton kernel. On every call: the verified launches name aten.mm;
    on the timed calls only: the watched ones do (every captured call, a quarter of the eager)."""
    w = CandidateWorker()  # its own process: the attack's count of its calls starts at zero
    try:
        gemm = {"M": 512, "N": 384, "K": 256, "dtype": "bfloat16"}
        for cheat, where in (("timed", "timed calls"), (True, "")):
            rec = w.request(dict(request("library_call", cheat, clock), problem=gemm), timeout_s=300)
            assert rec["status"] == "incorrect", (clock, cheat, rec)
            assert "computed with the library's kernels through torch (aten.mm)" in rec["error"], rec
            assert where in rec["error"], rec
        assert w.request(dict(request("library_call", False, clock), problem=gemm), timeout_s=300)["status"] == "ok"
    finally:
        w.close()


def test_the_retiming_checks_each_clock(worker):
    for clock in ("do_bench", "clean", "cudagraph"):
        rec = worker.request({"op": "retime", "kernel_ref": f"{HERE}/attacks/first_calls.py:KERNEL",
                              "problem": {"n": 1 << 20}, "hardware": _hardware(), "rounds": 2,
                              "configs": [{"cheat": False, "BLOCK": 128}, {"cheat": True, "BLOCK": 128}],
                              "bench": {"clock": clock, "warmup_ms": 5, "rep_ms": 10}}, timeout_s=300)
        honest, cheat = rec["rows"]
        assert honest["status"] == "ok", (clock, rec)
        # under cudagraph it skips its launches at capture: the capture ring stays poisoned
        assert cheat["status"] == "incorrect" and "timed call" in cheat["error"], (clock, rec)
