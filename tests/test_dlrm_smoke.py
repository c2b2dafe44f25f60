"""benchmarks/dlrm.py --smoke on the CPU: the DLRM-style model's three paths (torch eager,
torch.compile, our kernels in the interpreter) agree with an fp32 run; our op configs come from
one sweep of the product's engine over every op (target cpu-interpreter, each op's study in
MLflow), or from a tuned table when one is given."""
import importlib.util
import json
import os

import pytest
import torch

from kernelevolve.kernels import interaction, tuned

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    torch.cuda.is_available(), reason="--smoke runs our kernels on the CPU interpreter, which must be chosen before "
    "the first kernel import; on a GPU machine the kernels are compiled: run benchmarks/dlrm.py itself there")]

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "dlrm.py")


@pytest.fixture(scope="module")
def dlrm():
    spec = importlib.util.spec_from_file_location("dlrm_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    tuned.clear_table()


def _run(dlrm, out, *extra):
    assert dlrm.main(["--smoke", "--out", str(out), "--configs", "3", "--threads", "1", *extra]) == 0
    res = json.loads((out / "dlrm.json").read_text())
    assert res["ok"] and res["interpreter"] and (out / "dlrm.md").exists()
    [batch] = res["batches"]
    assert set(batch["paths"]) == {"eager", "compile", "ours"}
    for row in batch["paths"].values():
        assert row["ok"] and row["rel_error_vs_fp32"] < 1e-4 and row["samples_per_s"] > 0
        assert row["max_abs_prob_diff_vs_eager"] < 1e-4
    return res, batch["plan"]


def test_three_paths_agree_with_searched_kernels(dlrm, tmp_path):
    res, plan = _run(dlrm, tmp_path)
    s = res["sizes"]
    assert set(plan) == {"bottom0", "bottom1", "top0", "top1", "top2", "embedding_bag", "interaction"}
    assert res["experiment"] == "dlrm-smoke" and res["tracking_uri"].startswith("sqlite:///")
    assert (tmp_path / "dlrm.mlflow.db").exists()
    studies = set()
    for p in plan.values():
        assert p["source"].startswith("search"), p["source"]
        prov = p["search"]
        assert prov["configs"].get("ok", 0) > 0 and prov["parent_run_id"] and prov["tuning_s"] > 0
        assert prov["experiment"] == res["experiment"] and prov["tracking_uri"] == res["tracking_uri"]
        assert prov["study"].endswith("/cpu-interpreter")
        studies.add(prov["study"])
    # one study per distinct op problem (the smoke's bottom1 and top1 are both 32x16x32 + relu)
    problems = {json.dumps([p["kernel"], p["problem"]], sort_keys=True) for p in plan.values()}
    assert len(studies) == len(problems) == 6
    assert plan["bottom1"]["search"]["parent_run_id"] == plan["top1"]["search"]["parent_run_id"]
    # dense vector + the 4 * 3 / 2 pairs, padded to 8 elements (16-byte rows in bf16)
    assert plan["top0"]["problem"]["K"] == dlrm.aligned(s["dim"] + 6) == 24
    assert plan["embedding_bag"]["problem"]["num_bags"] == s["tables"] * res["batches"][0]["batch"]
    assert "INTERPRETER" in (tmp_path / "dlrm.md").read_text()


def test_a_tuned_table_gives_the_configs_it_has(dlrm, tmp_path):
    cfg = dict(interaction.DEFAULT_CONFIG, BLOCK_D=16, SAMPLES_PER_PROGRAM=1, num_stages=1)
    entry = {"kernel": "dot_interaction", "problem": {"batch": 32, "features": 4, "dim": 16, "dtype": "float32"},
             "dtype": "float32", "hardware": "cpu-interpreter", "interpreter": True, "config": cfg}
    (tmp_path / "tuned.json").write_text(json.dumps({"schema": 1, "entries": [entry]}))
    _, plan = _run(dlrm, tmp_path, "--tuned", str(tmp_path / "tuned.json"))
    assert plan["interaction"]["source"] == "table" and plan["interaction"]["config"] == cfg
    assert plan["top0"]["source"] == "default (no table entry)"
