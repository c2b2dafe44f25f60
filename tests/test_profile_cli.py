"""`kernelevolve profile RUN_ID` on the CPU: the logged candidate is rebuilt from MLflow, its
`profile` request runs through the real target process and evaluator (in the interpreter,
started by tests/fake_ncu.py in place of ncu), the fixture CSV is parsed and labelled, and the
counters land on the candidate's run, the table and roofline on its study's. A machine
without ncu, an interpreter run and an unknown run are one line and exit 2."""
import csv
import io
import itertools
import os

import pytest
from mlflow.tracking import MlflowClient

from kernelevolve.tuner.cli import main
from kernelevolve.tuner.profile import ncu
from kernelevolve.tuner.review import report

HERE = os.path.dirname(__file__)
FIXTURE = os.path.join(HERE, "data", "ncu", "softmax_bf16_4096x32768.csv")
_STUDIES = itertools.count()
CONFIG = {"ONLINE": False, "BLOCK": 128, "ROWS": 1, "num_warps": 4, "num_stages": 1}


def _study(client, exp: str, hardware: str = "h100") -> str:
    """A study run as the sweep logs it (the tags and params `reproduce` and `profile` read), under a
    study key of its own (the report shows the newest run of each key)."""
    key = f"softmax/rows64_cols128_float16/{hardware}-{next(_STUDIES)}"
    parent = client.create_run(exp, tags={"kernelevolve.role": "study", "kernelevolve.study": key,
                                          "kernel_ref": "kernelevolve.search_spaces.softmax:TUNABLE", "hardware": hardware,
                                          "timing": "gpu"})
    for k, v in {"rows": 64, "cols": 128, "dtype": "float16"}.items():
        client.log_param(parent.info.run_id, f"problem.{k}", v)
    return parent.info.run_id


def _candidate(client, exp: str, parent: str, config: dict = CONFIG, cid: str = "abc_00001") -> str:
    """A correct candidate's child run under `parent`."""
    kid = client.create_run(exp, tags={"kernelevolve.role": "candidate", "candidate_id": cid,
                                       "mlflow.parentRunId": parent, "status": "ok", "timing": "gpu"})
    for k, v in config.items():
        client.log_param(kid.info.run_id, k, v)
    client.log_metric(kid.info.run_id, "latency_ms", 0.215)
    return kid.info.run_id


def _store(tmp_path, hardware="h100"):
    """A new MLflow store holding one study run and one correct candidate: (uri, client, parent, kid)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("prof", artifact_location=str(tmp_path / "artifacts"))
    parent = _study(client, exp, hardware)
    return uri, client, parent, _candidate(client, exp, parent)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for this module's tests (a new SQLite store costs seconds); each test adds its own
    study and candidates: (uri, client, experiment id)."""
    tmp = tmp_path_factory.mktemp("profile-store")
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    return uri, client, client.create_experiment("prof", artifact_location=str(tmp / "artifacts"))


@pytest.fixture
def fake_ncu(monkeypatch):
    monkeypatch.setenv(ncu.NCU_ENV, os.path.join(HERE, "fake_ncu.py"))
    monkeypatch.setenv("FAKE_NCU_CSV", FIXTURE)
    monkeypatch.delenv("FAKE_NCU_FAIL", raising=False)


def test_profile_logs_counters_label_table_and_roofline(store, tmp_path, fake_ncu, capsys):
    uri, client, exp = store
    parent = _study(client, exp)
    kid = _candidate(client, exp, parent)
    assert main(["profile", kid[:12], "--uri", uri]) == 0  # a unique prefix, as `reproduce` takes
    out = capsys.readouterr().out
    assert f"profile run {kid}" in out and "bottleneck  memory-bound" in out
    run = client.get_run(kid)
    assert run.data.tags["bottleneck"] == "memory-bound"
    assert run.data.tags["ncu_version"].startswith("2025.3.1")
    # the recorded page's DRAM % (85.46, 84.80, 85.18) weighted by its launches' GPU time
    assert run.data.metrics["ncu_dram_pct"] == pytest.approx(85.146, abs=1e-3)
    assert run.data.metrics["profile_latency_ms"] == pytest.approx(0.215)
    assert run.data.metrics["ncu_kernel_share"] == pytest.approx(run.data.metrics["ncu_duration_ms"] / 0.215)
    files = {a.path for a in client.list_artifacts(kid, "profile")}
    assert files == {"profile/profile.csv", "profile/ncu.log", "profile/profile.ncu-rep"}
    study = {a.path for a in client.list_artifacts(parent, "profile")}
    assert study == {"profile/finalists.csv", "profile/roofline_counters.png"}
    table = client.download_artifacts(parent, "profile/finalists.csv", str(tmp_path))
    rows = list(csv.DictReader(io.StringIO(open(table).read())))
    assert [(r["candidate_id"], r["bottleneck"]) for r in rows] == [("abc_00001", "memory-bound")]
    assert rows[0]["roofline_agrees"] == "True"  # 64x128 fp16 softmax flops over the fixture's bytes: far left
    page = report.build_html(uri, "prof")  # the HTML report shows the study's profiled candidates
    assert "Profiled candidates: Nsight Compute counters" in page and "memory-bound" in page
    assert 'alt="roofline_counters.png"' in page


def test_a_machine_without_ncu_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(ncu.NCU_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ncu, "_INSTALLS", ())
    assert main(["profile", "0123abcd", "--uri", f"sqlite:///{tmp_path}/none.db"]) == 2
    err = capsys.readouterr().err
    assert "ncu" in err and "not installed" in err and len(err.strip().splitlines()) == 1


def test_interpreter_runs_and_unknown_runs_are_exit_2(store, fake_ncu, capsys):
    uri, client, exp = store
    kid = _candidate(client, exp, _study(client, exp, hardware="cpu-interpreter"))
    assert main(["profile", kid, "--uri", uri]) == 2
    assert "interpreter" in capsys.readouterr().err
    assert main(["profile", "f" * 32, "--uri", uri]) == 2
    assert "no run" in capsys.readouterr().err


def test_a_failed_profile_says_why_in_one_line(store, fake_ncu, monkeypatch, capsys):
    uri, client, exp = store
    kid = _candidate(client, exp, _study(client, exp))
    monkeypatch.setenv("FAKE_NCU_FAIL", "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission")
    assert main(["profile", kid, "--uri", uri]) == 2
    [err] = [line for line in capsys.readouterr().err.splitlines() if "kernelevolve" in line]
    assert "NVreg_RestrictProfilingToAdminUsers=0" in err  # one line says why


def test_a_candidate_that_does_not_run_under_ncu_is_not_labelled(store, fake_ncu, capsys):
    uri, client, exp = store
    # BLOCK under the row length without ONLINE: the space's constraints reject it in the target
    bad = _candidate(client, exp, _study(client, exp), {**CONFIG, "BLOCK": 64})
    assert main(["profile", bad, "--uri", uri]) == 2
    [err] = [line for line in capsys.readouterr().err.splitlines() if "kernelevolve" in line]
    assert "did not run under ncu: invalid" in err
    assert "bottleneck" not in client.get_run(bad).data.tags


def test_the_profile_request_verifies_then_launches_the_candidate_on_the_cpu():
    """What ncu profiles: a `profile` request served by the sweep's own evaluation processes
    (the candidate verified by the judge first, then its launches), here on the interpreter."""
    from kernelevolve.tuner.execution.worker import CandidateWorker, make_request

    worker = CandidateWorker(env={"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""})
    try:
        req = make_request("profile", "kernelevolve.search_spaces.softmax:TUNABLE",
                           {"rows": 64, "cols": 128, "dtype": "float16"}, "cpu-interpreter", {},
                           config=dict(CONFIG), calls=2)
        rec = worker.request(req, timeout_s=300)
    finally:
        worker.close()
    assert rec["status"] == "ok", rec
    assert rec["calls"] == 2 and rec["bytes_moved"] > 0
