"""Several candidates of a study per Ray Tune trial: the searcher hands out batches within the
study's concurrency cap, every candidate keeps its own result, record and MLflow child run."""
import os

import pytest
from mlflow.tracking import MlflowClient
from ray.tune.search import Searcher

from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.execution import sweep
from kernelevolve.tuner.search.constrained import ConstrainedSearch
from kernelevolve.tuner.search.protocol import (BATCH_PARAM, BATCH_RESULT, OBJECTIVE, PENALTY, STUDY_PARAM,
                                                batch_size, decode_batch, encode_batch, replies_of)
from kernelevolve.tuner.search.space import Choice, Pow2, Space, config_key
from kernelevolve.tuner.search.sweep_search import SweepSearch


def _space() -> Space:
    return Space(domains=(Pow2("BLOCK", 16, 256), Choice("num_warps", (1, 2, 4, 8))))


def _search(budget: int, cap: int, batch: int) -> SweepSearch:
    return SweepSearch({"s": ConstrainedSearch(_space(), "tpe", 0, "s")}, {"s": budget}, {"s": cap}, {"s": batch})


def test_batch_size_is_half_the_concurrency_at_most_eight_and_never_above_it():
    assert [batch_size(c) for c in (1, 2, 3, 4, 8, 16, 64)] == [1, 1, 1, 2, 4, 8, 8]
    assert batch_size(4, requested=16) == 4 and batch_size(8, requested=3) == 3


def test_a_trial_carries_distinct_candidates_within_the_cap():
    search = _search(budget=10, cap=6, batch=4)
    first = search.suggest("t1")
    members = decode_batch(first[BATCH_PARAM])
    assert first[STUDY_PARAM] == "s" and len(members) == 4
    assert [m["candidate_id"] for m in members] == ["t1-0", "t1-1", "t1-2", "t1-3"]
    # the cap counts candidates: 2 more may go out, not another 4
    second = decode_batch(search.suggest("t2")[BATCH_PARAM])
    assert len(second) == 2 and search.in_flight["s"] == 6
    assert search.suggest("t3") is None  # at the cap: asked again when a trial ends
    keys = {config_key(m["config"]) for m in members + second}
    assert len(keys) == 6, "a batch repeated a config"


def test_each_reply_goes_back_to_its_own_candidate():
    search = _search(budget=4, cap=4, batch=4)
    members = decode_batch(search.suggest("t1")[BATCH_PARAM])
    replies = [{OBJECTIVE: -4.0 - i, "status": "ok"} for i in range(len(members))]
    search.on_trial_complete("t1", {OBJECTIVE: -7.0, BATCH_RESULT: encode_batch(replies)})
    study = search.studies["s"]
    told = {k: v for k, v in study.seen.items()}
    for m, r in zip(members, replies):
        assert told[config_key(m["config"])] == r[OBJECTIVE]
    assert search.done("s") and search.suggest("t2") == Searcher.FINISHED


def test_a_trial_that_died_fails_every_candidate_it_carried():
    search = _search(budget=6, cap=6, batch=3)
    members = decode_batch(search.suggest("t1")[BATCH_PARAM])
    search.on_trial_complete("t1", None, error=True)
    assert search.in_flight["s"] == 0
    assert all(search.studies["s"].seen[config_key(m["config"])] == PENALTY for m in members)
    # an error result without per-candidate replies is each candidate's record
    assert replies_of({"status": "runtime_error", "error": "x"}, 3) == [{"status": "runtime_error", "error": "x"}] * 3


EXP = """
name: batches
kernels:
  - kernel: softmax
    problems: [{rows: 64, cols: 96, dtype: float32}]
targets: [{name: cpu-interpreter}]
search: {sampler: tpe, samples: 6, concurrency: 4, candidates_per_trial: 3, seed: 1, timeout_s: 120, top_k: 2}
tracking: {uri: sqlite:///store/mlflow.db}
"""


@pytest.mark.slow
def test_a_sweep_of_batched_trials_records_every_candidate_once(tmp_path):
    (tmp_path / "exp.yaml").write_text(EXP)
    (tmp_path / "store").mkdir()
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        summary = sweep.run(config.load("exp.yaml"), log=lambda m: None)[0]
    finally:
        os.chdir(old)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    exp = client.get_experiment_by_name("batches")
    children = [r for r in client.search_runs([exp.experiment_id])
                if r.data.tags.get("kernelevolve.role") == "candidate"]
    assert len(children) == sum(summary["counts"].values()) == 6
    ids = [c.data.tags["candidate_id"] for c in children]
    assert len(set(ids)) == 6
    trials = {cid.rsplit("-", 1)[0] for cid in ids}
    assert len(trials) < 6, f"every candidate had a trial of its own: {ids}"
    # each candidate has its own config and its own measurement
    assert len({tuple(sorted(c.data.params.items())) for c in children}) == 6
    assert all(c.data.metrics["latency_ms"] > 0 for c in children if c.data.tags["status"] == "ok")
    assert summary["best"] is not None


def test_a_trial_holds_one_candidates_share_per_candidate():
    from kernelevolve.tuner.execution.trial import StudyResources

    res = StudyResources({"s": {"CPU": 1, "GPU": 0.0625}}, {"s": 4})
    assert res.per_trial("s") == {"CPU": 4, "GPU": 0.25}
    bundle = res({STUDY_PARAM: "s", BATCH_PARAM: encode_batch([{"candidate_id": "t-0", "config": {}}])})
    # a partial batch asks for the whole batch's share: any trial of the study can reuse the actor
    assert bundle.required_resources == {"CPU": 4, "GPU": 0.25}


LN = """
name: remote-parent
kernels:
  - kernel: layer_norm_fwd
    problems: [{rows: 64, cols: 96, dtype: float32}]
targets: [{name: cpu-interpreter}]
search: {sampler: tpe, samples: 4, concurrency: 2, seed: 0}
tracking: {uri: sqlite:///mlflow.db}
"""


@pytest.mark.slow
def test_the_writer_process_opens_parent_runs_of_studies_that_do_not_pickle(tmp_path, monkeypatch):
    """A study can hold what cannot cross to another process (layer_norm's holds torch.ops): its
    parent run's fields are computed in the driver, only plain data goes to the writer actor."""
    import ray
    import ray.cloudpickle as cloudpickle

    from kernelevolve.tuner.execution.cluster import init_ray
    from kernelevolve.tuner.records.remote_tracker import RemoteTracker
    from kernelevolve.tuner.records.tracking import Tracker

    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yaml").write_text(LN)
    exp = config.load("exp.yaml")
    study = next(exp.studies())
    with pytest.raises(TypeError):
        cloudpickle.dumps(study)  # why the fields are computed on this side
    init_ray(None)
    try:
        remote = RemoteTracker(Tracker(exp.tracking.uri, exp.name), exp.name)
        parent = remote.start_study(study, "sweep-1", {"experiment.yaml": LN}, {"gpu_name": "none"})
        remote.sync(parent, [{"candidate_id": "t-0", "status": "ok", "latency_ms": 1.0, "config": {"BLOCK": 64}}],
                    {"study": study.key})
        # writes the Tracker has no method for (profiles) run with the writer's own client
        assert remote.with_client(MlflowClient.get_run, parent).info.run_id == parent
    finally:
        ray.shutdown()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(parent)
    assert run.data.tags["kernelevolve.study"] == study.key and run.data.tags["kernel"] == "layer_norm_fwd"
    assert run.data.params["problem.rows"] == "64"
    [child] = client.search_runs([run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert child.data.tags["candidate_id"] == "t-0" and child.data.params["BLOCK"] == "64"


def _two_studies(**kwargs) -> SweepSearch:
    return SweepSearch({"a": ConstrainedSearch(_space(), "tpe", 0, "a"), "b": ConstrainedSearch(_space(), "tpe", 0, "b")},
                       {"a": 4, "b": 4}, {"a": 4, "b": 4}, {"a": 2, "b": 2}, **kwargs)


def test_a_study_whose_valid_configs_are_being_enumerated_is_asked_for_nothing():
    search = _two_studies(set_wait_s=0.0)
    search.studies["a"].awaiting = search.studies["b"].awaiting = True
    assert search.suggest("t1") is None  # not FINISHED: asked again once a set arrives
    search.studies["b"].awaiting = False
    assert search.suggest("t2")[STUDY_PARAM] == "b"
    assert search.studies["a"].counts["proposals"] == 0  # nothing was asked of a's sampler


def test_a_study_awaiting_its_valid_configs_hands_out_its_listed_configs_first():
    """The vendor's config and the start points need no valid set: they go out at once, and the
    study waits for its set only when they are gone."""
    vendor, starts = {"IMPL": "vendor"}, [{"BLOCK": 64, "num_warps": 4}, {"BLOCK": 128, "num_warps": 8}]
    study = ConstrainedSearch(_space(), "tpe", 0, "s", start_points=starts, outside=[vendor])
    search = SweepSearch({"s": study}, {"s": 8}, {"s": 8}, {"s": 2}, set_wait_s=0.0)
    study.awaiting = True
    first = [m["config"] for m in decode_batch(search.suggest("t1")[BATCH_PARAM])]
    second = [m["config"] for m in decode_batch(search.suggest("t2")[BATCH_PARAM])]
    assert first == [vendor, starts[0]] and second == [starts[1]]
    assert not study.listed_left and search.suggest("t3") is None  # now it waits for its set
    assert study.counts["proposals"] == 2  # the start points; nothing drawn or rejected


def test_with_nothing_in_flight_a_suggestion_waits_for_the_first_valid_set_not_tunes_second():
    """Given None with no trial out, Tune's loop sleeps a whole second; the searcher instead
    waits for the first study whose valid configs arrive, and hands out its trial at once."""
    import threading
    import time

    search = _two_studies()
    search.studies["a"].awaiting = search.studies["b"].awaiting = True
    threading.Timer(0.2, lambda: setattr(search.studies["b"], "awaiting", False)).start()
    t0 = time.monotonic()
    first = search.suggest("t1")
    waited = time.monotonic() - t0
    assert first[STUDY_PARAM] == "b" and 0.15 <= waited < 5.0
    # with a trial out it never waits: that trial's result must not queue behind the searcher
    search.studies["b"].awaiting = True
    search.set_wait_s = 60.0
    t0 = time.monotonic()
    assert search.suggest("t2") is None and time.monotonic() - t0 < 5.0


def test_each_study_is_announced_once_as_its_first_trial_goes_out_and_the_hook_never_pickles():
    """The sweep sends a study's prepare to the lanes when its first trial goes out; Tune pickles
    its searcher, which must not take the sweep's hook along."""
    import pickle

    out = []
    search = SweepSearch({"a": ConstrainedSearch(_space(), "tpe", 0, "a"), "b": ConstrainedSearch(_space(), "tpe", 0, "b")},
                         {"a": 4, "b": 4}, {"a": 2, "b": 2}, {"a": 2, "b": 2}, first_out=out.append)
    trials = [search.suggest(f"t{i}") for i in range(3)]
    assert [t[STUDY_PARAM] for t in trials[:2]] == ["a", "b"] and trials[2] is None  # both at their cap
    assert out == ["a", "b"]
    search.on_trial_complete("t0", {BATCH_RESULT: trials[0][BATCH_PARAM]})
    assert search.suggest("t3")[STUDY_PARAM] == "a" and out == ["a", "b"]
    assert pickle.loads(pickle.dumps(search)).first_out is None


def test_a_trial_actor_imports_neither_torch_nor_triton():
    """A trial actor only hands candidates to its compile slots and its GPU's lane: importing torch
    there cost every new actor ~4 s before its first candidate on the H200 nodes (the registry's
    KernelSpec import pulled it in through lanes.my_lane)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from kernelevolve.tuner.execution import trial, lanes\n"
            "assert callable(lanes.my_lane) and callable(trial.run_candidates)\n"
            "print(sorted(m for m in ('torch', 'triton') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_a_lanes_reply_reads_without_torch():
    """What a trial actor gets back from its GPU's lane is read (unpickled) in the trial's process:
    a torch object in it (torch.__version__ is a TorchVersion, not a str) made every new trial
    actor import torch on its first reply, 3-4 s that each first-wave trial of a sweep waited on
    an H200 node. A real evaluator's reply, unpickled in a fresh process, imports neither."""
    import pickle
    import subprocess
    import sys

    from kernelevolve.tuner.execution.worker import CandidateWorker

    w = CandidateWorker(env={"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""})
    try:
        reply = w.request({"op": "evaluate", "kernel_ref": "kernelevolve.search_spaces.matmul:TUNABLE",
                           "problem": {"M": 32, "N": 32, "K": 32, "dtype": "float32"},
                           "hardware": "cpu-interpreter", "seed": 1,
                           "config": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1, "SPLIT_K": 1,
                                      "SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "num_warps": 4,
                                      "num_stages": 1}}, 300)
    finally:
        w.close()
    assert reply["status"] == "ok" and reply["torch"], reply
    code = ("import pickle, sys\n"
            "reply = pickle.loads(sys.stdin.buffer.read())\n"
            "print(sorted(m for m in ('torch', 'triton', 'numpy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(reply), capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.decode().strip() == "[]"
