"""Reviewing a sweep: plots logged to MLflow, the HTML report, `compare`, `ui`; CPU only.

One tiny real sweep (two interpreter targets, four candidates each) is shared by these tests and
by tests/test_browser.py: `run_review_sweep` memoizes it per session, so the machine's two
shared cores run it once.
"""
import base64
import html
import json
import os
import re
import types

import pytest

from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.review import plots, report
from kernelevolve.tuner.execution import sweep
from kernelevolve.tuner.cli import build_parser, main
from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate
from kernelevolve.tuner.records.tracking import Tracker, candidate_records

NAME = "review"
EXP = f"""
name: {NAME}
kernels:
  - kernel: matmul
    problems: [{{M: 48, N: 40, K: 56, dtype: float16}}]
targets: [{{name: cpu-a, hardware: cpu-interpreter}}, {{name: cpu-b, hardware: cpu-interpreter}}]
search: {{sampler: tpe, samples: 4, concurrency: 2, seed: 5, timeout_s: 120, top_k: 2}}
timing: {{wall_reps: 1, retime_rounds: 1}}
tracking: {{uri: sqlite:///store/mlflow.db}}
"""
LOGGED_PLOTS = {"convergence.png", "param_importance.png", "latency_by_status.png", "notes.json"}

_SWEEPS: dict = {}


def run_review_sweep(tmp_path_factory):
    if NAME not in _SWEEPS:
        root = tmp_path_factory.mktemp("review")
        (root / "exp.yaml").write_text(EXP)
        (root / "store").mkdir()
        old = os.getcwd()
        os.chdir(root)
        try:
            exp = config.load("exp.yaml")
            summaries = sweep.run(exp, log=lambda m: None)
        finally:
            os.chdir(old)
        _SWEEPS[NAME] = types.SimpleNamespace(root=root, exp=exp, summaries=summaries, name=NAME,
                                              uri=f"sqlite:///{root}/store/mlflow.db")
    return _SWEEPS[NAME]


@pytest.fixture(scope="session")
def review_sweep(tmp_path_factory):
    return run_review_sweep(tmp_path_factory)


def _parents(sw):
    client, eid = report.open_experiment(sw.uri, sw.name)
    return client, eid, report.study_runs(client, eid)


@pytest.mark.slow
def test_every_study_logs_its_plots(review_sweep):
    client, _, runs = _parents(review_sweep)
    assert set(runs) == {s["study"] for s in review_sweep.summaries} and len(runs) == 2
    for key, run in runs.items():
        arts = {os.path.basename(a.path) for a in client.list_artifacts(run.info.run_id, "plots")}
        assert arts == LOGGED_PLOTS, key  # no roofline: interpreter timings
        local = client.download_artifacts(run.info.run_id, "plots",
                                          str(review_sweep.root / key.replace("/", "_")))
        notes = json.load(open(os.path.join(local, "notes.json")))
        assert "interpreter" in notes["roofline.png"] and "not GPU performance" in notes["roofline.png"]
        for name in arts - {"notes.json"}:
            assert open(os.path.join(local, name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_child_runs_read_back_as_the_journal_records(review_sweep):
    """The `kernelevolve sync` path draws plots from child runs: they must round-trip the configs."""
    client, eid, runs = _parents(review_sweep)
    state = SweepState.latest(str(review_sweep.root / ".kernelevolve" / NAME))
    for key, run in runs.items():
        journal = unique_by_candidate(state.journal(sweep.slug(key)).records())
        back = candidate_records(client, eid, run.info.run_id)
        assert sorted(json.dumps(r["config"], sort_keys=True) for r in back) == \
            sorted(json.dumps(r["config"], sort_keys=True) for r in journal)
        ok = {r["candidate_id"]: r["latency_ms"] for r in journal if r["status"] == "ok"}
        back_ok = {r["candidate_id"]: r["latency_ms"] for r in back if r["status"] == "ok"}
        assert back_ok == pytest.approx(ok)


@pytest.mark.slow
def test_report_is_self_contained_and_has_every_study(review_sweep, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", NAME, "--uri", review_sweep.uri, "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    text = out.read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text, flags=re.I)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs), refs
    assert "http://" not in text and "https://" not in text
    for s in review_sweep.summaries:
        assert f'<section class="study" id="{s["study"]}">' in text
    assert len(refs) == 3 * len(review_sweep.summaries)  # convergence, importance, latency each
    assert base64.b64decode(refs[0].split(",", 1)[1])[:4] == b"\x89PNG"
    assert html.escape(plots.INTERPRETER_NOTE) in text and "roofline.png: skipped" in text
    assert main(["best", NAME, "--uri", review_sweep.uri, "--json"]) == 0
    for row in json.loads(capsys.readouterr().out):  # the report's table holds what `best` prints
        assert html.escape(row["study"]) in text and html.escape(json.dumps(row["config"])) in text


@pytest.mark.slow
def test_compare_prints_both_targets_side_by_side(review_sweep, capsys):
    assert main(["compare", NAME, "--uri", review_sweep.uri]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for target in ("cpu-a", "cpu-b"):
        assert f"{target} retimed_ms" in header and f"{target} speedup" in header and f"{target} config" in header
    rows = [line for line in out.splitlines() if line.startswith("matmul/")]
    assert len(rows) == 1 and rows[0].count("(interpreter)") == 2
    assert main(["compare", NAME, "--uri", review_sweep.uri, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    best = {s["study"].rsplit("/", 1)[1]: s["best"] for s in review_sweep.summaries}
    for target in ("cpu-a", "cpu-b"):
        assert row[f"{target} config"] == best[target]["config"]  # typed as the kernel saw them


@pytest.mark.slow
@pytest.mark.parametrize("command", ["report", "compare"])
def test_unknown_experiment_is_one_error_exit_2(review_sweep, command, tmp_path, capsys):
    assert main([command, "nope", "--uri", review_sweep.uri, "-o", str(tmp_path / "r.html")]
                if command == "report" else [command, "nope", "--uri", review_sweep.uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no experiment 'nope'" in err and NAME in err
    assert not (tmp_path / "r.html").exists()


def _records(n_ok: int, failures=("compile_error", "incorrect", "invalid")) -> list[dict]:
    recs = []
    for i in range(n_ok):
        bm = (32, 64, 128)[i % 3]
        ms = 0.2 + bm / 1000 + 0.01 * i
        recs.append({"candidate_id": f"c{i}", "status": "ok", "timing": "gpu",
                     "config": {"BLOCK_M": bm, "PERSISTENT": bool(i % 2), "num_warps": 4},
                     "latency_ms": ms, "latency_p20_ms": ms * 0.98, "latency_p80_ms": ms * 1.03,
                     "tflops": 2 * 4096 ** 3 / (ms * 1e-3) / 1e12,
                     "gbps": 3 * 2 * 4096 ** 2 / (ms * 1e-3) / 1e9})
    recs += [{"candidate_id": f"f{i}", "status": s, "config": {"BLOCK_M": 256, "PERSISTENT": True,
                                                                "num_warps": 4}, "error": "boom"}
             for i, s in enumerate(failures)]
    return recs


def test_gpu_records_get_a_roofline_of_the_measured_ceilings():
    pngs, notes = plots.render_study(_records(8), "matmul/M4096/h100", "h100", "gpu", "bfloat16")
    assert set(pngs) == {"convergence.png", "param_importance.png", "latency_by_status.png", "roofline.png"}
    assert notes == {} and all(p[:4] == b"\x89PNG" for p in pngs.values())
    imps, why = plots.param_importances(_records(8))
    assert set(imps) == {"BLOCK_M", "PERSISTENT"} and why == ""  # num_warps never varied


def test_interpreter_and_thin_studies_say_why_a_plot_is_missing():
    pngs, notes = plots.render_study(_records(2), "s", "h100", "interpreter", "bfloat16")
    assert "roofline.png" not in pngs and "not GPU performance" in notes["roofline.png"]
    assert "at least 4 correct candidates" in notes["param_importance.png"]
    assert "param_importance.png" in pngs  # drawn as a note, so the report still shows why
    _, notes = plots.render_study(_records(0), "s", "h100", "gpu", "bfloat16")
    assert "no correct candidate" in notes["roofline.png"]
    _, notes = plots.render_study(_records(5), "s", "h100", "gpu", "float8_e4m3fn")
    assert "roofline.png" not in notes  # no fp8 compute ceiling: drawn with the bandwidth roof only


def test_report_draws_plots_for_runs_logged_without_them(tmp_path):
    """A study whose parent run never finished (driver killed, MLflow away) still gets its plots."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "bare")
    parent = tracker.client.create_run(tracker.experiment_id, tags={
        "kernelevolve.role": "study", "kernelevolve.study": "matmul/p/h100", "hardware": "h100",
        "timing": "gpu", "target": "h100"}).info.run_id
    tracker.client.log_param(parent, "problem.dtype", "bfloat16")
    tracker.sync(parent, _records(5), {"study": "matmul/p/h100"})
    text = report.build_html(uri, "bare")
    assert "drawn now from its child runs" in text
    assert text.count("data:image/png;base64,") == 4  # roofline included: GPU timings
    # `kernelevolve sync` finishes such a study without the journal at hand: records come back
    # from the child runs, and the plots are logged as at the end of a sweep.
    tracker.finish_study(parent, {"counts": {"ok": 5, "compile_error": 1}, "best": None})
    arts = {os.path.basename(a.path) for a in tracker.client.list_artifacts(parent, "plots")}
    assert arts == LOGGED_PLOTS | {"roofline.png"}
    assert "drawn now" not in report.build_html(uri, "bare")


def test_ui_binds_loopback_by_default_and_prints_the_url(monkeypatch, capsys):
    seen = {}

    class FakeServer:  # the real one would start a server and block
        def __init__(self, cmd, **kwargs):
            seen["cmd"], seen["kwargs"] = cmd, kwargs

        def wait(self):
            return 0

    monkeypatch.setattr("subprocess.Popen", FakeServer)
    monkeypatch.setattr("kernelevolve.tuner.review.mlflow_ui._stop_group", lambda proc: seen.setdefault("stopped", proc))
    assert build_parser().parse_args(["ui"]).host == "127.0.0.1"
    assert main(["ui", "--uri", "sqlite:////tmp/x.db", "--port", "5071"]) == 0
    cmd = seen["cmd"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert seen["kwargs"] == {"start_new_session": True} and isinstance(seen["stopped"], FakeServer)
    assert "http://127.0.0.1:5071" in capsys.readouterr().out


@pytest.mark.slow
def test_a_gemm_study_shows_the_dispatched_choice_beside_the_best_triton_kernel(review_sweep, capsys, tmp_path):
    """The vendor path (torch.mm) is evaluated once per GEMM study, outside the sampler's budget,
    and the summary, `best` and the report name the dispatched winner and the best Triton kernel."""
    state = SweepState.latest(str(review_sweep.root / ".kernelevolve" / NAME))
    for s in review_sweep.summaries:
        journal = unique_by_candidate(state.journal(sweep.slug(s["study"])).records())
        vendor = [r for r in journal if r.get("impl") == "vendor"]
        assert len(vendor) == 1 and vendor[0]["status"] == "ok" and vendor[0]["config"] == {"IMPL": "vendor"}
        assert sum(1 for r in journal if r.get("impl") == "triton") == 4  # the budget, all Triton
        triton = s["best_triton"]
        assert triton["impl"] == "triton" and "BLOCK_M" in triton["config"]
        assert s["best"]["latency_ms"] <= triton["latency_ms"]
    assert main(["best", NAME, "--uri", review_sweep.uri, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_study = {s["study"]: s for s in review_sweep.summaries}
    for row in rows:
        s = by_study[row["study"]]
        assert row["dispatched"] == s["best"]["impl"] and row["config"] == s["best"]["config"]
        assert row["triton_config"] == s["best_triton"]["config"]
    out = tmp_path / "report.html"
    assert main(["report", NAME, "--uri", review_sweep.uri, "-o", str(out)]) == 0
    text = out.read_text()
    assert "<th>dispatched</th>" in text and "<th>triton_config</th>" in text
    assert "best Triton config" in text and "dispatched (the implementation the tuned table runs)" in text
