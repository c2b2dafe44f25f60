"""A sweep is reproducible from its YAML and seed: the same experiment, swept again at concurrency 1,
proposes the same candidates in the same order, and its parent run records what that needs.

What "the same" can mean: TPE's first proposals are seeded random draws, exact whatever is
measured; past its start-up trials its proposals are a function of the seed AND of the results it
was told, and measured latencies differ from run to run. So the real sweeps below stay within the
start-up phase, and the searcher is checked without Ray for the model phase, given equal results.
"""
import math

import pytest
import yaml
from mlflow.tracking import MlflowClient

import tiny_sweep
from kernelevolve.kernels.matmul import MatmulProblem
from kernelevolve.search_spaces.matmul import space
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.search.constrained import ConstrainedSearch
from kernelevolve.tuner.search.space import config_key

pytestmark = pytest.mark.slow


def _proposals(records):
    return [(r["status"], config_key(r["config"])) for r in records]


def test_same_yaml_and_seed_propose_the_same_candidates_in_the_same_order():
    first, again = tiny_sweep.tiny("base"), tiny_sweep.tiny("again")
    assert first["root"] != again["root"]
    evaluated = [r for r in first["records"] if r["status"] != "invalid"]
    assert len(evaluated) == 5 and all(r["status"] == "ok" for r in evaluated)
    assert _proposals(first["records"]) == _proposals(again["records"])


def test_parent_run_records_what_a_rerun_needs():
    run = tiny_sweep.tiny("base")
    client = MlflowClient(tracking_uri=run["uri"])
    exp = client.get_experiment_by_name("tiny")
    [parent] = client.search_runs([exp.experiment_id], "tags.`kernelevolve.role` = 'study'")
    p, t = parent.data.params, parent.data.tags
    assert (p["sampler"], p["seed"], p["samples"], p["concurrency"]) == ("tpe", "4", "5", "1")
    assert p["sampler_resolved"] == "tpe"  # a named sampler is the one that searched
    # timing.clock: auto, resolved before the search; the interpreter's only clock is wall time
    assert (p["clock"], p["clock_resolved"]) == ("auto", "wall") and "clock_estimate_us" not in p
    timed = [r for r in run["records"] if r["status"] == "ok"]
    assert timed and all(r["clock"] == "wall" for r in timed)  # each candidate's record says so too
    [summary] = run["summaries"]
    assert (summary["clock"], summary["clock_rule"]) == ("wall", "interpreter")
    kids = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert {c.data.tags.get("clock") for c in kids if c.data.tags.get("status") == "ok"} == {"wall"}
    assert {k: p[f"problem.{k}"] for k in ("batch", "features", "dim", "dtype")} == \
        {"batch": "16", "features": "6", "dim": "64", "dtype": "float16"}
    for tag in ("optuna", "ray", "triton", "torch", "git_commit", "kernel_ref"):
        assert t.get(tag), tag
    assert len(t["kernel_source_sha"]) == 64
    path = client.download_artifacts(parent.info.run_id, "experiment.yaml", run["root"])
    with open(path) as fh:
        logged = yaml.safe_load(fh)
    assert logged["search"]["seed"] == 4 and logged["search"]["sampler"] == "tpe"
    assert logged["resolved_kernels"] == ["kernelevolve.search_spaces.interaction:TUNABLE"]


def _drive(seed: int, n: int, tmp_path) -> list[str]:
    """n candidates through the searcher, each told a result that depends on its config only."""
    sp = space(MatmulProblem(M=4096, N=4096, K=4096, dtype="bfloat16"), profile("h100"))
    s = ConstrainedSearch(sp, "tpe", seed, "k")
    out = []
    for i in range(n):
        cfg = s.suggest(f"t{i}")
        out.append(config_key(cfg))
        value = -3 + 0.1 * math.log2(cfg["BLOCK_M"] * cfg["BLOCK_N"]) - 0.05 * cfg["num_stages"]
        s.on_trial_complete(f"t{i}", {"objective": value})
    return out


def test_model_phase_is_a_function_of_seed_and_results(tmp_path):
    # 15 candidates and the rejected proposals around them: well past TPE's 10 start-up trials.
    a, b = _drive(0, 15, tmp_path), _drive(0, 15, tmp_path)
    assert a == b
    assert _drive(1, 15, tmp_path) != a


def _objective(cfg: dict) -> float:
    return -3 + 0.1 * math.log2(cfg["BLOCK_M"] * cfg["BLOCK_N"]) - 0.05 * cfg["num_stages"]


def _concurrent(window, at_once: int, n: int, order_seed: int) -> list[str]:
    """n candidates, at most `at_once` out, each ending at a random moment among those out: what a
    sweep's trials do. Returns the proposals in the order they were made."""
    import random

    sp = space(MatmulProblem(M=4096, N=4096, K=4096, dtype="bfloat16"), profile("h100"))
    s = ConstrainedSearch(sp, "tpe", 0, "k", window=window)
    rng = random.Random(order_seed)
    out, running, asked = [], {}, 0
    while asked < n or running:
        while len(running) < at_once and asked < n:
            cfg = s.suggest(f"t{asked}")
            if cfg is None:
                break  # ordered: the oldest result it must know has not ended yet
            running[f"t{asked}"] = cfg
            out.append(config_key(cfg))
            asked += 1
        assert running, "the searcher waits for a result while nothing is out"
        ended = rng.choice(sorted(running))
        s.on_trial_complete(ended, {"objective": _objective(running.pop(ended))})
    return out


def test_ordered_results_make_the_search_independent_of_what_runs_at_once():
    """With results told in proposal order, 8 out at once ending in any order propose exactly
    what one at a time proposes (the sweep against its one-at-a-time reference, or two runs)."""
    alone = _concurrent(8, 1, 24, 0)
    assert _concurrent(8, 8, 24, 1) == alone
    assert _concurrent(8, 8, 24, 2) == alone
    assert _concurrent(8, 3, 24, 3) == alone
    assert len(set(alone)) == 24


def test_results_told_as_they_arrive_make_two_runs_two_searches():
    """What ordered results are for: told as they end, the order they end in steers TPE."""
    assert _concurrent(None, 8, 24, 1) != _concurrent(None, 8, 24, 2)


def test_an_ordered_study_waits_for_its_oldest_result_only():
    sp = space(MatmulProblem(M=4096, N=4096, K=4096, dtype="bfloat16"), profile("h100"))
    s = ConstrainedSearch(sp, "tpe", 0, "k", window=2)
    a, b = s.suggest("a"), s.suggest("b")
    assert a and b
    s.on_trial_complete("b", {"objective": -3.0})
    assert s.suggest("c") is None  # "c" must know "a"'s result, which has not ended
    s.on_trial_complete("a", {"objective": -2.0})
    assert s.suggest("c")
    assert [state for _, state, _ in s.history()] == ["COMPLETE", "COMPLETE", "RUNNING"]
