"""The example plug-in of docs/tune-your-kernel.md, swept end to end on the interpreter as a user
would: `kernelevolve run` on its YAML, then best, reproduce (by the 12-character id `best` shows)
and export, every one through the CLI, in a copy of the example folder."""
import json
import os
import shutil

import pytest

from kernelevolve.tuner.cli import main
from kernelevolve.tuner.experiment import config, hardware, registry

pytestmark = pytest.mark.slow
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "row_l2norm")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    folder = root / "row_l2norm"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", "mlflow.db", "mlartifacts"))
    old = os.getcwd()
    os.chdir(folder)
    try:
        rc = main(["run", "row_l2norm.yaml", "--quiet"])
    finally:
        os.chdir(old)
    return folder, rc


def test_the_sweep_finds_a_correct_config_in_the_space(swept, capsys):
    folder, rc = swept
    assert rc == 0
    uri = f"sqlite:///{folder}/mlflow.db"
    assert main(["best", "row-l2norm", "--uri", uri, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["timing"] == "interpreter" and row["candidates"] >= 6
    assert isinstance(row["retimed_ms"], float) and row["retimed_ms"] > 0
    exp = config.load(str(folder / "row_l2norm.yaml"))
    tunable = registry.load(exp.kernel_refs[0])
    space = tunable.space(tunable.kernel.problem(rows=33, cols=100), hardware.profile("cpu-interpreter"))
    assert row["config"] in space.valid_configs()  # typed: {"BLOCK": 64, ...}, a point of the space


def test_reproduce_by_the_id_best_shows_then_export(swept, capsys, tmp_path):
    folder, _ = swept
    uri = f"sqlite:///{folder}/mlflow.db"
    assert main(["best", "row-l2norm", "--uri", uri]) == 0
    [short] = [line.split()[-1] for line in capsys.readouterr().out.splitlines() if line.startswith("study ")]
    assert len(short) == 12
    # the plug-in lies outside this checkout and the current folder: its code runs only when asked
    assert main(["reproduce", short, "--uri", uri, "--json"]) == 2
    assert "--trust-code" in capsys.readouterr().err
    assert main(["reproduce", short, "--uri", uri, "--json", "--trust-code"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["reproduced"] and res["now"]["status"] == "ok"
    assert res["checks"]["kernel_source_sha"]["result"] == "match"
    assert main(["export", "row-l2norm", "--uri", uri, "-o", str(tmp_path / "tuned.json")]) == 0
    capsys.readouterr()
    [entry] = json.loads((tmp_path / "tuned.json").read_text())["entries"]
    assert entry["config"] == res["logged"]["config"] and entry["problem"]["cols"] == 100
    assert entry["kernel"] == "plugin.py:TUNABLE" and entry["interpreter"] is True
