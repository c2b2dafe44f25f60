"""SIGINT and SIGTERM stop a sweep resumably: the exit says which signal (130, 143) and how to
resume, the study is not marked done, its parent run is not FINISHED, and `--resume` finishes it."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXP = """
name: stopme
kernels:
  - kernel: dot_interaction
    problems: [{batch: 16, features: 6, dim: 64, dtype: float16}]
targets: [{name: cpu-interpreter}]
search: {sampler: tpe, samples: 6, concurrency: 1, seed: 1, timeout_s: 120, top_k: 1}
timing: {retime_rounds: 1}
tracking: {uri: sqlite:///mlflow.db}
"""


def _journaled(root) -> int:
    base = os.path.join(root, ".kernelevolve", "stopme")
    n = 0
    for dirpath, _, files in os.walk(base):
        for f in files:
            if f.endswith(".jsonl"):
                with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                    n += sum(1 for _ in fh)
    return n


def _run(root, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "kernelevolve.tuner.cli", "run", "exp.yaml", "--quiet", *extra],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_leaves_the_sweep_resumable(tmp_path, sig, code):
    (tmp_path / "exp.yaml").write_text(EXP)
    proc = _run(tmp_path)
    deadline = time.time() + 300
    while _journaled(tmp_path) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep ended before it could be stopped: " + proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err[-3000:]
    assert "--resume" in err and "Traceback" not in err
    state_dir = tmp_path / ".kernelevolve" / "stopme"
    latest = (state_dir / "latest").read_text().strip()
    studies = json.loads((state_dir / latest / "sweep.json").read_text())["studies"]
    [study] = studies.values()
    assert not study.get("done"), "an interrupted study was marked done"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.get_run(study["parent"])
    assert parent.info.status != "FINISHED"
    if sig == signal.SIGTERM:  # and the rest runs on resume (once is enough to prove it)
        done = _run(tmp_path, "--resume")
        out, err = done.communicate(timeout=600)
        assert done.returncode == 0, err[-3000:]
        assert client.get_run(study["parent"]).info.status == "FINISHED"
        children = client.search_runs([parent.info.experiment_id],
                                      f"tags.`mlflow.parentRunId` = '{study['parent']}'")
        assert len(children) == 6
