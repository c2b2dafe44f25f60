"""What the counters feed into (CPU, no ncu): the steering rules and the searcher that takes their
proposals, the finalists chosen after re-timing, the experiment's `profile` section, and the
sweep's logging of profiled finalists to MLflow."""
import pytest

from kernelevolve.kernels.matmul import MatmulProblem
from kernelevolve.search_spaces.matmul import space
from test_profile_cli import _store
from kernelevolve.tuner.execution.counters import finalists, log_profiles
from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.search import steering
from kernelevolve.tuner.search.constrained import ConstrainedSearch
from kernelevolve.tuner.search.space import config_key

H100_GEMM = space(MatmulProblem(M=4096, N=4096, K=4096, dtype="bfloat16"), profile("h100"))
# a config of the space as the searcher hands it out: every parameter named, the Hopper switches
# added later (EPILOGUE_SUBTILE, FLATTEN) at their defaults
BEST = H100_GEMM.complete({"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 128, "GROUP_M": 4, "SPLIT_K": 1,
                           "SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "TMA": False,
                           "WARP_SPECIALIZE": False, "num_warps": 4, "num_stages": 3})


def _changed(cfg):
    return {k: v for k, v in cfg.items() if BEST[k] != v}


def test_a_latency_bound_gemm_gets_more_stages_and_warps():
    got = steering.proposals("latency-bound", {"ncu_occupancy_pct": 40}, BEST, H100_GEMM)
    assert _changed(got[0]) == {"num_stages": 4} and _changed(got[1]) == {"num_warps": 8}
    assert _changed(got[-1]) == {"num_stages": 4, "num_warps": 8}  # both moves together
    assert all(not H100_GEMM.violations(c) for c in got)


def test_an_occupancy_limited_gemm_gets_smaller_tiles():
    got = steering.proposals("latency-bound", {"ncu_occupancy_pct": 12}, BEST, H100_GEMM)
    assert {"BLOCK_M": 64} in [_changed(c) for c in got]


def test_proposals_skip_what_was_evaluated_and_what_breaks_a_constraint():
    stages = {**BEST, "num_stages": 4}
    got = steering.proposals("latency-bound", {}, BEST, H100_GEMM, seen={config_key(stages)})
    assert stages not in got and BEST not in got
    assert steering.proposals("unknown", {}, BEST, H100_GEMM) == []
    assert steering.apply(H100_GEMM, {**BEST, "num_stages": 5}, ("num_stages", steering.UP)) is None


def test_launch_bound_split_k_is_undone():
    split = {**BEST, "SPLIT_K": 2}
    got = steering.proposals("launch-bound", {}, split, H100_GEMM)
    assert got and _changed(got[0]) == {} and got[0]["SPLIT_K"] == 1


def test_the_searcher_evaluates_steered_configs_first_and_tells_the_sampler():
    # a start point written before the Hopper switches existed reads as them off
    old = {k: v for k, v in BEST.items() if k not in ("EPILOGUE_SUBTILE", "FLATTEN")}
    s = ConstrainedSearch(H100_GEMM, "tpe", 0, "k", start_points=[old], valid=None)
    assert s.suggest("t0") == BEST
    s.on_trial_complete("t0", {"objective": -3.0})
    wanted = steering.proposals("latency-bound", {}, BEST, H100_GEMM, s.seen.copy())
    assert len(wanted) == 3
    s.steer(wanted + [BEST])  # an evaluated config handed back is skipped
    told = sum(1 for _, state, _ in s.history() if state == "COMPLETE")
    got = [s.suggest(f"s{i}") for i in range(len(wanted))]
    assert got == wanted and s.proposals()["steered"] == len(wanted)
    for i, _ in enumerate(got):
        s.on_trial_complete(f"s{i}", {"objective": -3.5})
    assert sum(1 for _, state, _ in s.history() if state == "COMPLETE") == told + len(wanted)
    assert s.suggest("next") not in got + [BEST]  # the sampler again, no repeat


def test_finalists_follow_the_retimed_order():
    top = [{"candidate_id": "a", "config": {"X": 1}, "latency_ms": 1.0},
           {"candidate_id": "b", "config": {"X": 2}, "latency_ms": 1.1}]
    retimed = {"status": "ok", "rows": [{"config": {"X": 1}, "latency_ms": 1.3},
                                         {"config": {"X": 2}, "latency_ms": 1.2}]}
    got = finalists(top, retimed, 1)
    assert [(r["candidate_id"], r["latency_ms"], r["measured_by"]) for r in got] == [("b", 1.2, "retime")]
    assert [r["candidate_id"] for r in finalists(top, {"status": "runtime_error"}, 5)] == ["a", "b"]


def test_profile_section_of_an_experiment(tmp_path):
    path = tmp_path / "exp.yaml"
    base = ("name: p\nkernels: [{kernel: matmul, problems: [{M: 64, N: 64, K: 64}]}]\n"
            "targets: [{name: cpu-interpreter}]\n")
    path.write_text(base)
    assert config.load(str(path)).profile.top_k == 0 and config.load(str(path)).profile.steer is False
    path.write_text(base + "profile: {top_k: 3, steer: true, steer_every: 8}\n")
    p = config.load(str(path)).profile
    assert (p.top_k, p.steer, p.steer_every, p.calls) == (3, True, 8, 3)
    path.write_text(base + "profile: {topk: 3}\n")
    with pytest.raises(config.ConfigError, match="profile.topk"):
        config.load(str(path))


def test_profiled_finalists_are_logged_on_their_runs(tmp_path):
    uri, client, parent, kid = _store(tmp_path)
    fields = {"bottleneck": "memory-bound", "bottleneck_reason": "memory at 88% of peak",
              "ncu_dram_pct": 86.9, "ncu_memory_pct": 88.3, "ncu_sm_pct": 23.8, "ncu_intensity": 0.5,
              "ncu_tflops": 1.2, "not_a_field": 1.0}
    notes = log_profiles(client, parent, {"abc_00001": {"fields": fields, "files": {"profile.csv": b"x"}},
                                          "zzz_00009": {"error": "no ncu on node n1"}})
    run = client.get_run(kid)
    assert run.data.tags["bottleneck"] == "memory-bound" and run.data.metrics["ncu_dram_pct"] == 86.9
    assert "not_a_field" not in run.data.metrics  # only the schema's declared fields reach MLflow
    assert notes == ["zzz_00009: not profiled: no ncu on node n1"]
    assert "no ncu on node n1" in client.get_run(parent).data.tags["profile_notes"]
    assert {a.path for a in client.list_artifacts(parent, "profile")} == {
        "profile/finalists.csv", "profile/roofline_counters.png"}


def _sweep_and_plan(monkeypatch, results: dict, **profiling):
    """The sweep's profiling module and a GPU study's Plan, with the Ray task that would run ncu replaced by `results`
    (candidate id -> what profile_batch returns for it): the driver's wiring, without Ray or a GPU.
    (module, plan, log lines, the candidate ids of each task started)."""
    import types

    from kernelevolve.tuner.execution import counters

    lines, tasks = [], []

    def remote(records, logged, calls, timeout):
        assert [lg["candidate_id"] for lg in logged] == [r["candidate_id"] for r in records]
        tasks.append(tuple(r["candidate_id"] for r in records))
        return tasks[-1]
    monkeypatch.setattr(counters, "profile_remote", remote)
    monkeypatch.setattr(counters.ray, "get", lambda ref, timeout=None: [results[cid] for cid in ref])
    exp = types.SimpleNamespace(profile=config.Profiling(**profiling))
    study = types.SimpleNamespace(experiment=exp, key="matmul/x/h100", space=H100_GEMM,
                                  target=types.SimpleNamespace(profile=profile("h100")))
    plan = types.SimpleNamespace(study=study, ctx={"kernel_ref": "k", "problem": {}, "hardware": "h100", "bench": {}},
                                 records=[], profiled={}, steered_at=0, steering=False, finishing=False,
                                 searcher=ConstrainedSearch(H100_GEMM, "tpe", 0, "k", valid=None))
    return counters, plan, lines, tasks


def test_the_sweep_profiles_its_finalists_after_the_retiming_in_one_ncu_run(monkeypatch):
    fields = {"bottleneck": "compute-bound", "bottleneck_reason": "SM at 80% of peak"}
    run = {"candidates": 2, "wall_s": 9.5, "passes": 21, "served_s": [6.0, 1.5]}
    results = {"a": {"fields": fields, "run": run}, "b": {"error": "the candidate did not run under ncu: incorrect"}}
    profiling, plan, lines, tasks = _sweep_and_plan(monkeypatch, results, top_k=2)
    top = [{"candidate_id": "a", "config": BEST, "latency_ms": 1.0},
           {"candidate_id": "b", "config": {**BEST, "num_stages": 4}, "latency_ms": 1.1}]
    got = profiling.profile_finalists(plan, top, None, lines.append)
    assert tasks == [("a", "b")]  # the study's finalists: one task, one ncu run
    assert got == results  # each its own outcome: b's failure costs a nothing
    assert lines == ["  matmul/x/h100: a compute-bound: SM at 80% of peak",
                     "  matmul/x/h100: b not profiled: the candidate did not run under ncu: incorrect",
                     "  matmul/x/h100: ncu: 2 candidate(s) in one run, 9.5 s (in the target: 6.0, 1.5 s, "
                     "the first with its start-up; 21 replay passes per kernel at most)"]
    plan.study.experiment.profile = config.Profiling()  # top_k 0: off
    assert profiling.profile_finalists(plan, top, None, lines.append) == {}


def test_a_finalist_out_of_gpu_memory_is_profiled_again_after_the_lane_hands_its_inputs_back(monkeypatch):
    fields = {"bottleneck": "memory-bound", "bottleneck_reason": "DRAM 85%"}
    oom = {"error": "the candidate did not run under ncu: runtime_error: OutOfMemoryError: CUDA out of memory."}
    answers = {"a": [{"fields": fields}], "b": [oom, {"fields": fields}]}  # b: out of memory, then ok
    profiling, plan, lines, tasks = _sweep_and_plan(monkeypatch, {}, top_k=2)
    asked = []

    class Lane:  # the lane actor's handle: request.remote(payload, timeout) -> its reply
        class request:
            @staticmethod
            def remote(payload, timeout):
                asked.append(payload["op"])
                return {"status": "ok", "released_bytes": 30 << 30}

    monkeypatch.setattr(profiling.ray, "get", lambda ref, timeout=None: ref if isinstance(ref, dict)
                        else [answers[cid].pop(0) for cid in ref])
    top = [{"candidate_id": "a", "config": BEST, "latency_ms": 1.0},
           {"candidate_id": "b", "config": {**BEST, "num_stages": 4}, "latency_ms": 1.1}]
    got = profiling.profile_finalists(plan, top, None, lines.append, lane_of=lambda record: Lane)
    assert tasks == [("a", "b"), ("b",)] and asked == ["release"]  # only b again, after the release
    assert got == {"a": {"fields": fields}, "b": {"fields": fields}}
    assert "1 finalist(s) ran out of GPU memory under ncu; the lane handed back 30.0 GiB" in "\n".join(lines)
    # without a lane (a sweep on Ray tasks) the failure is recorded as it came
    answers.update(a=[{"fields": fields}], b=[oom])
    got = profiling.profile_finalists(plan, top, None, lines.append)
    assert got["b"] == oom


def test_the_evaluator_releases_its_cached_inputs_on_request():
    from kernelevolve.tuner.measure.evaluate import Evaluator

    ev = Evaluator()
    reply = ev.handle({"op": "release"})
    assert reply["status"] == "ok" and reply["released_bytes"] == 0  # the CPU: nothing held on a GPU


def test_steering_profiles_the_best_so_far_and_queues_the_rules_proposals(monkeypatch):
    fields = {"bottleneck": "latency-bound", "bottleneck_reason": "both under 60%", "ncu_occupancy_pct": 40}
    profiling, plan, lines, tasks = _sweep_and_plan(monkeypatch, {"best": {"fields": fields}}, steer=True,
                                                    steer_every=2)
    plan.records = [{"candidate_id": "slow", "status": "ok", "latency_ms": 2.0, "config": {**BEST, "BLOCK_N": 64}}]
    profiling.maybe_steer(plan, lines.append)
    assert not plan.steering and plan.searcher.steered == []  # fewer than steer_every candidates
    plan.records.append({"candidate_id": "best", "status": "ok", "latency_ms": 1.0, "config": BEST})
    profiling.steer(plan, plan.records[1], lines.append)  # what maybe_steer's thread runs
    assert [_changed(c) for c in plan.searcher.steered][:2] == [{"num_stages": 4}, {"num_warps": 8}]
    assert "best so far best latency-bound" in lines[-1] and "best" in plan.profiled and tasks == [("best",)]


def test_a_journal_from_before_the_hopper_switches_is_replayed_as_them_off():
    old = {k: v for k, v in BEST.items() if k not in ("EPILOGUE_SUBTILE", "FLATTEN")}
    s = ConstrainedSearch(H100_GEMM, "tpe", 0, "k", valid=None)
    assert s.replay([{"config": old, "status": "ok", "objective": -3.2, "candidate_id": "a"}]) == 1
    assert s.seen[config_key(BEST)] == -3.2  # the same kernel as BEST: never proposed again
