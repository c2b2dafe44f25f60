"""The fork server for evaluation processes: what a forked process must do just as a started one."""
import os
import signal
import time

import pytest

from kernelevolve.tuner.execution import spawner
from kernelevolve.tuner.execution.worker import CandidateWorker

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
REQ = {"op": "evaluate", "kernel_ref": "kernelevolve.search_spaces.matmul:TUNABLE",
       "problem": {"M": 40, "N": 24, "K": 50, "dtype": "float32"}, "hardware": "cpu-interpreter",
       "config": {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 4, "SPLIT_K": 2,
                  "num_warps": 4, "num_stages": 1}, "seed": 5}
HANG = {"op": "evaluate", "kernel_ref": f"{HERE}/faults.py:HANG", "problem": {"n": 64},
        "hardware": "cpu-interpreter", "config": {"BLOCK": 64}, "seed": 0}


@pytest.fixture
def server(monkeypatch):
    # the server imports Triton as the interpreter: the children it may fork are interpreter ones
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    srv = spawner.start()
    yield srv
    srv.close()


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line for line in fh if line.startswith("PPid:")).split()[1])


def test_a_forked_evaluator_and_judge_verify_and_time_a_candidate(server):
    worker = CandidateWorker(env=ENV)
    try:
        rec = worker.request(REQ, timeout_s=120)
        assert rec["status"] == "ok" and rec["timing"] == "interpreter", rec
        assert rec["judge_transport"] and rec["judge_checks"] > 0  # the judge gave the verdict
        assert isinstance(worker.proc, spawner.Spawned) and isinstance(worker.judge, spawner.Spawned)
        assert _parent_of(rec["worker_pid"]) == server.proc.pid
        assert os.getpgid(rec["worker_pid"]) == rec["worker_pid"]  # a session of its own
        # the start split: the wait for the server's fork, then the forked process's own start
        assert rec["worker_fork_wait_s"] >= 0 and rec["worker_child_start_s"] > 0
        assert rec["worker_fork_wait_s"] + rec["worker_child_start_s"] <= rec["worker_start_s"]
        # ... and that start in its parts: set-up after the fork, the module's run, the evaluator's
        parts = [rec[k] for k in ("worker_child_setup_s", "worker_child_module_s", "worker_child_evaluator_s")]
        assert min(parts) >= 0 and abs(sum(parts) - rec["worker_child_start_s"]) < 1e-3
        wrong = worker.request(dict(HANG, kernel_ref=f"{HERE}/faults.py:FAULTS",
                                    config={"fault": "nan", "BLOCK": 64}), timeout_s=120)
        assert wrong["status"] == "incorrect", wrong
    finally:
        worker.close()
    assert worker.proc is None


def test_a_hung_forked_process_is_killed_and_replaced(server):
    worker = CandidateWorker(env=ENV)
    try:
        rec = worker.request(HANG, timeout_s=3)
        assert rec["status"] == "timeout" and "killed" in rec["error"]
        again = worker.request(REQ, timeout_s=120)
        assert again["status"] == "ok" and worker.starts == 2
        assert _parent_of(again["worker_pid"]) == server.proc.pid
    finally:
        worker.close()


def test_a_forked_process_killed_mid_candidate_is_recorded_with_its_signal(server):
    worker = CandidateWorker(env=ENV)
    try:
        first = worker.request(REQ, timeout_s=120)
        pid = first["worker_pid"]
        import threading

        threading.Timer(1.0, lambda: os.kill(pid, signal.SIGKILL)).start()
        rec = worker.request(HANG, timeout_s=60)
        assert rec["status"] == "runtime_error" and "signal 9" in rec["error"], rec
    finally:
        worker.close()


def test_a_process_the_server_cannot_make_is_started_afresh(server):
    """The server imported Triton as the interpreter: a GPU-mode process is not forked from it."""
    worker = CandidateWorker(env={"TRITON_INTERPRET": "0", "CUDA_VISIBLE_DEVICES": ""})
    try:
        reply = worker.request({"op": "probe"}, timeout_s=120)
        assert not isinstance(worker.proc, spawner.Spawned)
        assert reply["worker_start_s"] > 0 and "worker_fork_wait_s" not in reply  # no fork to split
    finally:
        worker.close()


def test_without_a_server_the_worker_starts_its_processes_itself(monkeypatch, tmp_path):
    monkeypatch.setenv(spawner.ENV, str(tmp_path / "gone.sock"))
    worker = CandidateWorker(env=ENV)
    try:
        assert worker.request(REQ, timeout_s=120)["status"] == "ok"
        assert not isinstance(worker.proc, spawner.Spawned)
    finally:
        worker.close()


def test_a_server_whose_owner_is_done_forks_no_more_but_reaps_what_it_forked(server):
    worker = CandidateWorker(env=ENV)
    try:
        pid = worker.request(REQ, timeout_s=120)["worker_pid"]
        server.proc.stdin.close()  # the driver is done with it
        deadline = time.time() + 30
        while os.path.exists(server.path) and time.time() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(server.path)  # nobody can ask it for another process
        assert server.proc.poll() is None  # still there: its children live
        assert worker.request(dict(REQ, seed=9), timeout_s=120)["worker_pid"] == pid
    finally:
        worker.close()
    server.proc.wait(timeout=30)  # its last child ended: it reaped it and left
    assert not os.path.exists(f"/proc/{pid}")  # reaped, not a zombie


def test_processes_forked_at_once_each_get_their_own_pipes(server):
    from concurrent.futures import ThreadPoolExecutor

    workers = [CandidateWorker(env=ENV) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            recs = list(pool.map(lambda w: w[1].request(dict(REQ, seed=w[0]), timeout_s=120),
                                 enumerate(workers)))
        assert [r["status"] for r in recs] == ["ok"] * 4
        assert len({r["worker_pid"] for r in recs}) == 4
    finally:
        for w in workers:
            w.close()


def test_a_server_started_early_is_the_one_the_sweep_takes(monkeypatch):
    """start_early (the CLI's, before the engine's import) starts a server only where there is a
    GPU; start() then hands back that one, once."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    real_exists = os.path.exists
    monkeypatch.setattr(spawner.os.path, "exists", lambda p: False if p == "/dev/nvidiactl" else real_exists(p))
    assert spawner.start_early() is None and spawner.take_early() is None
    monkeypatch.setattr(spawner.os.path, "exists", lambda p: True if p == "/dev/nvidiactl" else real_exists(p))
    early = spawner.start_early()
    try:
        assert early is not None and spawner.start_early() is early  # one per process
        assert os.environ[spawner.ENV] == early.path
        taken = spawner.start()
        assert taken is early and spawner.take_early() is None
    finally:
        early.close()
    assert early.proc.wait(timeout=60) is not None
