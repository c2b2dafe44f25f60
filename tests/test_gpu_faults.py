"""GPU-only faults: an illegal memory access, an endless loop on the GPU, OutOfResources."""
import os

import pytest

import faults
from kernelevolve.tuner.execution import spawner
from kernelevolve.tuner.execution.worker import CandidateWorker

pytestmark = pytest.mark.gpu
HERE = os.path.dirname(os.path.abspath(__file__))


def request(fault):
    return {"op": "evaluate", "kernel_ref": f"{HERE}/faults.py:FAULTS", "problem": {"n": 100000},
            "hardware": "h100", "config": {"fault": fault, "BLOCK": 64}, "seed": 1,
            "bench": {"warmup_ms": 5, "rep_ms": 10}}


@pytest.fixture(params=["started", "forked"])
def worker(request):
    """Each fault in a process started afresh, and in one forked by a sweep's fork server
    (tuner.execution.spawner: torch and Triton imported before the fork, CUDA after it)."""
    server = spawner.start() if request.param == "forked" else None
    w = CandidateWorker()
    yield w
    if server is not None:
        assert isinstance(w.proc, spawner.Spawned) or w.proc is None
    w.close()
    if server is not None:
        server.close()


def test_illegal_address_replaces_the_worker(worker):
    first = worker.request(request("none"), timeout_s=120)
    rec = worker.request(request("illegal_address"), timeout_s=120)
    assert rec["status"] == "runtime_error" and "illegal memory access" in rec["error"].lower(), rec
    assert rec.get("worker_replaced")
    after = worker.request(request("none"), timeout_s=120)  # a fresh process and CUDA context
    assert after["status"] == "ok" and after["worker_pid"] != first["worker_pid"]


def test_endless_loop_on_the_gpu_is_killed(worker):
    rec = worker.request(request("hang"), timeout_s=10)
    assert rec["status"] == "timeout"
    assert worker.request(request("none"), timeout_s=120)["status"] == "ok"


def test_out_of_resources_on_the_gpu(worker):
    rec = worker.request(request("out_of_resources"), timeout_s=120)
    assert rec["status"] == faults.EXPECTED["out_of_resources"], rec
