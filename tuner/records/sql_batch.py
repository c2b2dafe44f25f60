"""Many finished candidate runs written to MLflow's SQL store in one transaction.

Why our own: MLflow's client writes a run in three calls (create_run, log_batch, set_terminated),
and its SQLAlchemy store turns them into six sessions and commits with their queries (the run
looked up again for each, the latest metrics read and merged key by key). Measured: ~100 child
runs a second from one writer on the 2-core CPU machine, and on a 4 x H200 node the sweep's
writers fell behind the ~50 candidates a second of four GPUs: its studies waited up to 10-14 s
for their records at their end (0.1 s on one GPU), and the sweep's last record came 4.6-5.6 s
after its last candidate (docs/benchmarks.md). MLflow has no call that creates many runs, so where
the store is MLflow's own SQL store, a sync's new candidates become rows of MLflow's own tables
(its ORM models) in one session, as its create_run, log_batch and set_terminated would have
written them: the same run fields, tags (mlflow.runName, mlflow.user), params, metric history and
latest metrics. Any other store (a tracking server over HTTP) gets MLflow's client calls.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass
class CandidateRun:
    """A finished child run as MLflow stores it: times in ms since the epoch, FINISHED or FAILED."""

    name: str
    start_ms: int
    end_ms: int
    status: str
    tags: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # key -> finite float, stamped end_ms, step 0


def sql_store(client):
    """The client's store where it is MLflow's SQLAlchemy store (SQLite, PostgreSQL, MySQL, ...),
    else None."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:  # an MLflow without the SQL store (mlflow-skinny without SQLAlchemy)
        return None
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store if isinstance(store, SqlAlchemyStore) else None


def write_runs(store, experiment_id: str, artifact_location: str, runs: list[CandidateRun]) -> list[str]:
    """`runs` in one transaction of `store`, in the experiment whose artifact location is given;
    their run ids, in order. All or none are written."""
    from mlflow.entities import LifecycleStage, SourceType
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_USER
    from mlflow.utils.uri import append_to_uri_path

    ids, rows = [], {SqlRun: [], SqlTag: [], SqlParam: [], SqlMetric: [], SqlLatestMetric: []}
    for run in runs:
        run_id = uuid.uuid4().hex
        tags = {MLFLOW_RUN_NAME: run.name, **run.tags}
        rows[SqlRun].append(dict(
            name=run.name, run_uuid=run_id, experiment_id=int(experiment_id),
            artifact_uri=append_to_uri_path(artifact_location, run_id, "artifacts"),
            source_type=SourceType.to_string(SourceType.UNKNOWN), source_name="", entry_point_name="",
            user_id=tags.get(MLFLOW_USER, "unknown"), status=run.status, start_time=run.start_ms,
            end_time=run.end_ms, deleted_time=None, source_version="", lifecycle_stage=LifecycleStage.ACTIVE))
        rows[SqlTag] += [dict(run_uuid=run_id, key=k, value=str(v)) for k, v in tags.items()]
        rows[SqlParam] += [dict(run_uuid=run_id, key=k, value=str(v)) for k, v in run.params.items()]
        points = [dict(run_uuid=run_id, key=k, value=float(v), timestamp=run.end_ms, step=0, is_nan=False)
                  for k, v in run.metrics.items()]
        rows[SqlMetric] += points  # one value each: it is also the latest
        rows[SqlLatestMetric] += points
        ids.append(run_id)
    # the tables' own inserts (SQLAlchemy Core, runs first: the others refer to them), not one ORM
    # object a row: 17,000 rows for 200 runs
    with store.ManagedSessionMaker(read_only=False) as session:
        for model, values in rows.items():
            if values:
                session.execute(model.__table__.insert(), values)
    return ids
