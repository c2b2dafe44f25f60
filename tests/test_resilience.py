"""The driver killed mid-sweep, and the tracking server lost mid-sweep: nothing lost, nothing twice."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.execution import sweep
from kernelevolve.tuner.cli import main
from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate

pytestmark = pytest.mark.slow

EXP = """
name: {name}
kernels:
  - kernel: matmul
    problems: [{{M: 40, N: 24, K: 50, dtype: float32}}]
targets: [{{name: cpu-interpreter}}]
search: {{sampler: tpe, samples: {samples}, concurrency: 1, seed: 5, timeout_s: 120, top_k: 2}}
tracking: {{uri: {uri}}}
"""


def _journal(root, name):
    state = SweepState.latest(str(root / ".kernelevolve" / name))
    if state is None:
        return []
    recs = []
    for f in os.listdir(state.folder):
        if f.endswith(".jsonl"):
            recs += state.journal(f[:-6]).records()
    return recs


def _children(uri, name):
    client = MlflowClient(tracking_uri=uri)
    e = client.get_experiment_by_name(name)
    runs = client.search_runs([e.experiment_id], max_results=5000)
    parents = [r for r in runs if r.data.tags.get("kernelevolve.role") == "study"]
    return client, parents, [r for r in runs if r.data.tags.get("kernelevolve.role") == "candidate"]


def test_driver_sigkill_then_resume(tmp_path):
    (tmp_path / "exp.yaml").write_text(EXP.format(name="killed", samples=8, uri="sqlite:///mlflow.db"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    driver = subprocess.Popen([sys.executable, "-m", "kernelevolve.tuner.cli", "run", "exp.yaml"], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while sum(r["status"] == "ok" for r in _journal(tmp_path, "killed")) < 3:
        assert driver.poll() is None and time.time() < deadline, "sweep ended or stalled before the kill"
        time.sleep(0.5)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # nothing the killed driver started outlives it: its valid-set pool workers (which once stayed
    # blocked on their pipes for good), its early Ray head and that Ray, its evaluation processes
    deadline = time.time() + 180
    while _processes_in(tmp_path) and time.time() < deadline:
        time.sleep(1)
    assert not _processes_in(tmp_path), _processes_in(tmp_path)
    before = unique_by_candidate(_journal(tmp_path, "killed"))
    assert 3 <= sum(r["status"] == "ok" for r in before) < 10  # 8 Triton + the two vendor paths

    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["run", "exp.yaml", "--resume", "--quiet"]) == 0
    finally:
        os.chdir(old)

    after = _journal(tmp_path, "killed")
    client, parents, children = _children(f"sqlite:///{tmp_path}/mlflow.db", "killed")
    assert len(parents) == 1
    ids = [c.data.tags["candidate_id"] for c in children]
    assert len(ids) == len(set(ids)), "a candidate was logged twice"
    assert set(ids) == {r["candidate_id"] for r in after}, "a journaled candidate is missing in MLflow"
    # the budget's Triton candidates + the vendor paths (torch.mm, and on padded copies: K=50 fp32)
    assert sum(c.data.tags["status"] == "ok" for c in children) == 10
    assert parents[0].data.metrics["best_latency_ms"] > 0
    # the sampler after the resume was told every candidate from before the kill, in order, first
    path = client.download_artifacts(parents[0].info.run_id, "sampler_history.json", str(tmp_path))
    history = json.load(open(path))
    told = [(h["params"], h["value"]) for h in history]
    from kernelevolve.search_spaces.matmul import space
    from kernelevolve.kernels.matmul import MatmulProblem
    from kernelevolve.tuner.experiment.hardware import profile
    sp = space(MatmulProblem(M=40, N=24, K=50, dtype="float32"), profile("cpu-interpreter"))
    # (the vendor path, evaluated outside the space, is never told to the sampler)
    expected = [(sp.encode(r["config"]), r["objective"]) for r in before if r.get("impl") != "vendor"]
    assert told[: len(expected)] == expected


def _processes_in(folder) -> list[str]:
    """The command lines of the live processes whose working directory is `folder`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") != str(folder):
                continue
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                found.append(fh.read().replace(b"\0", b" ").decode(errors="replace")[:120])
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root, port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root}/server.db", "--artifacts-destination",
         str(root / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(1)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start")


def _stop_server(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class KillServerAfter:
    """A progress display that pulls the tracking server's plug after n candidates."""

    def __init__(self, proc, n):
        self.proc, self.n, self.seen = proc, n, 0

    def study_started(self, *a):
        pass

    def study_finished(self, *a):
        pass

    def candidate(self, study, rec):
        self.seen += 1
        if self.seen == self.n:
            _stop_server(self.proc)


def test_tracking_server_lost_mid_sweep_then_synced(tmp_path, monkeypatch):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    (tmp_path / "exp.yaml").write_text(EXP.format(name="outage", samples=6, uri=uri))
    monkeypatch.chdir(tmp_path)
    exp = config.load("exp.yaml")
    lines = []
    [summary] = sweep.run(exp, log=lines.append, progress=KillServerAfter(server, 2))
    assert any("MLflow unreachable" in line for line in lines)
    journal = unique_by_candidate(_journal(tmp_path, "outage"))
    assert sum(r["status"] == "ok" for r in journal) == 8 and summary["best"]  # 6 + two vendor paths

    server = _start_server(tmp_path, port)
    try:
        assert main(["sync", "exp.yaml"]) == 0
        assert main(["sync", "exp.yaml"]) == 0  # idempotent: a second sync writes nothing twice
        client, parents, children = _children(uri, "outage")
        ids = [c.data.tags["candidate_id"] for c in children]
        assert sorted(ids) == sorted(r["candidate_id"] for r in journal)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert parents[0].data.metrics["best_latency_ms"] == pytest.approx(summary["best"]["latency_ms"])
    finally:
        _stop_server(server)


def test_tracking_store_unreachable_at_start_is_a_clear_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "exp.yaml").write_text(EXP.format(name="nostore", samples=2,
                                                  uri=f"http://127.0.0.1:{_free_port()}"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "exp.yaml", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "Traceback" not in err


def test_resume_without_a_sweep_is_a_clear_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "exp.yaml").write_text(EXP.format(name="fresh", samples=2, uri="sqlite:///m.db"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "exp.yaml", "--resume"]) == 2
    assert "no sweep of 'fresh' to resume" in capsys.readouterr().err


def test_a_trials_records_are_journaled_at_once_and_a_cut_last_line_is_skipped(tmp_path):
    from kernelevolve.tuner.records.journal import Journal

    journal = Journal(str(tmp_path / "j" / "study.jsonl"))
    journal.extend([{"candidate_id": f"t-{i}", "status": "ok"} for i in range(4)])
    journal.extend([{"candidate_id": "u-0", "status": "timeout"}])
    journal.extend([])
    with open(journal.path, "a", encoding="utf-8") as fh:  # a driver killed mid-write
        fh.write('{"candidate_id": "v-0", "sta')
    recs = journal.records()
    assert [r["candidate_id"] for r in recs] == ["t-0", "t-1", "t-2", "t-3", "u-0"]
    assert len({r["journal_ts"] for r in recs[:4]}) == 1  # one write for the trial's four
