"""Candidate runs written to MLflow's SQL store in one transaction (tuner/records/sql_batch.py) are
the runs MLflow's own client calls write: the same fields, tags, params, metric history and latest
metrics, found by the same searches; a transaction that fails writes none of its runs."""
import time

import pytest

from kernelevolve.tuner.records import sql_batch
from kernelevolve.tuner.records.tracking import Tracker, candidate_records

mlflow = pytest.importorskip("mlflow")


def _record(cid: str, status: str = "ok") -> dict:
    now = time.time()
    rec = {"candidate_id": cid, "status": status, "config": {"BLOCK": 64, "num_warps": 4, "TMA": True},
           "timed_from": now - 0.25, "timed_to": now, "latency_ms": 0.125, "tflops": 311.5,
           "compile_s": 0.7, "lane_s": 0.05, "objective": -3.9, "kernel": "matmul"}
    if status != "ok":
        rec["error"] = "max error 3.1 over its bound"
    return rec


def _parent(tracker: Tracker, key: str) -> str:
    return tracker.open_study({"kernelevolve.role": "study", "study": key}, {"sampler": "tpe"}, {})


def test_a_batched_run_is_the_run_mlflow_s_client_writes(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "batch")
    client = tracker.client
    assert sql_batch.sql_store(client) is not None
    by_client, by_batch = _parent(tracker, "a"), _parent(tracker, "b")
    for status in ("ok", "incorrect"):
        rec = _record(f"c-{status}", status)
        tracker.log_candidate(by_client, rec, {"study": "s"})
        assert tracker.sync(by_batch, [rec], {"study": "s"}) == 1
    for status in ("ok", "incorrect"):
        one, other = (next(r for r in client.search_runs(
            [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}' and "
                                                   f"tags.candidate_id = 'c-{status}'")) for parent in (by_client, by_batch))
        a, b = one.info, other.info
        for field in ("status", "start_time", "end_time", "lifecycle_stage", "user_id", "run_name", "experiment_id"):
            assert getattr(a, field) == getattr(b, field), field
        assert a.status == ("FINISHED" if status == "ok" else "FAILED")
        assert b.artifact_uri.endswith(f"/{b.run_id}/artifacts") and a.artifact_uri.endswith(f"/{a.run_id}/artifacts")
        assert one.data.metrics == other.data.metrics and one.data.params == other.data.params
        tags = [{k: v for k, v in r.data.tags.items() if k != "mlflow.parentRunId"} for r in (one, other)]
        assert tags[0] == tags[1] and tags[1]["error" if status != "ok" else "candidate_id"]
        history = [client.get_metric_history(r.info.run_id, "latency_ms") for r in (one, other)]
        assert [(m.value, m.timestamp, m.step) for m in history[0]] == [(m.value, m.timestamp, m.step) for m in history[1]]
    # the searches the UI and the review commands make find both alike
    found = client.search_runs([tracker.experiment_id], filter_string="metrics.latency_ms < 0.2 and params.BLOCK = '64'")
    assert len(found) == 4
    assert candidate_records(client, tracker.experiment_id, by_client) == \
        candidate_records(client, tracker.experiment_id, by_batch)


def test_a_sync_writes_each_candidate_once_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr("kernelevolve.tuner.records.tracking.SYNC_BATCH", 3)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "batch")
    parent = _parent(tracker, "a")
    records = [_record(f"c-{i}") for i in range(7)]
    assert tracker.sync(parent, records[:5] + records[:2], {"study": "s"}) == 5  # repeats: once
    assert tracker.sync(parent, records, {"study": "s"}) == 2
    assert tracker.sync(parent, records, {"study": "s"}) == 0
    fresh = Tracker(tracker.uri, "batch")  # another process: what is in MLflow, not in memory
    assert fresh.sync(parent, records, {"study": "s"}) == 0
    assert len(candidate_records(tracker.client, tracker.experiment_id, parent)) == 7


def test_a_failed_transaction_writes_none_of_its_runs(tmp_path, monkeypatch):
    from mlflow.store.tracking.dbmodels.models import SqlParam

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "batch")
    parent = _parent(tracker, "a")
    store = sql_batch.sql_store(tracker.client)
    real = store.ManagedSessionMaker

    class Failing:
        def __init__(self, *a, **kw):
            self.cm = real(*a, **kw)

        def __enter__(self):
            session = self.cm.__enter__()
            execute = session.execute

            def fail_on_params(statement, *args, **kwargs):
                if getattr(statement, "table", None) is SqlParam.__table__:
                    raise RuntimeError("disk full")
                return execute(statement, *args, **kwargs)
            session.execute = fail_on_params
            return session

        def __exit__(self, *exc):
            return self.cm.__exit__(*exc)
    monkeypatch.setattr(store, "ManagedSessionMaker", Failing)
    with pytest.raises(Exception, match="disk full"):  # (MLflow's session wraps it in its own error)
        tracker.sync(parent, [_record("c-0"), _record("c-1")], {"study": "s"})
    monkeypatch.setattr(store, "ManagedSessionMaker", real)
    assert candidate_records(tracker.client, tracker.experiment_id, parent) == []
    assert tracker.sync(parent, [_record("c-0"), _record("c-1")], {"study": "s"}) == 2  # sent on the next sync


def test_a_store_other_than_mlflow_s_sql_store_gets_the_client_calls():
    class Elsewhere:  # e.g. a tracking server over HTTP: MLflow's RestStore
        class _tracking_client:
            store = object()
    assert sql_batch.sql_store(Elsewhere()) is None
