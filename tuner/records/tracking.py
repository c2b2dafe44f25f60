"""MLflow, written from the driver only: a parent run per study, a child run per candidate.

Records reach MLflow from the journal (tuner.records.journal), never straight from a worker: one process
writes the SQLite store (many writers hit lock errors), and a candidate is written exactly once,
keyed by its `candidate_id` tag, however often `sync` runs (after each trial, at the end, after a
resume or by `kernelevolve sync`).
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

from kernelevolve.tuner.experiment.registry import kernel_source_sha
from kernelevolve.tuner.records.schema import METRIC_KEYS, TAG_KEYS

# A tracking server that is away must cost seconds, not MLflow's default minutes of retries:
# the journal keeps every record, and the next sync (or `kernelevolve sync`) sends it.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

ROLE = "kernelevolve.role"
MAX_TAG = 7000  # MLflow caps tag values at 8000 characters
SYNC_BATCH = 200  # candidate runs a transaction of MLflow's SQL store at most (sync)

# Which record field goes where in MLflow: tuner.records.schema, the record's one home.


def resolve_uri(uri: str) -> str:
    """Make a relative sqlite path absolute from the driver's cwd (Ray workers chdir elsewhere)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + os.path.abspath(uri[len(prefix):])
    return uri


def artifact_root(uri: str) -> str | None:
    """Artifacts beside a SQLite store, so the store and its artifacts move together."""
    if uri.startswith("sqlite:///"):
        return os.path.join(os.path.dirname(uri[len("sqlite:///"):]), "mlartifacts")
    return None


def git_commit() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        sha = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("KERNELEVOLVE_GIT_COMMIT", "unknown")
    if not re.fullmatch(r"[0-9a-f]{40}", sha):  # not a git checkout (e.g. a copied tree)
        return os.environ.get("KERNELEVOLVE_GIT_COMMIT", "unknown")
    return sha + ("-dirty" if dirty else "")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _value(text: str):
    """A config param as the kernel saw it: MLflow keeps params as strings ("64", "True")."""
    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except ValueError:
        return text


def candidate_records(client: MlflowClient, experiment_id: str, parent_id: str) -> list[dict]:
    """A study's candidates read back from its child runs, as journal-like records, in the order
    they were logged (sync writes them in journal order)."""
    return [rec for _, rec in candidate_runs(client, experiment_id, parent_id)]


def candidate_runs(client: MlflowClient, experiment_id: str, parent_id: str) -> list[tuple[str, dict]]:
    """(child run id, its record as candidate_records reads it) of every candidate of a study:
    what a figure cites its candidate's run by."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              max_results=50000)
    runs.sort(key=lambda r: (r.info.start_time, r.data.tags.get("candidate_id", "")))
    out = []
    for r in runs:
        rec = {k: v for k, v in r.data.tags.items() if k in TAG_KEYS or k == "error"}
        rec.update(r.data.metrics)
        rec["config"] = {k: _value(v) for k, v in r.data.params.items()}
        out.append((r.info.run_id, rec))
    return out


def _run_name(record: dict) -> str:
    """What the MLflow UI lists: status, latency and the config, e.g. `ok 0.412ms BLOCK_M=128 ...`."""
    lat = f" {record['latency_ms']:.4g}ms" if _finite(record.get("latency_ms")) else ""
    cfg = " ".join(f"{k}={v}" for k, v in record.get("config", {}).items())
    return f"{record['status']}{lat} {cfg}"[:250]


class TrackingUnavailable(Exception):
    """The tracking store cannot be reached when a sweep starts: a user error (exit 2)."""


def _entities():
    """MLflow's entity classes, imported at first use: importing mlflow takes 1-2 s, which a
    sweep pays in the thread that opens the store while Ray starts, not in the driver's imports."""
    from mlflow.entities import Metric, Param, RunTag

    return Metric, Param, RunTag


class Tracker:
    def __init__(self, uri: str, experiment: str):
        from mlflow.tracking import MlflowClient

        from kernelevolve.tuner.records.sqlite_store import fast_writes, materialize

        self.uri = resolve_uri(uri)
        materialize(self.uri)  # a new SQLite store: a copy of an empty one (sqlite_store says why)
        fast_writes(self.uri)  # and its commits appends to a log
        self.client = MlflowClient(tracking_uri=self.uri)
        try:
            exp = self.client.get_experiment_by_name(experiment)
        except Exception as exc:
            raise TrackingUnavailable(f"the MLflow tracking store {self.uri} cannot be reached "
                                      f"({type(exc).__name__}); start it or fix tracking.uri") from None
        if exp is None:
            root = artifact_root(self.uri)
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=os.path.join(root, experiment) if root else None)
        else:
            self.experiment_id = exp.experiment_id
        self._logged: dict[str, set] = {}  # parent run id -> candidate ids already in MLflow
        # MLflow's SQL store, where it is one: sync writes its child runs in batches (sql_batch)
        from kernelevolve.tuner.records.sql_batch import sql_store

        self._sql = sql_store(self.client)
        self._artifacts = self.client.get_experiment(self.experiment_id).artifact_location if self._sql else None
        self.commit = git_commit()

    # -- studies -----------------------------------------------------------------------------
    def start_study(self, study, sweep_id: str, artifacts: dict[str, str], device: dict,
                    prior: list | None = None) -> str:
        """The study's parent run. `prior`: the recorded spaces its sampler is fit on first (None:
        the experiment names no search.prior)."""
        tags, params = study_run_fields(study, sweep_id, device, self.commit, prior)
        return self.open_study(tags, params, artifacts)

    def open_study(self, tags: dict, params: dict, artifacts: dict[str, str]) -> str:
        """Write a parent run from its fields (plain data: what crosses to the writer's process)."""
        _, Param, _ = _entities()
        run = self.client.create_run(self.experiment_id, tags=tags)
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        for name, text in artifacts.items():
            self.client.log_text(run.info.run_id, text, name)
        return run.info.run_id

    def find_study(self, sweep_id: str, study_key: str) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`kernelevolve.sweep` = '{sweep_id}' and "
                          f"tags.`kernelevolve.study` = '{study_key}'")
        return runs[0].info.run_id if runs else None

    def finish_study(self, parent_id: str, summary: dict, history: list | None = None,
                     records: list[dict] | None = None, rendered: tuple | None = None) -> None:
        """Write the study's outcome to its parent run: best config, counts, artifacts and the
        review plots. `records` are the study's candidates in journal order; without them (a
        `kernelevolve sync` after MLflow was away) they are read back from the child runs."""
        best = summary.get("best")
        metrics, params, tags = {}, {}, {"status_counts": json.dumps(summary["counts"])}
        if best:
            for k in ("latency_ms", "baseline_ms", "speedup", "tflops", "gbps",
                      "pct_flops_ceiling", "pct_bandwidth_ceiling"):
                if _finite(best.get(k)):
                    metrics[f"best_{k}"] = best[k]
            params.update({f"best.{k}": str(v) for k, v in best["config"].items()})
            tags["best_candidate_id"] = best.get("candidate_id", "")
            tags["best_measured_by"] = best.get("measured_by", "")
            self.client.log_text(parent_id, json.dumps(best, indent=2, default=str), "best_config.json")
            tags["best_impl"] = best.get("impl") or "triton"
        # the fastest Triton kernel beside the dispatched winner (`best.*`, which is the vendor
        # library's GEMM where that was fastest): reports show both, the table carries both
        triton = summary.get("best_triton")
        if triton:
            if _finite(triton.get("latency_ms")):
                metrics["best_triton_latency_ms"] = triton["latency_ms"]
            params.update({f"best_triton.{k}": str(v) for k, v in triton["config"].items()})
            tags["best_triton_measured_by"] = triton.get("measured_by", "")
        for k, v in (summary.get("end_s") or {}).items():  # where the study's end went (study_end)
            if _finite(v):
                metrics[f"end_{k}_s"] = v
        metrics["candidates"] = sum(summary["counts"].values())
        metrics["candidates_ok"] = summary["counts"].get("ok", 0)
        # The sampler's proposals that cost no candidate: a constraint broken (never a child run)
        # or a config already evaluated; where the space's valid configs are enumerated, such a
        # proposal is moved to the nearest valid config not yet evaluated instead (`projected`).
        proposals = summary.get("proposals") or {}
        for k in ("proposals", "rejected", "duplicates", "projected", "steered"):
            if k in proposals:
                metrics[f"proposals_{k}" if k != "proposals" else "proposals"] = proposals[k]
        if proposals.get("rejected_by"):
            self.client.log_text(parent_id, json.dumps(proposals["rejected_by"], indent=1),
                                 "rejected_proposals.json")
        if summary.get("exhausted"):
            tags["space_exhausted"] = "true"
        stamp = int(time.time() * 1000)
        Metric, Param, RunTag = _entities()
        self.client.log_batch(parent_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()],
                              params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        if history:  # what the sampler was told, in order: proof that a resume kept it
            self.client.log_text(parent_id, json.dumps(history, indent=1, default=str),
                                 "sampler_history.json")
        if summary.get("retime"):
            self.client.log_text(parent_id, json.dumps(summary["retime"], indent=2, default=str),
                                 "retime_top_k.json")
        self.log_plots(parent_id, records, rendered)
        self.client.set_terminated(parent_id, "FINISHED" if best else "FAILED")

    def log_plots(self, parent_id: str, records: list[dict] | None = None,
                  rendered: tuple | None = None) -> None:
        """Review plots of the study under `plots/`, with `plots/notes.json` saying which plot is
        missing and why. A plot that fails to draw must not cost the study its parent run: the
        failure is written to the notes (and a tag); a store that is away still raises.
        `rendered`: (pngs, notes) drawn elsewhere (the sweep draws them in a Ray task, off the
        thread that writes MLflow)."""
        from kernelevolve.tuner.review import plots  # matplotlib loads only when a study ends, not for `best`

        if rendered is None:
            run = self.client.get_run(parent_id)
            if records is None:
                records = candidate_records(self.client, self.experiment_id, parent_id)
            tags, params = run.data.tags, run.data.params
            rendered = plots.render_safely(records, tags.get("kernelevolve.study", parent_id),
                                           tags.get("hardware", ""), tags.get("timing", ""),
                                           params.get("problem.dtype"))
        pngs, notes = rendered
        if notes.get("error"):
            self.client.set_tag(parent_id, "plots_error", notes["error"][:MAX_TAG])
        with tempfile.TemporaryDirectory() as tmp:
            for name, png in pngs.items():
                with open(os.path.join(tmp, name), "wb") as fh:
                    fh.write(png)
            with open(os.path.join(tmp, "notes.json"), "w", encoding="utf-8") as fh:
                json.dump(notes, fh, indent=2)
            self.client.log_artifacts(parent_id, tmp, "plots")

    def with_client(self, fn, *args):
        """fn(MlflowClient, *args): writes the Tracker has no method for (profiles); the sweep
        calls it through tuner.records.remote_tracker, in the writer's process."""
        return fn(self.client, *args)

    # -- candidates ----------------------------------------------------------------------------
    def _known(self, parent_id: str) -> set:
        if parent_id not in self._logged:
            runs = self.client.search_runs([self.experiment_id],
                                           filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                                           max_results=50000)
            self._logged[parent_id] = {r.data.tags.get("candidate_id") for r in runs}
        return self._logged[parent_id]

    def _candidate_run(self, parent_id: str, record: dict, study_tags: dict):
        """A journal record as the child run MLflow keeps of it (tuner.records.sql_batch.CandidateRun)."""
        from kernelevolve.tuner.records.sql_batch import CandidateRun

        tags = {"mlflow.parentRunId": parent_id, ROLE: "candidate", "git_commit": self.commit, **study_tags}
        tags.update({k: str(record[k]) for k in TAG_KEYS if record.get(k) is not None})
        if record.get("error"):
            tags["error"] = str(record["error"])[:MAX_TAG]
        # The run's times are the candidate's own (when its measurement began and ended), not when
        # the driver got round to writing it; its metrics carry the same timestamp.
        end = record.get("timed_to") or record.get("journal_ts") or time.time()
        start = record.get("timed_from") or end
        return CandidateRun(name=_run_name(record), start_ms=int(start * 1000), end_ms=int(end * 1000),
                            status="FINISHED" if record["status"] == "ok" else "FAILED", tags=tags,
                            params={k: str(v) for k, v in record.get("config", {}).items()},
                            metrics={k: float(record[k]) for k in METRIC_KEYS if _finite(record.get(k))})

    def log_candidate(self, parent_id: str, record: dict, study_tags: dict) -> None:
        """One candidate's child run, through MLflow's client (what a store other than MLflow's
        SQL store gets; sync writes a SQL store's in one transaction)."""
        known = self._known(parent_id)
        if record["candidate_id"] in known:
            return
        run = self._candidate_run(parent_id, record, study_tags)
        Metric, Param, _ = _entities()
        made = self.client.create_run(self.experiment_id, start_time=run.start_ms,
                                      tags={"mlflow.runName": run.name, **run.tags})
        self.client.log_batch(made.info.run_id, metrics=[Metric(k, v, run.end_ms, 0) for k, v in run.metrics.items()],
                              params=[Param(k, v) for k, v in run.params.items()])
        self.client.set_terminated(made.info.run_id, run.status, end_time=run.end_ms)
        known.add(record["candidate_id"])

    def sync(self, parent_id: str, records: list[dict], study_tags: dict) -> int:
        """Write every journal record not yet in MLflow; returns how many were written. In MLflow's
        SQL store, up to SYNC_BATCH of them a transaction (tuner.records.sql_batch says why)."""
        from kernelevolve.tuner.records.sql_batch import write_runs

        known = self._known(parent_id)
        pending: dict = {}
        for rec in records:  # each candidate once, as first recorded
            if rec["candidate_id"] not in known:
                pending.setdefault(rec["candidate_id"], rec)
        new = list(pending.values())
        if self._sql is None:
            for rec in new:
                self.log_candidate(parent_id, rec, study_tags)
            return len(new)
        for i in range(0, len(new), SYNC_BATCH):
            chunk = new[i:i + SYNC_BATCH]
            write_runs(self._sql, self.experiment_id, self._artifacts,
                       [self._candidate_run(parent_id, r, study_tags) for r in chunk])
            known.update(r["candidate_id"] for r in chunk)
        return len(new)


def _resolved(sampler: str, study, prior: list | None = None) -> str:
    """The sampler that searches the study: "auto" names the one it builds for the study's space
    ("learned+prior" where the study has a prior, else learned or tpe by the count of its valid
    configs); "learned" with a prior is "learned+prior"; any other is itself."""
    space = getattr(study, "space", None)
    if sampler not in ("auto", "learned") or space is None:
        return sampler
    from kernelevolve.tuner.search.samplers import resolved

    return resolved(sampler, space, prior)


def study_run_fields(study, sweep_id: str, device: dict, commit: str,
                     prior: list | None = None) -> tuple[dict, dict]:
    """A study's parent run: its tags and params, computed where the study lives (the driver; a
    study holds kernels and spaces that need not pickle)."""
    s = study.experiment.search
    tags = {ROLE: "study", "mlflow.runName": study.key, "kernelevolve.study": study.key,
            "kernelevolve.sweep": sweep_id, "kernel": study.kernel_name, "kernel_ref": study.ref,
            "target": study.target.name, "hardware": study.target.profile.name,
            "timing": "interpreter" if study.target.profile.interpreter else "gpu",
            "git_commit": commit}
    tags.update({k: str(device[k]) for k in ("gpu_name", "node", "torch", "triton") if k in device})
    import optuna
    import ray

    # What `kernelevolve reproduce` compares: the kernel's source as swept; and the sampler's
    # code, without which the same seed need not propose the same candidates.
    tags.update(kernel_source_sha=kernel_source_sha(study.ref, study.tunable),
                optuna=optuna.__version__, ray=ray.__version__)
    params = {f"problem.{k}": v for k, v in study.problem.model_dump().items()}
    params.update({"sampler": s.sampler, "sampler_resolved": _resolved(s.sampler, study, prior),
                   "seed": s.seed, "samples": study.budget(),
                   "concurrency": s.concurrency, "timeout_s": s.timeout_s, "top_k": s.top_k,
                   "resources": json.dumps(study.target.ray_resources(), sort_keys=True),
                   # whether the counters steered this study's search: its candidates-to-best depend on it
                   "profile_top_k": study.experiment.profile.top_k,
                   "profile_steer": study.experiment.profile.steer})
    if prior is not None:  # search.prior: how many recorded spaces the sampler was fit on first
        params["prior_spaces"] = len(prior)
    # the clock the file asked for and the one every candidate, finalist and peer was timed with
    # (timing.clock: auto resolves per study, tuner.measure.clocks.choose_clock)
    params.update(clock=study.experiment.timing.clock, clock_resolved=study.clock.clock)
    if study.clock.estimate_us is not None:  # the roofline estimate auto compared with its threshold
        params["clock_estimate_us"] = f"{study.clock.estimate_us:.4g}"
    return tags, params
