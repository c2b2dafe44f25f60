"""A GPU lane takes its waiting requests by turn, then as sent: a study's preparation and its
end-of-study re-timing go ahead of the candidates queued then, and the lane's own start first."""
import os
import threading
import time

import pytest
import ray

from kernelevolve.tuner.execution import lanes

HERE = os.path.dirname(os.path.abspath(__file__))


def _run_in_turns(turns: lanes.Turns, order: list, plan: list[tuple[str, int]]) -> None:
    """Hold the lane (a first request), let every planned request queue behind it, then free it."""
    held, release = threading.Event(), threading.Event()

    def first():
        with turns.turn(lanes.TURN_CANDIDATE):
            held.set()
            release.wait(10)

    def one(name, turn):
        with turns.turn(turn):
            order.append(name)
    threads = [threading.Thread(target=first)]
    threads[0].start()
    held.wait(10)
    for name, turn in plan:  # one at a time, so that each arrives after the one before
        threads.append(threading.Thread(target=one, args=(name, turn)))
        threads[-1].start()
        deadline = time.time() + 10
        while len(turns._waiting) < len(threads) - 1 and time.time() < deadline:
            time.sleep(0.001)
    release.set()
    for t in threads:
        t.join(10)


def test_a_study_s_requests_go_ahead_of_the_candidates_waiting_then():
    order: list = []
    _run_in_turns(lanes.Turns(), order, [
        ("candidate a", lanes.TURN_CANDIDATE), ("candidate b", lanes.TURN_CANDIDATE),
        ("re-timing", lanes.TURN_OF_OP["retime"]), ("candidate c", lanes.TURN_CANDIDATE),
        ("prepare", lanes.TURN_OF_OP["prepare"]), ("probe", lanes.TURN_OF_OP["probe"]),
        ("warm-up", lanes.TURN_START)])
    # the lane's start, then its own requests; the study's two in the order sent; the candidates
    # in the order sent (each sent after the one before had its ticket)
    assert order == ["warm-up", "probe", "re-timing", "prepare", "candidate a", "candidate b", "candidate c"]


def test_one_request_at_a_time_on_the_evaluator():
    turns, inside, most = lanes.Turns(), [], []
    lock = threading.Lock()

    def one(turn):
        with turns.turn(turn):
            with lock:
                inside.append(1)
                most.append(len(inside))
            time.sleep(0.002)
            with lock:
                inside.pop()
    threads = [threading.Thread(target=one, args=(i % 3,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(most) == 40 and max(most) == 1


@pytest.mark.slow
def test_a_real_lane_runs_a_study_s_request_before_the_candidates_queued_before_it(local_ray):
    """A lane actor with its evaluator on the CPU interpreter: a candidate that hangs holds it
    (until its timeout), two candidates queue, then a study's request: it runs second."""
    lane = lanes.Lane.remote("0", {"TRITON_INTERPRET": "1"}, os.getcwd())
    ray.get(lane.warm.remote())
    good = {"op": "evaluate", "kernel_ref": f"{HERE}/faults.py:GOOD", "problem": {"n": 64},
            "hardware": "cpu-interpreter", "config": {"BLOCK": 64}, "seed": 0, "bench": {"rep_ms": 1, "warmup_ms": 1}}
    hang = dict(good, kernel_ref=f"{HERE}/faults.py:HANG")
    first = lane.request.remote(hang, 4.0)
    time.sleep(1.0)  # the hang holds the lane
    queued = [lane.request.remote(dict(good, seed=i), 120.0) for i in (1, 2)]
    time.sleep(0.5)
    study = lane.request.remote({"op": "probe"}, 60.0, lanes.TURN_OF_OP["retime"])
    replies = ray.get([first, *queued, study], timeout=300)
    assert replies[0]["status"] == "timeout"
    assert [r["status"] for r in replies[1:3]] == ["ok", "ok"], replies[1:3]
    starts = [r["lane_started"] for r in replies]
    assert starts[0] < starts[3] < min(starts[1], starts[2])  # the study's went ahead of both candidates
    # what the lane was busy with: every request's time on it, by op, within its span
    busy = ray.get(lane.busy.remote())
    assert set(busy["by_op"]) == {"start", "evaluate", "probe"}
    assert busy["by_op"]["evaluate"] >= sum(r["lane_s"] for r in replies[:3]) - 1e-6
    assert busy["by_op"]["evaluate"] >= 3.5  # the hang held it until its timeout
    first_at, last_at = busy["span"]
    assert first_at <= starts[0] and last_at >= max(s + r["lane_s"] for s, r in zip(starts, replies)) - 1e-6
    assert sum(busy["by_op"].values()) <= last_at - first_at + 1e-6  # one request at a time
    line, = lanes.busy_report({"lane:s:n:0": lane})
    assert line.startswith("lane 0: busy ") and "candidates" in line and "its start" in line
    ray.get(lane.close.remote())


def test_a_lanes_reply_is_builtin_types_only():
    """What a trial unpickles from its lane: no object of torch or numpy (each would make the trial
    actor import its library before it can read the reply)."""
    import pickle
    import subprocess
    import sys

    import numpy as np
    import torch

    reply = {"torch": torch.__version__, "latency_ms": np.float64(0.5), "n": np.int64(3), "ok": True,
             "rows": [{"p": (np.float32(1.0), 2.0)}], "dtype": torch.float16, "none": None, "raw": b"x"}
    out = lanes.plain(reply)
    assert out == {"torch": str(torch.__version__), "latency_ms": 0.5, "n": 3, "ok": True,
                   "rows": [{"p": [1.0, 2.0]}], "dtype": "torch.float16", "none": None, "raw": b"x"}
    assert type(out["torch"]) is str and type(out["latency_ms"]) is float and type(out["n"]) is int
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read()); print('torch' in sys.modules, 'numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(out), capture_output=True, timeout=60)
    assert done.stdout.decode().split() == ["False", "False"], done.stderr[-1000:]


def test_a_self_check_line_names_every_other_span_of_the_lane_s_time():
    from kernelevolve.tuner.execution.lanes import _self_check_line

    reply = {"status": "ok", "eval_s": 1.2, "verify_s": 0.96, "verify_check_s": 0.67, "compile_s": 0.18,
             "lane_started": 100.0, "lane_s": 6.25, "queue_s": 4.8, "study_load_s": 0.01, "judge_s": 0.3}
    line = _self_check_line("0", reply)
    assert line.startswith("lane 0: self-check ok in 1.2 s") and "to 106.250" in line
    assert line.endswith("; also judge_s 0.30, queue_s 4.80")  # study_load_s under 50 ms: left out
    assert _self_check_line("1", {"status": "runtime_error", "error": "boom"}) == "lane 1: self-check runtime_error: boom"


def test_a_slow_vendor_decision_does_not_hold_the_lane_s_evaluator():
    """Whether a request's config is a declared vendor config may import its kernel's module into
    the lane actor (torch, Triton: seconds): that is decided before the request waits for its turn,
    so the evaluator runs the requests behind it meanwhile, and the decision is what the request
    is then judged by."""
    deciding, decided = threading.Event(), threading.Event()
    ran: list = []

    class Worker:
        def judge_exemptions(self, payload):
            if payload.get("config") == {"IMPL": "vendor"}:
                deciding.set()
                assert decided.wait(10)
                return True, []
            return False, []

        def request(self, payload, timeout_s, exemptions=None):
            ran.append((payload["name"], exemptions))
            return {"status": "ok"}

    lane = lanes.Lane.__ray_metadata__.modified_class.__new__(lanes.Lane.__ray_metadata__.modified_class)
    lane.worker, lane.turns, lane.busy_s, lane.span = Worker(), lanes.Turns(), {}, []
    first = threading.Thread(target=lane.request, args=(
        {"op": "evaluate", "name": "self-check", "config": {"IMPL": "vendor"}}, 10.0, lanes.TURN_FIRST))
    first.start()
    assert deciding.wait(10)
    reply = lane.request({"op": "evaluate", "name": "candidate", "config": {"BLOCK": 64}}, 10.0)
    assert reply["status"] == "ok" and ran == [("candidate", (False, []))]  # while the first decides
    decided.set()
    first.join(10)
    assert ran == [("candidate", (False, [])), ("self-check", (True, []))]
