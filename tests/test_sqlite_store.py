"""A local SQLite MLflow store: made as a copy of an empty one, written through a write-ahead log
(tuner/records/sqlite_store.py)."""
import os
import sqlite3

import pytest

from kernelevolve.tuner.records import sqlite_store
from kernelevolve.tuner.records.tracking import Tracker


def test_a_new_store_is_a_copy_that_mlflow_opens_and_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELEVOLVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "a" / "mlflow.db"
    first.parent.mkdir()
    Tracker(f"sqlite:///{first}", "exp")  # no empty store cached yet: made by MLflow once, kept
    [kept] = os.listdir(tmp_path / "cache")
    made_at = os.stat(tmp_path / "cache" / kept).st_mtime_ns
    second = tmp_path / "b" / "mlflow.db"
    second.parent.mkdir()
    assert sqlite_store.materialize(f"sqlite:///{second}")
    assert os.stat(tmp_path / "cache" / kept).st_mtime_ns == made_at  # not made again
    tracker = Tracker(f"sqlite:///{second}", "exp")
    run = tracker.client.create_run(tracker.experiment_id)
    tracker.client.log_metric(run.info.run_id, "latency_ms", 0.5)
    assert tracker.client.get_run(run.info.run_id).data.metrics == {"latency_ms": 0.5}
    # MLflow's Default experiment keeps its artifacts where MLflow puts them for this directory
    assert tracker.client.get_experiment("0").artifact_location == str(tmp_path / "mlruns" / "0")
    # and the copy's schema is the one the cache was made for (MLflow checked it on opening)
    with sqlite3.connect(second) as db:
        revision = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert kept.endswith(f"-{revision}.db")


def test_existing_stores_and_other_uris_are_left_to_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELEVOLVE_CACHE", str(tmp_path / "cache"))
    existing = tmp_path / "old.db"
    existing.write_bytes(b"")
    assert not sqlite_store.materialize(f"sqlite:///{existing}")
    assert existing.read_bytes() == b""
    assert not sqlite_store.materialize("http://127.0.0.1:5000")
    assert not sqlite_store.materialize(f"sqlite:///{tmp_path}/no-such-dir/m.db")
    assert not (tmp_path / "cache").exists()  # nothing was made for any of them


def test_a_local_store_is_written_through_a_write_ahead_log(tmp_path, monkeypatch):
    """Connections to a local SQLite store commit to a write-ahead log and wait for another
    writer's lock; the store's file says so to any later reader."""
    if sqlite_store._filesystem(str(tmp_path)).startswith(sqlite_store._NETWORK_FS):
        pytest.skip("the test's folder is on a network file system, where the journal stays")
    monkeypatch.setenv("KERNELEVOLVE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "m.db"
    tracker = Tracker(f"sqlite:///{path}", "exp")
    tracker.client.create_run(tracker.experiment_id)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stores_on_network_file_systems_keep_their_journal(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "_filesystem", lambda path: "nfs4")
    assert not sqlite_store.fast_writes(f"sqlite:///{tmp_path}/other.db")
    assert not sqlite_store.fast_writes("http://127.0.0.1:5000")


def test_a_copy_and_a_checkpointed_file_hold_every_commit(tmp_path, monkeypatch):
    """What is still in the write-ahead log reaches a copy (SQLite's backup) and, after the
    sweep's checkpoint, the store's file alone."""
    if sqlite_store._filesystem(str(tmp_path)).startswith(sqlite_store._NETWORK_FS):
        pytest.skip("the test's folder is on a network file system, where the journal stays")
    monkeypatch.setenv("KERNELEVOLVE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "m.db"
    tracker = Tracker(f"sqlite:///{path}", "exp")
    run = tracker.client.create_run(tracker.experiment_id).info.run_id
    assert os.path.getsize(f"{path}-wal") > 0  # the commit is in the log
    sqlite_store.copy_store(str(path), str(tmp_path / "copy.db"))
    with sqlite3.connect(tmp_path / "copy.db") as db:
        assert db.execute("SELECT count(*) FROM runs WHERE run_uuid = ?", (run,)).fetchone()[0] == 1
    assert sqlite_store.checkpoint(f"sqlite:///{path}")
    assert os.path.getsize(f"{path}-wal") == 0
    plain = tmp_path / "plain.db"
    plain.write_bytes(path.read_bytes())  # the file alone, as a file copy takes it
    with sqlite3.connect(plain) as db:
        assert db.execute("SELECT count(*) FROM runs WHERE run_uuid = ?", (run,)).fetchone()[0] == 1
