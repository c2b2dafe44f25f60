"""benchmarks/probe_configs.py drives the product's engine: a plan becomes one experiment whose
studies evaluate the plan's configs and nothing else (sampler none), every config the space
accepts has an MLflow child run, and one it refuses is reported with the space's reason."""
import json
import os

import pytest
import torch

from benchmarks import engine
from benchmarks import probe_configs as pc

SOFTMAX = {"rows": 4, "cols": 64, "dtype": "float32"}
IN_REGISTERS = {"ONLINE": False, "BLOCK": 64, "ROWS": 1, "num_warps": 4, "num_stages": 1}
ONLINE = {"ONLINE": True, "BLOCK": 16, "ROWS": 1, "num_warps": 4, "num_stages": 1}
REFUSED = dict(IN_REGISTERS, BLOCK=32)  # in registers, BLOCK must be the padded row
PLAN = [{"kernel": "softmax", "label": "softmax 4x64", "problem": SOFTMAX,
         "configs": [IN_REGISTERS, REFUSED, ONLINE, dict(IN_REGISTERS)]}]


def test_a_plan_is_one_experiment_of_its_configs_and_nothing_else():
    probe = pc.build(PLAN, engine.target("cpu-interpreter"), "cudagraph", "probe-test")
    data = probe.experiment
    assert data["search"]["sampler"] == "none" and data["search"]["kernel_starts"] is False
    assert "samples" not in data["search"] and data["timing"]["clock"] == "cudagraph"
    [entry] = data["kernels"]
    assert entry["start_points"] == [IN_REGISTERS, ONLINE]  # the refused one left out, the repeat once
    assert data["search"]["top_k"] >= 2  # every config re-timed beside the peer
    exp, _ = engine.load(data)  # validated as an experiment file is
    [study] = exp.studies()
    assert study.budget() == 2 and study.start_points == [IN_REGISTERS, ONLINE]
    assert exp.search.sampler == "none" and exp.timing.clock == "cudagraph"
    assert [c["item"] for c in probe.configs] == [0] * 4 and probe.swept == [0]
    assert "in-registers needs BLOCK" in probe.configs[1]["error"] and "launched" not in probe.configs[1]
    assert probe.configs[3]["launched"] == probe.configs[0]["launched"] == IN_REGISTERS


def test_a_gemm_study_re_times_its_configs_and_the_vendor_configs():
    plan = json.loads(open(os.path.join(os.path.dirname(__file__), "..", "benchmarks", "data",
                                        "stage_b_plan.json")).read())
    probe = pc.build(plan, engine.target("h100"), "auto", "probe-stage_b")
    exp, _ = engine.load(probe.experiment)
    studies = list(exp.studies())
    assert [st.budget() for st in studies] == [len(item["configs"]) for item in plan]
    # the engine adds a built-in GEMM's vendor configs on top of the budget: they are re-timed too
    # (684x5145x3282 bf16: cuBLAS, and cuBLAS on padded copies: N is misaligned)
    assert exp.search.top_k == max(len(item["configs"]) for item in plan) + 2
    assert not [c for c in probe.configs if "error" in c]


@pytest.mark.parametrize("plan,words", [
    ([dict(PLAN[0], kernel="softmaxx")], "unknown kernel 'softmaxx'"),
    ([dict(PLAN[0], problem={"rows": 4})], "cols"),
    ([PLAN[0], dict(PLAN[0], label="again")], "the kernel and problem of item 0"),
])
def test_a_plan_the_engine_cannot_sweep_is_one_message(plan, words):
    with pytest.raises(pc.PlanError, match=words):
        pc.build(plan, engine.target("cpu-interpreter"))


def test_a_bad_plan_file_is_one_message_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "plan.json"
    for text, words in [("{", "not a JSON file"), ("[]", "non-empty list"),
                        ('[{"kernel": "softmax", "configs": [{}]}]', "item 0 must have kernel, problem")]:
        bad.write_text(text)
        with pytest.raises(pc.PlanError, match=words):
            pc.read_plan(str(bad))
    if not torch.cuda.is_available():  # the GPU is checked first: one line, exit 2
        assert pc.main(["--plan", str(bad), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err == "probe_configs: needs a CUDA GPU (torch sees none on this machine)"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter sweep; GPU runs use the benchmark itself")
def test_the_engine_evaluates_exactly_the_plan_configs_each_with_a_child_run(tmp_path):
    from mlflow.tracking import MlflowClient

    probe = pc.build(PLAN, engine.target("cpu-interpreter"), "auto", "probe-tiny", concurrency=1)
    found = pc.run(probe, str(tmp_path), log=lambda m: None)
    [study] = found["studies"]
    assert study["counts"] == {"ok": 2} and study["parent_run_id"]
    assert study["proposals"]["proposals"] == 2 and study["proposals"]["projected"] == 0
    rows = found["rows"]
    assert [r["status"] for r in rows] == ["ok", "invalid", "ok", "ok"]
    assert all(r["parent_run_id"] == study["parent_run_id"] for r in rows)
    assert rows[1]["run_id"] is None and "in-registers needs BLOCK" in rows[1]["error"]
    assert rows[0]["run_id"] == rows[3]["run_id"] != rows[2]["run_id"]  # the repeat is one candidate
    assert all(r["measured_by"] == "retime_interleaved" and r["latency_ms"] > 0 and r["clock"]
               for r in rows if r["status"] == "ok")
    client = MlflowClient(found["tracking_uri"])
    children = client.search_runs([client.get_experiment_by_name("probe-tiny").experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{study['parent_run_id']}'")
    assert sorted(r.info.run_id for r in children) == sorted({rows[0]["run_id"], rows[2]["run_id"]})
    assert found["tracking_uri"] == f"sqlite:///{tmp_path}/mlflow.db" and (tmp_path / "exp.yaml").exists()
