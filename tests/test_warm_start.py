"""Warm start: `search: {warm_start: tuned.json}` evaluates the table's configs for the nearest
shapes of the same kernel, dtype and hardware first, after filtering them through the new
study's space (parameters, domains, constraints); the parent run records what was enqueued."""
import json
import textwrap

import pytest
import yaml
from mlflow.tracking import MlflowClient

import tiny_sweep
from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.deploy import export
from kernelevolve.tuner.cli import main

B = {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 1, "SPLIT_K": 1, "SPLIT_K_REDUCE": "atomic",
     "PERSISTENT": False, "num_warps": 4, "num_stages": 1}
NEAR, FAR = dict(B, BLOCK_N=32), dict(B, BLOCK_M=16, BLOCK_K=16)
EXP = """
name: warm
kernels:
  - kernel: matmul
    problems: [{M: 64, N: 48, K: 80, dtype: float16}]
targets: [{name: cpu-interpreter}]
search: {sampler: tpe, samples: 4, concurrency: 1, seed: 0, timeout_s: 120, top_k: 1, warm_start: tuned.json}
timing: {wall_reps: 1, retime_rounds: 1}
tracking: {uri: sqlite:///store/mlflow.db}
"""


def _entry(problem, cfg, hardware="cpu-interpreter", dtype="float16"):
    return {"kernel": "matmul", "problem": dict(problem, dtype=dtype), "config": cfg, "dtype": dtype,
            "hardware": hardware, "interpreter": hardware == "cpu-interpreter", "latency_ms": 1.0,
            "device_match": ["H100"] if hardware == "h100" else [], "run_id": "r"}


ENTRIES = [
    _entry({"M": 512, "N": 512, "K": 512}, FAR),  # far: buckets 3 + 3 + 2 powers of two away
    _entry({"M": 64, "N": 48, "K": 80}, B),  # the very shape
    _entry({"M": 32, "N": 64, "K": 128}, NEAR),  # one power of two away (M)
    _entry({"M": 64, "N": 48, "K": 80}, dict(B, BLOCK_K=64), hardware="h100"),  # another chip
    _entry({"M": 64, "N": 48, "K": 80}, dict(B, BLOCK_K=16), dtype="float32"),  # another dtype
    _entry({"M": 64, "N": 64, "K": 64}, dict(B, SPLIT_K_REDUCE="two_pass")),  # breaks a constraint
    _entry({"M": 64, "N": 64, "K": 128}, dict(B, BLOCK_M=128)),  # outside the interpreter's domain
    _entry({"M": 64, "N": 64, "K": 128}, {k: v for k, v in B.items() if k != "PERSISTENT"}),  # old space
]


def _write(folder, text=EXP, entries=ENTRIES):
    (folder / "tuned.json").write_text(json.dumps({"schema": 1, "entries": entries}))
    (folder / "exp.yaml").write_text(textwrap.dedent(text))
    return str(folder / "exp.yaml")


def test_warm_start_path_is_resolved_and_checked(tmp_path, capsys):
    exp = config.load(_write(tmp_path))
    assert exp.search.warm_start == str(tmp_path / "tuned.json")
    assert yaml.safe_load(config.dump(exp))["search"]["warm_start"] == str(tmp_path / "tuned.json")
    bad = _write(tmp_path, EXP.replace("warm_start: tuned.json", "warm_start: missing.json"))
    with pytest.raises(config.ConfigError, match=r"search\.warm_start: .*missing\.json"):
        config.load(bad)
    (tmp_path / "tuned.json").write_text(json.dumps({"entries": []}))  # no schema: not a table
    (tmp_path / "exp.yaml").write_text(EXP)
    assert main(["run", str(tmp_path / "exp.yaml")]) == 2
    assert "search.warm_start" in capsys.readouterr().err


def test_points_are_nearest_first_and_filtered_through_the_space(tmp_path):
    study = next(config.load(_write(tmp_path)).studies())
    points, notes = export.warm_start_points(str(tmp_path / "tuned.json"), study, limit=8)
    assert points == [B, NEAR, FAR]
    assert len(notes) == 6  # other chips and dtypes are not candidates at all
    why = {json.dumps(n["config"], sort_keys=True): n["why_not"] for n in notes if not n["used"]}
    assert "SPLIT_K_REDUCE matters only" in why[json.dumps(dict(B, SPLIT_K_REDUCE="two_pass"), sort_keys=True)]
    assert "BLOCK_M=128 is not among" in why[json.dumps(dict(B, BLOCK_M=128), sort_keys=True)]
    assert any("are not the space's" in w for w in why.values())
    # by default at most half the budget (4 samples: 2), so the sampler still explores
    assert export.warm_start_points(str(tmp_path / "tuned.json"), study)[0] == [B, NEAR]


@pytest.mark.slow
def test_sweep_evaluates_the_warm_configs_first(tmp_path):
    (tmp_path / "tuned.json").write_text(json.dumps({"schema": 1, "entries": ENTRIES}))
    exp, [summary] = tiny_sweep.run_in(str(tmp_path), EXP)
    records = tiny_sweep.journal(str(tmp_path), "warm")
    # the study's vendor path (torch.mm) first, on top of the budget; then the warm configs
    assert records[0]["config"] == {"IMPL": "vendor"} and records[0]["impl"] == "vendor"
    assert [r["config"] for r in records[1:3]] == [B, NEAR]
    assert summary["counts"].get("ok", 0) == 5
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    e = client.get_experiment_by_name("warm")
    [parent] = client.search_runs([e.experiment_id], "tags.`kernelevolve.role` = 'study'")
    path = client.download_artifacts(parent.info.run_id, "warm_start.json", str(tmp_path))
    with open(path) as fh:
        logged = json.load(fh)
    assert logged["table"] == str(tmp_path / "tuned.json") and logged["configs"] == [B, NEAR]
