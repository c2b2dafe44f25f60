"""Fault injection: every way a candidate can break ends in its own status, with its cause; the
worker survives or is replaced; a sweep over all of them completes and never picks a broken one."""
import os
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

import faults
from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.execution import sweep
from kernelevolve.tuner.execution.worker import CandidateWorker

HERE = os.path.dirname(os.path.abspath(__file__))
CPU_FAULTS = [k for k in faults.EXPECTED if k not in faults.GPU_ONLY]


def request(fault, n=1000):
    return {"op": "evaluate", "kernel_ref": f"{HERE}/faults.py:FAULTS", "problem": {"n": n},
            "hardware": "cpu-interpreter", "config": {"fault": fault, "BLOCK": 64}, "seed": 1}


@pytest.fixture(scope="module")
def worker():
    w = CandidateWorker(env={"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""})
    yield w
    w.close()


@pytest.mark.parametrize("fault", [k for k in CPU_FAULTS if k not in ("flaky_crash",)])
def test_each_fault_gets_its_status_and_cause(worker, fault):
    # hang needs a short limit; the others get room for a loaded CI machine
    rec = worker.request(request(fault), timeout_s=5 if fault == "hang" else 90)
    assert rec["status"] == faults.EXPECTED[fault], rec
    if fault != "none":
        assert rec["error"], "a failure must carry its cause"
    # whatever happened, the next candidate is evaluated normally
    assert worker.request(request("none"), timeout_s=60)["status"] == "ok"


def test_causes_name_what_went_wrong(worker):
    causes = {f: worker.request(request(f), timeout_s=90)["error"] for f in
              ("nan", "partial", "cached", "oob_write", "crash", "compile_error")}
    assert "NaN" in causes["nan"] and "500 of 1000" in causes["partial"]
    assert "second input set" in causes["cached"] and "outside its output" in causes["oob_write"]
    assert "killed by signal 9" in causes["crash"] and "power of 2" in causes["compile_error"]


def test_worker_killed_from_outside_mid_candidate(worker):
    def kill_soon():
        time.sleep(1.5)
        os.kill(worker.proc.pid, 9)
    threading.Thread(target=kill_soon).start()
    rec = worker.request(request("hang"), timeout_s=30)
    assert rec["status"] == "runtime_error" and rec["worker_died"] and "signal 9" in rec["error"]
    assert worker.request(request("none"), timeout_s=60)["status"] == "ok"


FAULT_SWEEP = f"""
name: faults
kernels:
  - kernel: {HERE}/faults.py:FAULTS
    problems: [{{n: 1000}}]
targets: [{{name: cpu-interpreter}}]
search: {{sampler: grid, concurrency: 2, seed: 0, timeout_s: 20, top_k: 3, retries: 1}}
tracking: {{uri: sqlite:///mlflow.db}}
"""


@pytest.mark.slow
def test_sweep_over_every_fault_completes_and_picks_only_the_correct_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "faults.yaml").write_text(FAULT_SWEEP)
    exp = config.load("faults.yaml")
    [summary] = sweep.run(exp, log=lambda m: None)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    e = client.get_experiment_by_name("faults")
    children = client.search_runs([e.experiment_id], "tags.`kernelevolve.role` = 'candidate'")
    by_fault = {c.data.params["fault"]: c for c in children}
    assert sorted(by_fault) == sorted(CPU_FAULTS) and len(children) == len(CPU_FAULTS)
    for fault, run in by_fault.items():
        assert run.data.tags["status"] == faults.EXPECTED[fault], (fault, run.data.tags)
        if faults.EXPECTED[fault] != "ok":
            assert run.data.tags["error"]
    assert by_fault["flaky_crash"].data.tags["status"] == "ok"
    assert summary["best"]["config"]["fault"] in ("none", "flaky_crash")  # both compute 2*x right
    assert summary["counts"]["ok"] == 2 and sum(summary["counts"].values()) == len(CPU_FAULTS)
