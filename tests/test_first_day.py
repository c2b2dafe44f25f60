"""What a user meets on the first day, each friction pinned: fast help, run ids by prefix, typed
config values, tables that say which latency they show and fit a terminal, read-only commands
that create no store, one-line errors with exit code 2, plug-ins listed and hashed whole, and an
MLflow UI that stops cleanly."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from kernelevolve.tuner import cli
from kernelevolve.tuner.cli import main
from kernelevolve.tuner.experiment import config, lookup, registry
from kernelevolve.tuner.review import report
from kernelevolve.tuner.review.text import _table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
GOOD = """name: t
kernels:
  - kernel: matmul
    problems: [{M: 64, N: 64, K: 64, dtype: float16}]
targets: [{name: cpu-interpreter}]
search: {sampler: tpe, samples: 4, seed: 0, timeout_s: 60}
"""


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kernelevolve: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


# -- help and version ---------------------------------------------------------------------------
def test_help_and_version_answer_without_torch_ray_or_mlflow():
    code = ("import sys, kernelevolve.tuner.cli; heavy = {'torch', 'ray', 'mlflow', 'triton', 'optuna', 'pydantic'}"
            " & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV, cwd=ROOT)
    for flag in ("--help", "--version"):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "kernelevolve.tuner.cli", flag], capture_output=True, text=True,
                             env=ENV, cwd=ROOT, check=True).stdout
        assert time.perf_counter() - t0 < 2.0  # well under a second unloaded; CI machines are shared
        assert "kernelevolve" in out


def test_every_command_help_shows_an_example(capsys):
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "example:\n  kernelevolve " + name in capsys.readouterr().out


def test_cli_default_store_is_the_config_default():
    assert lookup.DEFAULT_URI == config.Tracking().uri


# -- experiment files ---------------------------------------------------------------------------
@pytest.mark.parametrize("old,new,field", [
    ("timeout_s: 60", "timeout_s: 1e308", "search.timeout_s"),
    ("timeout_s: 60", "timeout_s: 1.0e+308", "search.timeout_s"),
    ("samples: 4", "samples: 1e23", "search.samples"),
    ("samples: 4", "samples: 100000000000000000000000", "search.samples"),
    ("seed: 0", "seed: 100000000000000000000", "search.seed"),
    ("M: 64", "M: 1e20", "kernels[0].problems[0].M"),
    ("M: 64", "M: 100000000000000000000", "kernels[0].problems[0].M"),
])
def test_numbers_out_of_range_are_one_error_naming_file_and_field(tmp_path, capsys, old, new, field):
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.replace(old, new))
    assert main(["run", str(path)]) == 2
    _one_line_error(capsys, f"{path}: {field}:")


def test_duplicate_keys_are_rejected(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.replace("seed: 0,", "seed: 0, samples: 200,"))
    with pytest.raises(config.ConfigError, match="duplicate key 'samples'"):
        config.load(str(path))
    path.write_text(GOOD + "name: again\n")
    assert main(["run", str(path)]) == 2
    _one_line_error(capsys, str(path), "duplicate key 'name'")


def _numpy_refuses_one_element_arrays() -> bool:
    import numpy as np

    try:
        int(np.zeros(1, dtype=np.int32))
        return False
    except TypeError:
        return True


def test_an_interpreter_that_cannot_run_our_kernels_is_named(monkeypatch):
    import triton

    from kernelevolve.tuner.experiment.hardware import interpreter_problem

    monkeypatch.setattr(triton, "__version__", "3.7.0")
    assert interpreter_problem() is None
    monkeypatch.setattr(triton, "__version__", "3.6.0")
    problem = interpreter_problem()
    assert (problem is not None) == _numpy_refuses_one_element_arrays()
    assert problem is None or ("triton 3.6.0" in problem and "triton>=3.7 or numpy<2.4" in problem)


@pytest.mark.skipif(not _numpy_refuses_one_element_arrays(), reason="this numpy still converts one-element "
                    "arrays: triton 3.6's interpreter runs here")
def test_run_on_a_broken_interpreter_is_one_line_before_anything_starts(tmp_path, capsys, monkeypatch):
    import triton

    from kernelevolve.tuner.execution import sweep

    monkeypatch.setattr(triton, "__version__", "3.6.0")
    monkeypatch.setattr(sweep, "run", lambda *a, **k: pytest.fail("the sweep started"))
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD)
    assert main(["run", str(path), "--quiet"]) == 2
    _one_line_error(capsys, "targets[0]", "triton>=3.7 or numpy<2.4")


def test_a_sweep_without_a_correct_candidate_exits_1(tmp_path, capsys, monkeypatch):
    from kernelevolve.tuner.execution import sweep

    path = tmp_path / "exp.yaml"
    path.write_text(GOOD)
    summaries = [{"study": "matmul/M64_N64_K64_float16/cpu-interpreter", "timing": "interpreter",
                  "counts": {"incorrect": 3, "compile_error": 1}, "best": None}]
    monkeypatch.setattr(sweep, "run", lambda *a, **k: summaries)
    assert main(["run", str(path), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "no candidate was correct in study matmul/M64_N64_K64_float16/cpu-interpreter" in captured.err
    assert "retimed_ms" in captured.out.splitlines()[0]


# -- read-only commands -------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["best", "quickstart"], ["compare", "quickstart"],
                                  ["report", "quickstart", "-o", "r.html"],
                                  ["export", "quickstart", "-o", "t.json"], ["reproduce", "abc123"]])
def test_read_only_commands_create_no_store(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    _one_line_error(capsys, "no MLflow store at", "mlflow.db")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["best", "compare"])
def test_unreachable_store_is_one_line(capsys, command):
    assert main([command, "quickstart", "--uri", "http://127.0.0.1:1"]) == 2
    _one_line_error(capsys, "cannot read the MLflow store at http://127.0.0.1:1")


@pytest.mark.parametrize("argv", [["report", "q", "-o"], ["export", "q", "-o"],
                                  ["export", "q", "-o", "ok.json", "--triton-configs"]])
def test_output_into_a_missing_folder_is_one_line(tmp_path, capsys, argv):
    assert main(argv + [str(tmp_path / "missing" / "out.x")]) == 2
    _one_line_error(capsys, "there is no folder", "missing")


# -- a small store, written by hand ---------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    eid = client.create_experiment("hand")
    study = "matmul/M100000_N72000_K130000_float16/a-target-with-a-rather-long-name"
    run = client.create_run(eid, tags={"kernelevolve.role": "study", "kernelevolve.study": study,
                                       "target": "a-target-with-a-rather-long-name", "timing": "gpu",
                                       "hardware": "h100", "best_measured_by": "retime_interleaved"})
    rid = run.info.run_id
    for k, v in {"BLOCK_M": "64", "BLOCK_N": "128", "BLOCK_K": "32", "GROUP_M": "8", "EVEN_K": "True",
                 "SWIZZLE": "False", "num_warps": "4", "num_stages": "3"}.items():
        client.log_param(rid, f"best.{k}", v)
    for k, v in {"M": "100000", "N": "72000", "K": "130000", "dtype": "float16"}.items():
        client.log_param(rid, f"problem.{k}", v)
    for k, v in {"best_latency_ms": 0.125, "best_speedup": 1.07, "best_tflops": 700.0, "candidates": 40}.items():
        client.log_metric(rid, k, v)
    return uri, client, eid, rid


def test_best_gives_typed_values_and_says_which_latency(store, capsys):
    uri, _, _, rid = store
    assert main(["best", "hand", "--uri", uri, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["config"] == {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 8, "EVEN_K": True,
                             "SWIZZLE": False, "num_warps": 4, "num_stages": 3}
    assert row["retimed_ms"] == 0.125 and row["speedup_vs_torch"] == 1.07 and row["candidates"] == 40
    assert row["latency_measured_by"] == "retime_interleaved" and row["run_id"] == rid
    assert main(["best", "hand", "--uri", uri]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("study matmul/") and lines[0].endswith(f"run_id {rid[:12]}") and rid not in out
    assert "retimed_ms 0.125" in lines[1] and "re-timed at the end of its study" in " ".join(lines)
    assert all(len(line) <= 100 for line in lines), lines  # fits a 100-column terminal, config whole
    assert '"BLOCK_M": 64' in out and '"EVEN_K": true' in out and '"num_stages": 3}' in out
    assert main(["best", "hand", "--uri", uri, "--wide"]) == 0
    wide = capsys.readouterr().out
    assert "retimed_ms" in wide.splitlines()[0] and max(map(len, wide.splitlines())) > 100


def test_compare_and_export_give_the_same_types(store, capsys, tmp_path):
    uri, _, _, _ = store
    assert main(["compare", "hand", "--uri", uri, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    cfg = row["a-target-with-a-rather-long-name config"]
    assert cfg["BLOCK_M"] == 64 and cfg["EVEN_K"] is True
    assert row["a-target-with-a-rather-long-name retimed_ms"] == 0.125
    assert main(["export", "hand", "--uri", uri, "-o", str(tmp_path / "t.json")]) == 0
    capsys.readouterr()
    [entry] = json.loads((tmp_path / "t.json").read_text())["entries"]
    assert entry["config"] == cfg


def test_run_ids_by_unique_prefix(store, capsys):
    uri, client, eid, rid = store
    assert report.resolve_run_id(client, rid[:12], uri) == rid
    assert report.resolve_run_id(client, rid[:12].upper(), uri) == rid
    ids = [rid] + [client.create_run(eid).info.run_id for _ in range(16)]  # 17 ids, 16 hex digits
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    with pytest.raises(report.UnknownExperiment, match="ambiguous"):
        report.resolve_run_id(client, first, uri)
    missing = next(p for p in (f"{a}{b}" for a in "0123456789abcdef" for b in "0123456789abcdef")
                   if not any(i.startswith(p) for i in ids))
    assert main(["reproduce", first, "--uri", uri]) == 2
    _one_line_error(capsys, "ambiguous", "give more characters")
    assert main(["reproduce", missing, "--uri", uri]) == 2
    _one_line_error(capsys, f"no run '{missing}'")
    assert main(["reproduce", "not-an-id", "--uri", uri]) == 2
    _one_line_error(capsys, "is not a run id")


def test_report_says_which_latency(store, tmp_path, capsys):
    uri, _, _, _ = store
    assert main(["report", "hand", "--uri", uri, "-o", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    assert "<th>retimed_ms</th>" in text and "re-timed at the end of its study" in text
    assert "{&quot;BLOCK_M&quot;: 64" in text


def test_tables_cut_long_cells_only_when_asked_to_fit():
    rows = [{"config": "x" * 80, "study": "y" * 80, "run_id": "0123456789ab"}]
    fitted = _table(rows, ["config", "study", "run_id"], 100)
    assert all(len(line) <= 100 for line in fitted.splitlines()) and "..." in fitted
    assert fitted.splitlines()[2].endswith("0123456789ab")  # ids and numbers are never cut
    assert "\x1b[" not in fitted  # no ANSI codes in tables
    whole = _table(rows, ["config", "study", "run_id"], None)
    assert "x" * 80 in whole and "y" * 80 in whole and "cut" not in whole


# -- plug-ins -------------------------------------------------------------------------------------
def test_kernels_lists_a_plugin_space(capsys):
    path = os.path.join(ROOT, "examples", "row_l2norm", "plugin.py") + ":TUNABLE"
    assert main(["kernels", path, "--target", "cpu-interpreter", "--problem", '{"rows": 8, "cols": 100}']) == 0
    out = capsys.readouterr().out
    assert "row L2-normalize" in out and "BLOCK" in out and "ROWS" in out
    assert "constraint: BLOCK <= the padded row" in out
    assert main(["kernels", "nope.py:TUNABLE"]) == 2
    _one_line_error(capsys, "kernel file not found")
    assert main(["kernels", path, "--problem", '{"rows": 0}']) == 2
    _one_line_error(capsys, "--problem")


def test_source_sha_covers_the_helpers_beside_a_plugin(tmp_path):
    (tmp_path / "fdhelper_rows.py").write_text("def scale(x):\n    return 2 * x\n")
    (tmp_path / "fdkernel_rows.py").write_text(
        "from kernelevolve.kernels.softmax import SPEC as _S\nimport dataclasses\nfrom fdhelper_rows import scale\n"
        "def launch(inputs, out, config):\n    return scale(1)\n"
        "SPEC = dataclasses.replace(_S, launch=launch)\n")
    (tmp_path / "fdplugin.py").write_text(
        "from fdkernel_rows import SPEC\nfrom kernelevolve.search_spaces.softmax import space\n"
        "from kernelevolve.tuner.experiment.registry import Tunable\nTUNABLE = Tunable(kernel=SPEC, space=space)\n")
    ref = registry.resolve_ref("fdplugin.py:TUNABLE", str(tmp_path))
    tunable = registry.load(ref)
    names = [os.path.basename(f) for f in registry.kernel_source_files(ref, tunable)]
    assert names[0] == "fdkernel_rows.py" and {"fdhelper_rows.py", "fdplugin.py"} <= set(names)
    assert not any("site-packages" in f for f in registry.kernel_source_files(ref, tunable))
    before = registry.kernel_source_sha(ref, tunable)
    (tmp_path / "fdhelper_rows.py").write_text("def scale(x):\n    return 3 * x\n")
    assert registry.kernel_source_sha(ref, tunable) != before


# -- the MLflow UI --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _server_pids(port: int) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "mlflow" in cmd and f"--port {port}" in cmd:
            pids.append(int(pid))
    return pids


@pytest.mark.slow
def test_ui_stops_its_server_on_sigterm(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kernelevolve.tuner.cli", "ui", "--uri", f"sqlite:///{tmp_path}/m.db",
                             "--port", str(port)], cwd=tmp_path, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not _serving(port):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and len(err.splitlines()) < 20, err
    assert not _serving(port) and _server_pids(port) == []
