"""The sweep's MLflow store opened in a forked process (tuner/records/store_opening.py): the
experiment is created there, the driver never imports MLflow for it, and a store that cannot be
opened is one user error in the driver."""
import os
import subprocess
import sys

import pytest

from kernelevolve.tuner.records.store_opening import StoreOpening
from kernelevolve.tuner.records.tracking import TrackingUnavailable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("fork", [True, False])
def test_the_store_is_opened_with_its_experiment_and_opened_again_the_same(tmp_path, fork):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = StoreOpening(uri, "suite", fork=fork).result()
    again = StoreOpening(uri, "suite", fork=fork).result()
    assert first.uri == again.uri and first.uri.endswith("mlflow.db") and os.path.exists(tmp_path / "mlflow.db")
    assert first.experiment_id == again.experiment_id and first.took_s > 0

    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri=first.uri).get_experiment_by_name("suite").experiment_id == first.experiment_id


def test_a_forked_opening_leaves_mlflow_out_of_the_driver(tmp_path):
    code = ("import sys\nfrom kernelevolve.tuner.records.store_opening import StoreOpening\n"
            f"opened = StoreOpening('sqlite:///{tmp_path}/mlflow.db', 'suite').result()\n"
            "assert opened.experiment_id and 'mlflow' not in sys.modules, sorted(m for m in sys.modules if 'mlflow' in m)[:5]\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(ROOT) + os.pathsep + ROOT)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=str(tmp_path), timeout=300)


@pytest.mark.parametrize("fork", [True, False])
def test_a_store_that_cannot_be_opened_is_a_user_error_in_the_driver(tmp_path, fork):
    (tmp_path / "a-file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path}/a-file/mlflow.db"
    with pytest.raises(TrackingUnavailable, match="cannot be"):
        StoreOpening(uri, "suite", fork=fork).result()


def test_an_early_opener_opens_the_store_it_is_sent_once_the_experiment_is_loaded(tmp_path, monkeypatch):
    from kernelevolve.tuner.records import store_opening

    store_opening.start_early()
    monkeypatch.chdir(tmp_path)  # the URI is resolved here, not in the opener's cwd
    opening = StoreOpening("sqlite:///mlflow.db", "suite")
    assert opening.proc is not None and opening.pool is None  # the early opener took the request
    proc = opening.proc
    opened = opening.result()  # its answer, not its exit: it is reaped beside the sweep
    assert opening.proc is None and proc.wait(timeout=120) == 0
    assert opened.uri == f"sqlite:///{tmp_path}/mlflow.db" and os.path.exists(tmp_path / "mlflow.db")
    assert opened.experiment_id == StoreOpening(opened.uri, "suite").result().experiment_id  # forked: the same


def test_an_early_opener_writes_nothing_before_it_is_asked_and_reports_a_failure(tmp_path, monkeypatch):
    from kernelevolve.tuner.records import store_opening

    monkeypatch.chdir(tmp_path)
    store_opening.start_early()
    unused = store_opening._take_early()  # a command that ended before its sweep began
    unused.stdin.close()
    assert unused.wait(timeout=120) == 0 and os.listdir(tmp_path) == []
    (tmp_path / "a-file").write_text("not a folder")
    store_opening.start_early()
    with pytest.raises(TrackingUnavailable, match="cannot be"):
        StoreOpening(f"sqlite:///{tmp_path}/a-file/mlflow.db", "suite").result()
