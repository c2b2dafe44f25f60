"""benchmarks/profile_suite.py's summary, on the CPU: finalists' counters logged to an MLflow store as
the sweep logs them (tuner.execution.counters.log_profiles), exported by export_runs.py, then read
back into rows with labels, roofline positions and agreement; steering's candidates-to-2% count;
the experiment file holding exactly the two suites' studies."""
import json
import os

import pytest
import yaml

from benchmarks import profile_summary as summary
from benchmarks.export_runs import export
from benchmarks.profile_suite import EXPERIMENT, STEER_STUDIES, copy_view, merge, read_runs, subset
from kernelevolve.tuner.execution.counters import log_profiles
from kernelevolve.tuner.profile import bottleneck, parse
from test_profile_cli import _candidate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NCU = os.path.join(ROOT, "tests", "data", "ncu")


def _fields(csv_name: str, latency_ms: float, flops: float) -> dict:
    """A recorded H100 raw page (tests/data/ncu) as the profile fields the sweep logs."""
    with open(os.path.join(NCU, csv_name), encoding="utf-8") as fh:
        fields = parse.summarize(parse.parse_raw_csv(fh.read()), 3, latency_ms=latency_ms, flops=flops)
    fields["bottleneck"], fields["bottleneck_reason"] = bottleneck.label(fields)
    fields["profile_latency_ms"] = latency_ms
    return fields


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A store with one bf16 GEMM study on the H100: two finalists profiled from real recorded counters
    (the 4096^3 GEMM, compute-bound; the split-K GEMM, memory-bound by an on-chip unit while right of
    the ridge by DRAM bytes), one that ncu could not profile. Exported, then read back."""
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("profile-suite")
    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    exp = client.create_experiment("profile-h100", artifact_location=str(tmp / "artifacts"))
    parent = client.create_run(exp, tags={"kernelevolve.role": "study", "hardware": "h100",
                                          "kernelevolve.study": "matmul/bf16/h100",
                                          "status_counts": json.dumps({"ok": 24})}).info.run_id
    client.log_param(parent, "problem.dtype", "bfloat16")  # the roofline reads the bf16 ridge
    fast = _candidate(client, exp, parent, {"BLOCK_M": 128, "BLOCK_N": 256, "SPLIT_K": 1}, cid="c_00001")
    split = _candidate(client, exp, parent, {"BLOCK_M": 128, "BLOCK_N": 128, "SPLIT_K": 4}, cid="c_00002")
    _candidate(client, exp, parent, {"BLOCK_M": 64, "BLOCK_N": 64, "SPLIT_K": 1}, cid="c_00003")
    results = {"c_00001": {"fields": _fields("gemm_bf16_4096.csv", 0.194, 2 * 4096.0 ** 3), "files": {}},
               "c_00002": {"fields": _fields("gemm_bf16_1024x1024x16384_splitk4.csv", 0.08749,
                                             2 * 1024.0 * 1024 * 16384), "files": {}},
               "c_00003": {"error": "ncu did not finish within 120 s (killed)"}}
    log_profiles(client, parent, results)
    gz = str(tmp / "runs.jsonl.gz")
    export(str(tmp / "mlflow.db"), gz)
    runs = read_runs(gz)
    return runs, {"fast": fast, "split": split, "folder": str(tmp)}


def test_every_profiled_finalist_is_a_row_with_its_roofline_verdict(exported):
    runs, ids = exported
    rows = {r["run_id"]: r for r in summary.finalist_rows(runs)}
    assert set(rows) == {ids["fast"], ids["split"]}  # the unprofiled finalist has no counters
    fast, split = rows[ids["fast"]], rows[ids["split"]]
    assert (fast["label"], fast["roofline_side"], fast["agrees"]) == ("compute-bound", "compute", True)
    assert fast["config"] == {"BLOCK_M": "128", "BLOCK_N": "256", "SPLIT_K": "1"}
    assert fast["latency_ms"] == pytest.approx(0.194) and fast["why"] == ""
    assert fast["ridge"] == pytest.approx(742e12 / 3.02e12)
    # docs/review.md's worked case: memory unit 62% busy, DRAM 29%, 441 flop per DRAM byte
    assert (split["label"], split["roofline_side"], split["agrees"]) == ("memory-bound", "compute", False)
    assert split["counters"]["ncu_intensity"] == pytest.approx(441, rel=0.02)
    assert "on-chip" in split["why"] and "DRAM 29%" in split["why"]


def test_agreement_and_the_finalists_that_were_not_profiled(exported):
    runs, _ = exported
    a = summary.agreement(summary.finalist_rows(runs))
    assert (a["profiled"], a["with_position"], a["agree"], a["disagree"]) == (2, 2, 1, 1)
    assert a["pct_of_placed"] == 0.5 and not a["met"]
    assert a["labels"] == {"compute-bound": 1, "memory-bound": 1}
    missing = summary.not_profiled(runs)
    assert [(m["candidate_id"], m["why"]) for m in missing] == [("c_00003", "ncu did not finish within 120 s (killed)")]


def test_a_finalist_without_flops_has_no_position_and_is_not_counted_as_agreeing():
    parent = {"run_id": "p", "tags": {"kernelevolve.role": "study", "kernelevolve.study": "jagged/x/h100",
                                      "hardware": "h100"}, "params": {"problem.dtype": "bfloat16"}}
    kid = {"run_id": "k", "parent_run_id": "p", "params": {"BLOCK": "64"},
           "tags": {"bottleneck": "memory-bound", "candidate_id": "j1"},
           "metrics": {"latency_ms": 0.1, "ncu_memory_pct": 90.0, "ncu_sm_pct": 10.0}}
    rows = summary.finalist_rows([parent, kid])
    assert rows[0]["agrees"] is None and rows[0]["roofline_side"] is None
    a = summary.agreement(rows)
    assert (a["with_position"], a["no_position"], a["pct_of_placed"], a["pct_of_profiled"]) == (0, 1, None, 0.0)


def _rec(ms, cfg, status="ok", impl="triton"):
    return {"status": status, "latency_ms": ms, "impl": impl, "config": {"BLOCK": cfg}}


def test_candidates_to_two_percent_pool_each_configs_latency_and_leave_out_the_vendor_path():
    off = [_rec(0.5, "vendor", impl="vendor"), _rec(1.3, 1), _rec(None, 2, "invalid"), _rec(1.2, 3),
           _rec(1.01, 4), _rec(1.0, 5)]
    # config 4 measured 1.03 here: pooled with off's 1.01 it is within 2% in both arms alike
    on = [_rec(0.5, "vendor", impl="vendor"), _rec(1.25, 6), _rec(1.03, 4)]
    arms = {("gemm", 0, False): {"records": off, "steered": 0},
            ("gemm", 0, True): {"records": on, "steered": 2},
            ("gemm", 1, False): {"records": [_rec(2.0, 1), _rec(1.0, 5)], "steered": 0},
            ("gemm", 1, True): {"records": [_rec(1.5, 7), _rec(1.6, 8)], "steered": 1},
            ("gemm", 2, False): {"records": [_rec(1.1, 1), _rec(1.0, 5)], "steered": 0},
            ("gemm", 2, True): {"records": [_rec(1.0, 5), _rec(1.1, 1)], "steered": 0}}
    rows = summary.steering_rows(arms)
    # best 1.0 ms of the Triton configs (cuBLAS's 0.5 is not a config the search could find)
    assert [(r["seed"], r["best_ms"], r["off"], r["on"]) for r in rows] == [
        (0, 1.0, 3, 2), (1, 1.0, 2, None), (2, 1.0, 2, 1)]
    v = summary.steering_verdict(rows)["per_study"]["gemm"]
    # seed 1's steered arm never got within 2% (one past its 2 searched candidates: 3); seed 2
    # evaluated no steered config, so its fewer candidates are completion order: a tie
    assert (v["fewer_with_steering"], v["more_with_steering"], v["ties"]) == (1, 1, 1)
    assert (v["median_off"], v["median_on"], v["seeds_steered"]) == (2, 2, 2)
    assert not v["helps"] and summary.steering_verdict(rows)["keep_on_for"] == []


def test_markdown_names_each_disagreement_with_its_counters(exported):
    runs, _ = exported
    rows = summary.finalist_rows(runs)
    text = summary.markdown({"profile": {"rows": rows, "agreement": summary.agreement(rows), "expected": 3,
                                         "not_profiled": summary.not_profiled(runs), "device": "H100"}})
    assert "1 of 2 with a position (**50%**, target 90%: not met)" in text
    assert "| memory-bound | compute (DRAM ridge 246 flop/B) |" in text and "c_00003: ncu did not finish" in text


def test_the_experiment_holds_the_gemm_and_ops_suites_and_the_steer_studies():
    from benchmarks import ops_bench
    from kernelevolve.tuner.experiment import config

    with open(EXPERIMENT, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    problems = {(e["kernel"], json.dumps(p, sort_keys=True)) for e in data["kernels"] for p in e["problems"]}
    ops = {(c.kernel, json.dumps(c.fields, sort_keys=True)) for c in ops_bench.cases()}
    assert ops <= problems and len(ops) == 16
    with open(os.path.join(ROOT, "docs", "results", "engine", "gemm_suite.json"), encoding="utf-8") as fh:
        gemm_suite = {r["study"] for r in json.load(fh)["rows"] if r.get("study")}
    keys = {s.key for s in config.load(EXPERIMENT).studies()}
    assert len(gemm_suite) == 14 and gemm_suite <= keys and len(keys) == 30
    assert len(subset(data, STEER_STUDIES)["kernels"]) == len(STEER_STUDIES)
    with pytest.raises(SystemExit, match="not in profile-h100"):
        subset(data, [("softmax", {"rows": 1, "cols": 1, "dtype": "bfloat16"})])


def test_the_docs_view_is_the_study_with_a_disagreement(exported, tmp_path):
    runs, ids = exported
    study = copy_view(ids["folder"], summary.finalist_rows(runs), str(tmp_path), print)
    assert study == "matmul/bf16/h100"
    table = (tmp_path / "view_finalists.csv").read_text()
    assert table.startswith("candidate_id,run_id,bottleneck,roofline_agrees") and "c_00002" in table
    assert (tmp_path / "view_roofline_counters.png").read_bytes()[:4] == b"\x89PNG"


def test_shards_and_a_second_steer_run_merge_into_one_result(tmp_path):
    def finalist(run_id, agrees):
        return {"run_id": run_id, "study": run_id, "latency_ms": 1.0, "label": "memory-bound", "agrees": agrees}

    def profile(*rows):
        return {"rows": list(rows), "expected": 3, "studies": 1, "not_profiled": [], "view_study": "s"}

    def steer(seed, off, on, **settings):
        rows = [{"study": "gemm", "seed": seed, "best_ms": 1.0, "off": off, "on": on, "searched_off": 48,
                 "searched_on": 48, "steered": 3}]
        return {"samples": 48, "steer_every": 8, "concurrency": 4, "studies": ["gemm"], **settings,
                "rows": rows, "skipped": [], "labels": {}}
    results = [{"profile": profile(finalist("a", True), finalist("b", False)), "steering": steer(0, 20, 10)},
               {"profile": profile(finalist("c", True)), "steering": steer(1, 30, 12)}]
    paths = []
    for i, res in enumerate(results):
        paths.append(str(tmp_path / f"{i}.json"))
        with open(paths[-1], "w") as fh:
            json.dump(res, fh)
    merged = merge(paths)
    a = merged["profile"]["agreement"]
    assert (a["profiled"], a["agree"], merged["profile"]["expected"], merged["profile"]["studies"]) == (3, 2, 6, 2)
    assert merged["steering"]["seeds"] == [0, 1]
    v = merged["steering"]["verdict"]["per_study"]["gemm"]
    assert (v["seeds"], v["median_off"], v["median_on"], v["helps"]) == (2, 25, 11, True)
    with open(paths[1], "w") as fh:
        json.dump({"steering": steer(1, 30, 12, samples=24)}, fh)
    with pytest.raises(SystemExit, match="samples"):
        merge(paths)
