"""A candidate's counters into MLflow: metrics and tags on its own child run, files under `profile/`;
the study's view of its profiled candidates (a table and a roofline) on the parent run.

Names and kinds come from tuner.records.schema (PROFILE_FIELDS): one home for every field.
The study's view is rebuilt from the child runs each time a candidate of it is profiled, so the
end-of-study top-k and a later `kernelevolve profile RUN_ID` land in the same table.
"""
from __future__ import annotations

import os
import tempfile
import time

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from kernelevolve.tuner.records.schema import PROFILE_METRIC_KEYS, PROFILE_TAG_KEYS
from kernelevolve.tuner.records.tracking import MAX_TAG, _finite, _value

PROFILED_TAG = "bottleneck"  # a child run carrying it has been profiled
STUDY_TABLE = "profile/finalists.csv"
STUDY_ROOFLINE = "profile/roofline_counters.png"


def log_candidate_profile(client: MlflowClient, run_id: str, fields: dict, files: list[str]) -> None:
    """The declared profile fields present in `fields`, and `files` (local paths: the raw CSV, the
    .ncu-rep that opens in the Nsight Compute GUI, ncu's log) under profile/, on one candidate run."""
    stamp = int(time.time() * 1000)
    metrics = [Metric(k, float(fields[k]), stamp, 0) for k in PROFILE_METRIC_KEYS if _finite(fields.get(k))]
    tags = [RunTag(k, str(fields[k])[:MAX_TAG]) for k in PROFILE_TAG_KEYS if fields.get(k) not in (None, "")]
    client.log_batch(run_id, metrics=metrics, tags=tags)
    for path in files:
        if path and os.path.exists(path):
            client.log_artifact(run_id, path, "profile")


def profiled_rows(client: MlflowClient, parent_id: str) -> list[dict]:
    """Every profiled candidate of a study: its config, latency and profile fields (from MLflow)."""
    run = client.get_run(parent_id)
    kids = client.search_runs([run.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and "
                                            f"tags.`{PROFILED_TAG}` != ''", max_results=50000)
    rows = []
    for r in kids:
        row = {"run_id": r.info.run_id, "candidate_id": r.data.tags.get("candidate_id", ""),
               "latency_ms": r.data.metrics.get("latency_ms"),
               "config": {k: _value(v) for k, v in r.data.params.items()}}
        row.update({k: r.data.metrics[k] for k in PROFILE_METRIC_KEYS if k in r.data.metrics})
        row.update({k: r.data.tags[k] for k in PROFILE_TAG_KEYS if k in r.data.tags})
        rows.append(row)
    rows.sort(key=lambda r: (r.get("profile_latency_ms") or r.get("latency_ms") or float("inf")))
    return rows


def log_study_profile(client: MlflowClient, parent_id: str) -> dict:
    """The study's table and counter roofline, rebuilt from its profiled candidates. Returns the
    notes of what could not be drawn ({} when everything was)."""
    from kernelevolve.tuner.experiment import hardware
    from kernelevolve.tuner.review import profile_view

    run = client.get_run(parent_id)
    rows = profiled_rows(client, parent_id)
    hw = hardware.PROFILES.get(run.data.tags.get("hardware", ""))
    dtype = run.data.params.get("problem.dtype")
    study = run.data.tags.get("kernelevolve.study", parent_id)
    with tempfile.TemporaryDirectory() as tmp:
        table = os.path.join(tmp, os.path.basename(STUDY_TABLE))
        with open(table, "w", encoding="utf-8") as fh:
            fh.write(profile_view.table_csv(rows, hw, dtype))
        client.log_artifact(parent_id, table, os.path.dirname(STUDY_TABLE))
        png, why = profile_view.counter_roofline(rows, study, hw, dtype)
        if png is None:
            client.set_tag(parent_id, "profile_roofline", why[:MAX_TAG])
            return {os.path.basename(STUDY_ROOFLINE): why}
        path = os.path.join(tmp, os.path.basename(STUDY_ROOFLINE))
        with open(path, "wb") as fh:
            fh.write(png)
        client.log_artifact(parent_id, path, os.path.dirname(STUDY_ROOFLINE))
    return {}
