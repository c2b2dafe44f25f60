"""The attack catalogue (tests/attacks/): kernels that cheat the harness, each behind a searched
switch `cheat`. Every one runs through the sweep's own evaluation path (a CandidateWorker on the
CPU interpreter); with the switch off it must end `ok`, with it on anything but `ok`, for the
reason its file names, and the next candidate in the same worker must be judged normally."""
import os

import pytest

from kernelevolve.tuner.execution.worker import CandidateWorker

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}

# attack file -> (problem, words the cheating config's error must contain)
CAUGHT = {
    "first_calls": ({}, "timed calls: timed call"),
    "memoise": ({}, "one element moved"),
    "rewrite_inputs": ({}, "rewrote its input #0"),
    "torch_copy": ({}, "launched no Triton kernel"),
    "every_third": ({}, "relative error"),
    "stray_write": ({}, "canary band around its input #0"),
    "fp16_acc": ({"M": 16, "N": 16, "K": 4096}, "relative error"),
    "patch_check": ({}, "replaced the harness's kernelevolve.tuner.measure.verify.check"),
    "skip_unpoisoned": ({}, "timed calls: timed call"),
    "patch_harness": ({}, "harness tampered with: timed before it was verified"),
    "poison_reference": ({}, "cached reference of input set"),
    "patch_timer": ({}, "triton.testing.do_bench, torch.cuda.Event.elapsed_time, time.perf_counter"),
    "deferred_launch": ({}, "timed calls: launched a Triton kernel on a stream other than the one it was called on, or from another thread"),
    "library_call": ({}, "computed with the library's kernels through torch (aten.mm)"),
}


def request(attack, cheat, problem=None):
    return {"op": "evaluate", "kernel_ref": f"{HERE}/attacks/{attack}.py:KERNEL",
            "problem": problem or {}, "hardware": "cpu-interpreter",
            "config": {"cheat": cheat, "BLOCK": 16 if attack == "fp16_acc" else 128}, "seed": 3}


@pytest.fixture(scope="module")
def worker():
    w = CandidateWorker(env=ENV)
    yield w
    w.close()


@pytest.mark.parametrize("attack", sorted(CAUGHT))
def test_attack_is_caught_and_the_honest_switch_passes(worker, attack):
    problem, words = CAUGHT[attack]
    honest = worker.request(request(attack, False, problem), timeout_s=120)
    assert honest["status"] == "ok", honest
    cheat = worker.request(request(attack, True, problem), timeout_s=120)
    assert cheat["status"] == "incorrect", cheat
    assert words in cheat["error"], cheat["error"]
    # whatever the attack did to its process, the next candidate is judged normally
    assert worker.request(request(attack, False, problem), timeout_s=120)["status"] == "ok"


def test_a_patched_harness_process_is_replaced(worker):
    starts = worker.starts
    rec = worker.request(request("patch_check", True), timeout_s=120)
    assert rec["status"] == "incorrect" and rec.get("worker_replaced"), rec
    assert worker.request(request("first_calls", False), timeout_s=120)["status"] == "ok"
    assert worker.starts == starts + 1


def test_a_changed_cache_is_caught_before_it_judges_the_next_candidate():
    """Even in a fresh process (the judge has never seen the study): the judge fingerprints a
    reference when it is made, so the candidate that changes it is the one that fails."""
    w = CandidateWorker(env=ENV)
    try:
        rec = w.request(request("poison_reference", True), timeout_s=120)
        assert rec["status"] == "incorrect" and rec.get("tampered") and rec.get("worker_replaced"), rec
        assert w.request(request("poison_reference", False), timeout_s=120)["status"] == "ok"
    finally:
        w.close()


def test_a_bypassed_harness_is_judged_elsewhere_and_its_process_replaced(worker):
    """patch_harness replaces the evaluator's checked launch and its seal: the judge's verdict
    still holds, and the processes it patched are replaced before the next candidate."""
    assert worker.request(request("first_calls", False), timeout_s=120)["status"] == "ok"  # started
    starts = worker.starts
    rec = worker.request(request("patch_harness", True), timeout_s=120)
    assert rec["status"] == "incorrect" and rec.get("worker_replaced") and rec.get("tampered"), rec
    honest = worker.request(request("first_calls", False), timeout_s=120)
    assert honest["status"] == "ok" and worker.starts == starts + 1, honest


def test_the_end_of_study_retiming_verifies_what_it_times(worker):
    """A config that cheats only when re-timed is caught there, and is never the study's best."""
    from kernelevolve.tuner.execution.studies import summarize

    configs = [{"cheat": c, "BLOCK": 128} for c in (False, True)]
    rec = worker.request({"op": "retime", "kernel_ref": f"{HERE}/attacks/skip_unpoisoned.py:KERNEL",
                          "problem": {}, "hardware": "cpu-interpreter", "configs": configs,
                          "rounds": 2, "bench": {}}, timeout_s=120)
    ok, cheat = rec["rows"]
    assert ok["status"] == "ok" and cheat["status"] == "incorrect", rec
    assert "timed call" in cheat["error"] and cheat["timed_checked"] >= 1
    # as if both had passed their own evaluation, the cheat being faster
    records = [{"status": "ok", "config": configs[0], "latency_ms": 2.0},
               {"status": "ok", "config": configs[1], "latency_ms": 1.0}]
    assert summarize(records, rec)["best"]["config"] == configs[0]
    assert summarize(records[1:], dict(rec, rows=[cheat]))["best"] is None  # never best


def test_a_library_call_made_only_when_timed_is_caught_in_the_timed_calls(worker):
    """library_call's "timed" form is a Triton GEMM for its three verified calls and torch.mm with a
    token Triton launch after them: the watched timed calls (every one on the interpreter) name
    the library operator, and the vendor exemption is not its to claim."""
    rec = worker.request(request("library_call", "timed"), timeout_s=120)
    assert rec["status"] == "incorrect", rec
    assert rec["error"].startswith("timed calls") and "aten.mm" in rec["error"], rec["error"]
