"""A lane's `prepare` request (tuner/measure/prepare.py): a study's input sets and references made
ahead of its first candidate, which is then judged exactly as without it."""
import os

import pytest

from kernelevolve.tuner.execution.worker import CandidateWorker, make_request
from kernelevolve.tuner.measure.input_sets import INPUT_SETS

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
MATMUL = "kernelevolve.search_spaces.matmul:TUNABLE"
PROBLEM = {"M": 40, "N": 24, "K": 50, "dtype": "float32"}
CONFIG = {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 4, "SPLIT_K": 2,
          "num_warps": 4, "num_stages": 1}


def prepare(kernel_ref=MATMUL, problem=PROBLEM, **fields):
    return make_request("prepare", kernel_ref, problem, "cpu-interpreter", {}, **fields)


def evaluate(kernel_ref=MATMUL, problem=PROBLEM, config=CONFIG, seed=5):
    return make_request("evaluate", kernel_ref, problem, "cpu-interpreter", {}, config=config, seed=seed)


@pytest.fixture
def worker():
    w = CandidateWorker(env=ENV)
    yield w
    w.close()


# what a judged evaluate reply says about the candidate, whatever the process did before it
VERDICT = ("status", "error", "rel_error", "max_error", "judge_checks", "timed_calls", "timed_checked")


@pytest.mark.parametrize("start_judge", [False, True])
def test_a_prepared_study_is_judged_as_an_unprepared_one(worker, start_judge):
    """Registered with the judge at its first judged use (start_judge off), or as made."""
    fresh = CandidateWorker(env=ENV)
    try:
        unprepared = fresh.request(evaluate(), timeout_s=120)
    finally:
        fresh.close()
    reply = worker.request(prepare(start_judge=start_judge), timeout_s=120)
    assert reply["status"] == "ok" and reply["sets"] == INPUT_SETS, reply
    assert reply["moved"] == INPUT_SETS and reply["prepare_s"] > 0
    prepared = worker.request(evaluate(), timeout_s=120)
    assert prepared["status"] == "ok", prepared
    assert {k: prepared.get(k) for k in VERDICT} == {k: unprepared.get(k) for k in VERDICT}
    assert worker.starts == 1 and not prepared.get("worker_replaced")


def test_a_prepare_for_an_unknown_kernel_is_a_record_and_keeps_the_process(worker):
    reply = worker.request(prepare("kernelevolve.no_such_module:TUNABLE"), timeout_s=120)
    assert reply["status"] == "runtime_error" and "no_such_module" in reply["error"], reply
    assert worker.request(evaluate(), timeout_s=120)["status"] == "ok"
    assert worker.starts == 1


def test_prepares_past_the_input_budget_stop_and_need_no_judge():
    """A set dropped from the cache in a request that judges nothing, before any judge started
    (a compile slot's, or a prepare's), is not announced to a judge that would never answer."""
    one_set = 40 * 50 * 4 + 50 * 24 * 4 + 40 * 24 * 4  # A, B and the reference, fp32
    w = CandidateWorker(env={**ENV, "KERNELEVOLVE_INPUT_BYTES": str(int(1.2 * one_set))})
    try:
        first = w.request(prepare(), timeout_s=60)
        assert first["status"] == "ok" and first["sets"] == 1 and first["moved"] == 0, first
        # another study's first set evicts this one's: no judge asked
        other = w.request(prepare(problem=dict(PROBLEM, M=41)), timeout_s=60)
        assert other["status"] == "ok" and other["sets"] == 1, other
        assert w.request(evaluate(), timeout_s=120)["status"] == "ok"
        assert w.starts == 1
    finally:
        w.close()


def test_a_prepared_study_poisoned_by_another_studys_candidate_is_caught(worker):
    """A lane's prepare registers each set as made: a candidate of another study that halves its
    references before its first candidate (tests/attacks/poison_other_study.py) is caught there,
    instead of the judge fingerprinting the halved references as the study's own."""
    victim = f"{HERE}/attacks/poison_reference.py:KERNEL"
    honest = {"cheat": False, "BLOCK": 128}
    assert worker.request(prepare(victim, {}, start_judge=True), timeout_s=120)["status"] == "ok"
    attack = worker.request(evaluate(f"{HERE}/attacks/poison_other_study.py:KERNEL", {},
                                     {"cheat": True, "BLOCK": 128}, seed=3), timeout_s=120)
    assert attack["status"] == "ok", attack  # its own study untouched
    rec = worker.request(evaluate(victim, {}, honest, seed=3), timeout_s=120)
    assert rec["status"] == "incorrect" and rec.get("tampered") and rec.get("worker_replaced"), rec
    assert "cached reference of input set" in rec["error"], rec["error"]
    assert worker.request(evaluate(victim, {}, honest, seed=3), timeout_s=120)["status"] == "ok"


@pytest.mark.slow
def test_a_lane_prepares_each_study_in_order_and_reports_the_ones_it_could_not():
    """lanes.prepare sends without waiting; prepare_report names each failed prepare once."""
    import ray

    from kernelevolve.tuner.execution import lanes
    from kernelevolve.tuner.execution.cluster import init_ray

    ctx = {"kernel_ref": MATMUL, "problem": PROBLEM, "hardware": "cpu-interpreter", "bench": {},
           "timeout_s": 60}
    init_ray(None)
    try:
        lane = lanes.Lane.options(name="lane:test-prepare:node:0").remote("", ENV, os.getcwd())
        warm = {"lane:test-prepare:node:0": lane.warm.remote()}
        ray.get(list(warm.values()))
        [up] = lanes.warm_report(warm)  # when the lane's actor came up, how long its start took
        assert up.startswith("lane 0: actor up at unix ") and "evaluator and judge started in" in up, up
        sent = lanes.prepare({"lane:test-prepare:node:0": lane},
                             [("good", ctx), ("broken", dict(ctx, kernel_ref="kernelevolve.no_such_module:T"))])
        assert [key for _, key, _ in sent] == ["good", "broken"]
        replies = ray.get([ref for _, _, ref in sent])
        assert replies[0]["status"] == "ok" and replies[0]["sets"] == INPUT_SETS, replies[0]
        lines = lanes.prepare_report(sent)
        assert len(lines) == 3 and "broken: lane lane:test-prepare:node:0 could not prepare it" in lines[0], lines
        assert "no_such_module" in lines[0] and "prepared 1 of 2" in lines[1], lines
        assert "lane 0: prepares on the lane from unix" in lines[2], lines  # when the lane ran them
        # the lane's evaluator kept its process, and judges the prepared study's candidates
        rec = ray.get(lane.request.remote(evaluate(), 120))
        assert rec["status"] == "ok" and rec["worker_pid"] == replies[0]["worker_pid"], rec
        ray.get(lane.close.remote())
    finally:
        ray.shutdown()
