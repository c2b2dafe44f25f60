"""The driver: one Ray Tune study per (kernel, problem, target), records journaled then sent to MLflow.

For each study: check that the target can be served, open a parent MLflow run, let
ConstrainedSearch (Optuna through Ray Tune) propose candidates that Ray runs with the target's
resources, journal and log every candidate as it ends, then re-time the top-k side by side with
the torch peer and write the winner to the parent run. Nothing incorrect can win: only candidates
whose status is `ok` (verified on two fresh input sets) reach the re-timing.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections import Counter

import ray
from ray import tune

from tuner import config as config_mod
from tuner.journal import Journal
from tuner.search import ConstrainedSearch
from tuner.tracking import Tracker
from tuner import hardware
from tuner.trial import one_shot, run_candidate

RECORD_KEYS = ("status", "error", "timing", "latency_ms", "latency_p20_ms", "latency_p80_ms",
               "tflops", "gbps", "pct_flops_ceiling", "pct_bandwidth_ceiling", "baseline_ms",
               "speedup", "compile_s", "eval_s", "wall_s", "rel_error", "max_error", "n_regs",
               "n_spills", "shared_bytes", "objective", "gpu_name", "gpu_uuid", "node",
               "worker_pid", "worker_replaced", "torch", "triton")


class TargetUnavailable(Exception):
    """No node of the Ray cluster can serve a target: a user error (exit 2), never a hang."""


def state_dir(exp_name: str) -> str:
    return os.path.abspath(os.path.join(".kernelevolve", exp_name))


def init_ray(address: str | None) -> None:
    # Trials must see the driver's cwd: relative kernel paths and stores resolve against it.
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)


def target_resources(target) -> dict:
    """The target's Ray resources; a GPU target also asks for its accelerator type where the
    cluster labels GPUs by type, so an H100 study never lands on another GPU."""
    res = target.ray_resources()
    hw = target.profile
    labels = [k for k in ray.cluster_resources() if k.startswith("accelerator_type:")]
    if target.resources is None and res.get("GPU") and hw.accelerator_type and labels:
        res[f"accelerator_type:{hw.accelerator_type}"] = 0.001
    return res


def check_target(target) -> dict:
    total = ray.cluster_resources()
    need = target_resources(target)
    for key, amount in need.items():
        if total.get(key, 0) < amount:
            have = ", ".join(f"{k}={v:g}" for k, v in sorted(total.items())
                             if not k.startswith(("node:", "memory", "object_store")))
            hint = (" This machine has no GPU: run experiments/quickstart.yaml (the CPU interpreter), "
                    "or pass --address of a Ray cluster with GPUs." if key == "GPU" else "")
            raise TargetUnavailable(f"target '{target.name}' needs {key}={amount:g} per candidate, "
                                    f"but the Ray cluster offers {have or 'nothing'}.{hint}")
    return need


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


class RecordCallback(tune.Callback):
    """Journal each finished trial, then hand the journal to MLflow (driver side, in order)."""

    def __init__(self, journal_path: str, study_key: str, sink, progress):
        self.journal_path, self.study_key, self.sink, self.progress = journal_path, study_key, sink, progress

    def _record(self, trial, result: dict) -> None:
        rec = {k: result[k] for k in RECORD_KEYS if k in result}
        rec.update(candidate_id=trial.trial_id, study=self.study_key, config=dict(trial.config))
        Journal(self.journal_path).append(rec)
        self.sink()
        self.progress(rec)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = dict(trial.last_result or {})
        if "status" not in result:  # ended without a report: should not happen, never lost
            result = {"status": "runtime_error", "error": "trial ended without reporting a result"}
        self._record(trial, result)

    def on_trial_error(self, iteration, trials, trial, **info):
        text = "trial actor failed"
        path = getattr(trial, "error_file", None)
        if path and os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()[-4000:]
        self._record(trial, {"status": "runtime_error", "error": text})


def _context(study, resources: dict, ctx_id: str) -> dict:
    hw = study.target.profile
    env = {"TRITON_DEFAULT_FP_FUSION": "1"}  # explicit: results must not depend on a default
    if hw.interpreter:
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    bench = {"warmup_ms": 25, "rep_ms": 100} if not hw.interpreter else {"wall_reps": 3}
    return {"kernel_ref": study.ref, "problem": study.problem.model_dump(), "hardware": hw.name,
            "seed": study.experiment.search.seed, "timeout_s": study.experiment.search.timeout_s,
            "bench": bench, "env": env, "cwd": os.getcwd(), "resources": resources,
            "ctx_id": ctx_id}


def _remote(ctx: dict, payload: dict, timeout_s: float) -> dict:
    """One request on the target's resources, in a fresh worker; failures come back as records."""
    res = dict(ctx["resources"])
    task = ray.remote(one_shot).options(num_cpus=res.pop("CPU", 1), num_gpus=res.pop("GPU", 0),
                                        resources=res or None, max_retries=0)
    payload = {"kernel_ref": ctx["kernel_ref"], "problem": ctx["problem"],
               "hardware": ctx["hardware"], "bench": ctx["bench"], **payload}
    try:
        return ray.get(task.remote(ctx, payload, timeout_s), timeout=timeout_s + 120)
    except Exception as exc:
        return {"status": "runtime_error", "error": f"{type(exc).__name__}: {exc}"}


def probe_target(study, ctx: dict) -> dict:
    """Check, on the target's own resources, that its device is the chip the target names."""
    info = _remote(ctx, {"op": "probe"}, timeout_s=300)
    if info.get("status") != "ok":
        raise TargetUnavailable(f"target '{study.target.name}': its worker failed to start: "
                                f"{info.get('error')}")
    if not hardware.matches(study.target.profile, info):
        raise TargetUnavailable(f"target '{study.target.name}' names {study.target.profile.name}, "
                                f"but its worker found '{info.get('gpu_name')}'")
    return info


def summarize(records: list[dict], retimed: dict | None) -> dict:
    counts = Counter(r["status"] for r in records)
    ok = sorted((r for r in records if r["status"] == "ok"), key=lambda r: r["latency_ms"])
    best = None
    if retimed and retimed.get("status") == "ok" and retimed["rows"]:
        row = min(retimed["rows"], key=lambda r: r["latency_ms"])
        match = next(r for r in ok if r["config"] == row["config"])
        best = {**match, **{k: v for k, v in row.items() if k != "rounds_ms"},
                "baseline_ms": retimed.get("baseline_ms"), "measured_by": "retime_interleaved"}
    elif ok:
        best = {**ok[0], "measured_by": "sweep"}
    return {"counts": dict(counts), "best": best, "retime": retimed}


def run_study(study, tracker: Tracker, sweep_id: str, log) -> dict:
    s = study.experiment.search
    resources = check_target(study.target)
    journal = Journal(os.path.join(state_dir(study.experiment.name), sweep_id, _slug(study.key) + ".jsonl"))
    artifacts = {"experiment.yaml": config_mod.dump(study.experiment), "search_space.json": study.space.to_json()}
    ctx = _context(study, resources, f"{sweep_id}/{study.key}")
    device = probe_target(study, ctx)
    parent = tracker.start_study(study, sweep_id, artifacts, device)
    tags = {"study": study.key, "target": study.target.name, "kernel": study.kernel_name}

    def sink():
        tracker.sync(parent, journal.records(), tags)

    budget = study.budget()
    done = [0]

    def progress(rec):
        done[0] += 1
        lat = f"{rec['latency_ms']:.4g} ms" if rec.get("latency_ms") else ""
        log(f"  [{done[0]}/{budget}] {rec['status']:<16} {lat:>12}  {json.dumps(rec['config'])}"
            + (f"  ({str(rec.get('error', ''))[:120]})" if rec["status"] != "ok" else ""))

    searcher = ConstrainedSearch(study.space, s.sampler, s.seed, journal.path, study.key, s.max_rejects)
    trainable = tune.with_resources(tune.with_parameters(run_candidate, ctx=ctx), resources)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=budget,
                                    max_concurrent_trials=s.concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=_slug(f"{sweep_id}-{study.key}"), verbose=0,
                                  storage_path=os.path.join(state_dir(study.experiment.name), "ray"),
                                  callbacks=[RecordCallback(journal.path, study.key, sink, progress)]),
    )
    log(f"study {study.key}: {s.sampler} sampler, {budget} candidates, "
        f"{s.concurrency} at a time, resources {resources}")
    t0 = time.time()
    tuner.fit()
    records = journal.records()
    sink()
    top = sorted((r for r in records if r["status"] == "ok"), key=lambda r: r["latency_ms"])[: s.top_k]
    retimed = (_remote(ctx, {"op": "retime", "configs": [r["config"] for r in top], "rounds": 5},
                       s.timeout_s * (len(top) + 1)) if top else None)
    summary = summarize(records, retimed)
    summary.update(study=study.key, parent_run_id=parent, wall_s=time.time() - t0,
                   timing="interpreter" if study.target.profile.interpreter else "gpu")
    tracker.finish_study(parent, summary)
    return summary


def run(exp, address: str | None = None, log=print) -> list[dict]:
    init_ray(address or exp.ray.address)
    for target in exp.targets:  # every target checked before the first study starts
        check_target(target)
    tracker = Tracker(exp.tracking.uri, exp.name)
    sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    log(f"sweep {sweep_id} of {exp.name}: tracking at {tracker.uri}")
    return [run_study(study, tracker, sweep_id, log) for study in exp.studies()]

