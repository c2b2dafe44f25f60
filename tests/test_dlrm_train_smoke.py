"""benchmarks/dlrm_train.py --smoke on the CPU: the DLRM-style model's inference and training step
through torch eager, torch.compile and our registered operators inside torch.compile (the Triton
interpreter) agree with an fp32 run, logits and every gradient; our ops take the tuned table's
configs; the sweep path writes a table through the product's engine and export."""
import importlib.util
import json
import os
import sys

import pytest
import torch

from kernelevolve.kernels import interaction, tuned

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="--smoke runs our kernels on the CPU interpreter, which must be chosen before "
    "the first kernel import; on a GPU machine the kernels are compiled: run benchmarks/dlrm_train.py itself there")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, ROOT)
    spec = importlib.util.spec_from_file_location("dlrm_train_benchmark", os.path.join(ROOT, "benchmarks", "dlrm_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    tuned.clear_table()


def _table(tmp_path, entries):
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"schema": 1, "entries": entries}))
    return str(path)


def test_every_path_agrees_with_fp32_and_uses_the_table(bench, tmp_path):
    cfg = dict(interaction.DEFAULT_CONFIG, BLOCK_D=16, SAMPLES_PER_PROGRAM=1, num_stages=1)
    entry = {"kernel": "dot_interaction", "problem": {"batch": 32, "features": 4, "dim": 16, "dtype": "float32"},
             "dtype": "float32", "hardware": "cpu-interpreter", "interpreter": True, "config": cfg}
    out = tmp_path / "out"
    assert bench.main(["--smoke", "--out", str(out), "--tuned", _table(tmp_path, [entry]), "--check-only"]) == 0
    res = json.loads((out / "dlrm_train.json").read_text())
    [batch] = res["batches"]
    assert set(batch["paths"]) == {"eager", "compile", "ours compile"} and res["ok"]
    for row in batch["paths"].values():
        assert row["ok"] and row["logits_rel_error"] < 1e-4 and row["grad_rel_error"] < 1e-4
        assert set(row["grad_rel_errors"]) >= {"tables", "bottom0.w", "top0.w", "top2.b"}
    used = [v for key, v in batch["our_configs"].items() if key.startswith("dot_interaction ")]
    assert used == [{"config": cfg, "source": "table"}]  # the table's entry, looked up at the op's first call
    assert {v["source"] for key, v in batch["our_configs"].items() if key.startswith("gemm_epilogue ")} == {"default"}
    assert "INTERPRETER" in (out / "dlrm_train.md").read_text()


def test_training_ops_name_every_backward_gemm(bench):
    from benchmarks import dlrm, dlrm_train_configs

    s = dlrm.SMOKE
    ops = {name: (kernel, p.model_dump()) for name, kernel, p in dlrm_train_configs.train_ops(s, 32)}
    assert "bottom0.dx" not in ops  # the dense features need no gradient
    assert ops["top0.dx"][1]["N"] == ops["top0"][1]["K"] == dlrm.aligned(16 + 6)
    assert ops["top0.dw"][1] == {"M": 24, "N": s["top"][0], "K": 32, "dtype": "float32"}
    assert ops["embedding_bag.dw"] == ("embedding_bag_bwd", ops["embedding_bag"][1])


def test_sweeps_of_one_batch_size_each_add_up_to_one_table(bench, tmp_path):
    from benchmarks import dlrm_train_configs

    a = {"kernel": "matmul", "problem": {"M": 1}, "hardware": "h100", "config": {"x": 1}}
    b = {"kernel": "matmul", "problem": {"M": 2}, "hardware": "h100", "config": {"x": 2}}
    path = _table(tmp_path, [a, b])
    table = dlrm_train_configs.merged(path, {"schema": 1, "entries": [dict(b, config={"x": 3})]})
    assert table["entries"] == [a, dict(b, config={"x": 3})]


@pytest.mark.slow
def test_the_sweep_writes_a_table_of_every_op(bench, tmp_path):
    assert bench.main(["--smoke", "--out", str(tmp_path), "--sweep-only", "--configs", "2", "--threads", "1"]) == 0
    table = json.loads((tmp_path / "dlrm_train.tuned.json").read_text())
    kernels = {e["kernel"] for e in table["entries"]}
    assert kernels == {"gemm_epilogue", "matmul", "embedding_bag_fwd", "embedding_bag_bwd", "dot_interaction"}
    assert all(e["interpreter"] for e in table["entries"]) and (tmp_path / "dlrm_train_32.mlflow.db").exists()
