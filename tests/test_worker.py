"""The evaluation worker: a real child process, classified failures, timeouts that kill."""
import os

import pytest

from kernelevolve.tuner.execution.worker import CandidateWorker

HERE = os.path.dirname(os.path.abspath(__file__))
REQ = {"op": "evaluate", "kernel_ref": "kernelevolve.search_spaces.matmul:TUNABLE",
       "problem": {"M": 40, "N": 24, "K": 50, "dtype": "float32"}, "hardware": "cpu-interpreter",
       "config": {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 4, "SPLIT_K": 2,
                  "num_warps": 4, "num_stages": 1}, "seed": 5}


@pytest.fixture
def worker():
    w = CandidateWorker(env={"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""})
    yield w
    w.close()


def test_ok_candidate_is_verified_and_timed_as_interpreter(worker):
    rec = worker.request(REQ, timeout_s=120)
    assert rec["status"] == "ok", rec
    assert rec["timing"] == "interpreter" and rec["latency_ms"] > 0
    assert rec["rel_error"] < 1e-5
    assert "speedup" not in rec  # no peer comparison from interpreter wall time


def test_invalid_config_is_rejected_by_the_worker_too(worker):
    rec = worker.request(dict(REQ, config=dict(REQ["config"], BLOCK_M=256)), timeout_s=120)
    assert rec["status"] == "invalid" and "BLOCK_M" in rec["error"]


def test_process_is_reused_between_candidates(worker):
    a = worker.request(REQ, timeout_s=120)
    b = worker.request(dict(REQ, seed=6), timeout_s=120)
    assert a["worker_pid"] == b["worker_pid"] and worker.starts == 1
    # the process's start is charged to the request that paid it, and only to that one
    assert a["worker_start_s"] > 0 and "worker_start_s" not in b


def test_timeout_kills_and_replaces_the_process(worker):
    rec = worker.request({"op": "evaluate", "kernel_ref": f"{HERE}/faults.py:HANG",
                          "problem": {"n": 64}, "hardware": "cpu-interpreter",
                          "config": {"BLOCK": 64}, "seed": 0}, timeout_s=3)
    assert rec["status"] == "timeout" and "killed" in rec["error"]
    assert worker.request(REQ, timeout_s=120)["status"] == "ok"
    assert worker.starts == 2


def test_waiting_for_the_device_is_not_charged_to_the_candidates_timeout(worker):
    """A profiler or another process holding the GPU for longer than a candidate's timeout (ncu
    reading a finalist's counters takes seconds to minutes) must not end the candidates queued
    behind it as `timeout`: the clock starts again once the candidate holds the device."""
    import threading

    from kernelevolve.tuner.measure.clocks import device_lock

    assert worker.request(REQ, timeout_s=120)["status"] == "ok"  # compiled, sets cached
    key = worker.request({"op": "probe"}, timeout_s=60)["gpu_uuid"]
    held, release = threading.Event(), threading.Event()

    def hold():
        with device_lock(key):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        threading.Timer(12.0, release.set).start()
        rec = worker.request(REQ, timeout_s=8)
    finally:
        release.set()
        holder.join()
    assert rec["status"] == "ok", rec
    assert rec["lock_wait_s"] > 8  # waited past the timeout, and was not killed for it


def test_a_compiling_process_yields_the_cpu_when_asked():
    """KERNELEVOLVE_NICE (what the sweep sets for a trial's compiling process, study_plan.COMPILE_NICE):
    the evaluation process lowers its own priority, so the GPU lane's evaluator and judge get the
    cores first; a lane's process is left as it is."""
    def niceness(pid: int) -> int:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[16])  # field 19: nice

    base = os.nice(0)
    for asked, expected in (("5", base + 5), ("", base)):
        w = CandidateWorker(env={"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": "", "KERNELEVOLVE_NICE": asked})
        try:
            assert w.request(dict(REQ), 120)["status"] == "ok"
            assert niceness(w.proc.pid) == min(19, expected)
        finally:
            w.close()
