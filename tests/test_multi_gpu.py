"""A node with several GPUs: Ray gives each concurrent candidate one GPU's share, so the sweep
spreads over all of them, one timing lane per GPU (the device lock is keyed by the GPU's UUID).
Here the GPUs are Ray resources of a local node (no CUDA): the placement and the records are
real, the timing is the interpreter's. The run on real GPUs is benchmarks/throughput.py on a
multi-GPU machine."""
import os
import warnings

import pytest
import ray

from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.execution import sweep
from kernelevolve.tuner.execution.local_ray import loopback_init_kwargs
from kernelevolve.tuner.records.journal import SweepState

pytestmark = pytest.mark.slow

EXP = """
name: lanes
kernels:
  - kernel: matmul
    problems: [{M: 40, N: 24, K: 50, dtype: float32}]
targets: [{name: two-gpus, hardware: cpu-interpreter, resources: {CPU: 0.5, GPU: 0.5}}]
search: {sampler: random, samples: 8, concurrency: 4, seed: 0, timeout_s: 120, top_k: 1}
tracking: {uri: sqlite:///mlflow.db}
"""


@pytest.fixture
def two_fake_gpus():
    ray.shutdown()
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False,
             **loopback_init_kwargs(), logging_level="ERROR")
    yield
    ray.shutdown()


def test_candidates_spread_over_every_gpu_of_the_node(two_fake_gpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yaml").write_text(EXP)
    [summary] = sweep.run(config.load("exp.yaml"), log=lambda m: None)
    state = SweepState.latest(str(tmp_path / ".kernelevolve" / "lanes"))
    recs = [r for f in os.listdir(state.folder) if f.endswith(".jsonl")
            for r in state.journal(f[:-6]).records()]
    failed = [(r["status"], r.get("ray_gpu_ids"), r.get("error", "")[-600:]) for r in recs if r["status"] != "ok"]
    # 8 Triton candidates + the vendor paths: torch.mm, and torch.mm on padded copies (K=50
    # fp32: 200-byte rows of A, not 16-byte aligned); every one journaled, none twice
    assert len(recs) == 10 and len({r["candidate_id"] for r in recs}) == 10, (summary["counts"], failed)
    assert sum(summary["counts"].values()) == 10
    # What this test is about is where the candidates ran: each record names the GPU Ray gave its
    # trial, and both GPUs' lanes measured candidates. A candidate may fail on a loaded machine
    # (twice in some twenty CI runs one of the ten did, cause unrecorded); a failure must carry its
    # cause, and most must pass, or placement was not what was tested.
    assert all(r.get("error") for r in recs if r["status"] != "ok"), failed
    if failed:  # in the run's warnings summary, so that the next one is known
        warnings.warn(f"a candidate of the two-GPU sweep failed: {failed}")
    assert summary["counts"].get("ok", 0) >= 8, (summary["counts"], failed)
    lanes = {r["ray_gpu_ids"] for r in recs if r["status"] == "ok"}
    assert lanes == {"0", "1"}, f"candidates did not use both GPUs: {lanes} ({failed})"
