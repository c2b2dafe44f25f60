"""`kernelevolve reproduce RUN_ID`: a logged candidate runs again through the sweep's evaluation
path, here; its latency is compared with the logged one; differences in the kernel's source,
Triton, torch or GPU are printed, never hidden; an unknown run is exit 2."""
import json

import pytest
import torch
import triton
from mlflow.tracking import MlflowClient

import tiny_sweep
from kernelevolve.tuner.experiment import registry
from kernelevolve.tuner.deploy import reproduce
from kernelevolve.tuner.cli import main
from kernelevolve.tuner.records.tracking import _value

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store():
    run = tiny_sweep.tiny("base")
    client = MlflowClient(tracking_uri=run["uri"])
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("kernelevolve.role") == "study"]
    best = parent.data.tags["best_candidate_id"]
    [kid] = [r for r in runs if r.data.tags.get("candidate_id") == best]
    return run, client, parent, kid


def test_study_run_carries_the_kernel_source_sha(store):
    _, _, parent, _ = store
    ref = parent.data.tags["kernel_ref"]
    files = registry.kernel_source_files(ref, registry.load(ref))
    assert [f.split("/")[-2:] for f in files] == [["kernels", "interaction.py"], ["kernels", "spec.py"],
                                                  ["kernels", "tuned.py"], ["search_spaces", "interaction.py"]]
    # the kernel modules a template takes code from are hashed too, through the whole package
    fused = registry.resolve_ref("gemm_epilogue")
    assert {"gemm_tiles.py", "matmul.py"} <= {f.split("/")[-1] for f in registry.kernel_source_files(
        fused, registry.load(fused))}
    assert parent.data.tags["kernel_source_sha"] == registry.kernel_source_sha(ref, registry.load(ref))


def test_reproduce_reruns_the_candidate_and_prints_the_ratio(store, capsys):
    run, _, _, kid = store
    assert main(["reproduce", kid.info.run_id, "--uri", run["uri"]]) == 0
    out = capsys.readouterr().out
    assert f"reproduce run {kid.info.run_id}" in out
    assert "now      ok" in out and "(now / logged)" in out
    for check in ("kernel_source_sha", "triton", "torch", "gpu_name", "timing"):
        assert any(line.split()[:2] == [check, "match"] for line in out.splitlines()), (check, out)
    assert "interpreter" in out  # an interpreter run says so


def test_mismatches_are_reported_not_hidden(store, capsys, monkeypatch):
    run, client, parent, kid = store
    logged_ms = kid.data.metrics["latency_ms"]

    def fake_evaluation(logged, seed):  # the real path runs in the test above
        assert logged["config"] == {k: _value(v) for k, v in kid.data.params.items()}
        return {"status": "ok", "latency_ms": 2 * logged_ms, "timing": "interpreter",
                "gpu_name": "none (CPU)", "triton": triton.__version__, "torch": torch.__version__}

    monkeypatch.setattr(reproduce, "evaluate_here", fake_evaluation)
    client.set_tag(parent.info.run_id, "kernel_source_sha", "0" * 64)
    client.set_tag(kid.info.run_id, "triton", "0.0.1")
    try:  # given the study's run id: its best candidate is reproduced
        assert main(["reproduce", parent.info.run_id, "--uri", run["uri"], "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["logged"]["run_id"] == kid.info.run_id
        assert res["ratio"] == pytest.approx(2.0)
        assert res["checks"]["kernel_source_sha"]["result"] == "MISMATCH"
        assert res["checks"]["triton"] == {"logged": "0.0.1", "now": triton.__version__, "result": "MISMATCH"}
        assert res["checks"]["torch"]["result"] == "match"
        assert main(["reproduce", kid.info.run_id, "--uri", run["uri"]]) == 0
        text = capsys.readouterr().out
        assert "kernel_source_sha  MISMATCH" in text and "triton             MISMATCH" in text
    finally:
        client.set_tag(parent.info.run_id, "kernel_source_sha", parent.data.tags["kernel_source_sha"])
        client.set_tag(kid.info.run_id, "triton", kid.data.tags["triton"])


def test_unknown_run_is_exit_2(store, capsys):
    run, _, _, _ = store
    assert main(["reproduce", "0" * 32, "--uri", run["uri"]]) == 2
    assert f"no run '{'0' * 32}'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_run_without_a_gpu_is_a_clear_error():
    logged = {"run_id": "r", "hardware": "h100"}
    with pytest.raises(reproduce.ReproduceError, match="measured on h100 .* no GPU"):
        reproduce.evaluate_here(logged, 0)


def test_kernel_outside_the_checkout_needs_trust_code(store, capsys, tmp_path, monkeypatch):
    run, client, parent, kid = store
    evil = tmp_path / "elsewhere" / "evil.py"
    evil.parent.mkdir()
    marker = tmp_path / "ran"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # neither the checkout nor the current directory holds it
    client.set_tag(parent.info.run_id, "kernel_ref", f"{evil}:KERNEL")
    try:
        assert main(["reproduce", kid.info.run_id, "--uri", run["uri"]]) == 2
        err = capsys.readouterr().err
        assert "outside this checkout" in err and "--trust-code" in err and len(err.strip().splitlines()) == 1
        assert not marker.exists()  # nothing was imported
        # asked for, it is imported (and fails here as no Tunable: exit 2 with its own message)
        assert main(["reproduce", kid.info.run_id, "--uri", run["uri"], "--trust-code"]) == 2
        assert marker.exists()
    finally:
        client.set_tag(parent.info.run_id, "kernel_ref", parent.data.tags["kernel_ref"])


def test_checkout_and_current_directory_kernels_are_trusted(tmp_path, monkeypatch):
    assert reproduce.untrusted_code("kernelevolve.search_spaces.matmul:TUNABLE") == ""
    assert reproduce.untrusted_code(f"{reproduce.REPO_ROOT}/tests/faults.py:FAULTS") == ""
    (tmp_path / "mine.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert reproduce.untrusted_code(f"{tmp_path}/mine.py:K") == ""
    assert "outside this checkout" in reproduce.untrusted_code("json:loads")
