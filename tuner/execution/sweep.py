"""The driver: one Ray Tune study per (kernel, problem, target); records journaled, then sent to MLflow.

For each study: check that the target can be served, open a parent MLflow run, let
ConstrainedSearch (Optuna through Ray Tune) propose candidates that Ray runs with the target's
resources, journal every candidate as it ends and copy the journal to MLflow, then re-time the
top-k side by side with the torch peer and write the winner to the parent run. Nothing incorrect
can win: only candidates whose status is `ok` (verified on two fresh input sets) are re-timed.

Nothing is lost: the journal is written first (fsynced, per candidate). A tracking server that is
away only delays MLflow (`kernelevolve sync` or the next sync catches up); a killed driver is
resumed with `--resume`, which replays the journal into a fresh searcher and runs what is left.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from collections import Counter

import ray
from ray import tune

from tuner.experiment import config as config_mod
from tuner.experiment import hardware
from tuner.records.journal import SweepState, unique_by_candidate
from tuner.review.progress import Progress
from tuner.search.constrained import ConstrainedSearch
from tuner.records.tracking import Tracker
from tuner.execution.trial import one_shot, run_candidate

RECORD_KEYS = ("status", "error", "timing", "latency_ms", "latency_p20_ms", "latency_p80_ms",
               "tflops", "gbps", "pct_flops_ceiling", "pct_bandwidth_ceiling", "baseline_ms",
               "speedup", "compile_s", "eval_s", "wall_s", "rel_error", "max_error", "n_regs",
               "n_spills", "shared_bytes", "objective", "gpu_name", "gpu_uuid", "node",
               "worker_pid", "worker_replaced", "retries", "torch", "triton", "ray_node_id", "ray_gpu_ids",
               "timed_from", "timed_to", "lock_wait_s", "device_busy_s")


class TargetUnavailable(Exception):
    """No node of the Ray cluster can serve a target: a user error (exit 2), never a hang."""


class NothingToResume(Exception):
    """--resume with no unfinished sweep of this experiment: a user error (exit 2)."""


def state_root(exp_name: str) -> str:
    return os.path.abspath(os.path.join(".kernelevolve", exp_name))


# A Ray started here (no --address) advertises a loopback address, so nothing of it is reachable
# from outside this machine. Ray maps exactly "127.0.0.1" to the machine's network address on
# Linux; any other loopback address (all of 127/8 is loopback on Linux) it takes as given.
LOCAL_RAY_IP = "127.0.0.2" if sys.platform.startswith("linux") else "127.0.0.1"


def init_ray(address: str | None) -> None:
    # Trials must see the driver's cwd: relative kernel paths and stores resolve against it.
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if ray.is_initialized():
        return
    # address="local": a private Ray for this sweep, never whatever cluster `ray start` left
    # registered on this machine (a stale one would make ray.init wait for it for minutes).
    ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, **({} if address else {"_node_ip_address": LOCAL_RAY_IP}))


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


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


# Live per-study hooks of this driver process, by study key. Ray Tune pickles its callbacks with
# the experiment state; the callback holds only the key, so whatever the hook reaches (an MLflow
# HTTP client, a progress display) need not be picklable.
_ON_RECORD: dict = {}


class RecordCallback(tune.Callback):
    """Journal each finished trial, then hand the journal to MLflow (driver side, in order)."""

    def __init__(self, journal_path: str, study_key: str):
        self.journal_path, self.study_key = journal_path, study_key

    def _record(self, trial, result: dict) -> None:
        from tuner.records.journal import Journal

        rec = {k: result[k] for k in RECORD_KEYS if k in result}
        rec.update(candidate_id=trial.trial_id, study=self.study_key, config=dict(trial.config))
        Journal(self.journal_path).append(rec)
        _ON_RECORD[self.study_key](rec)

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
    hw, s = study.target.profile, study.experiment.search
    env = {"TRITON_DEFAULT_FP_FUSION": "1"}  # explicit: results must not depend on a default
    if hw.interpreter:
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    if "TRITON_CACHE_DIR" in os.environ:  # a cache chosen by the driver reaches every worker
        env["TRITON_CACHE_DIR"] = os.environ["TRITON_CACHE_DIR"]
    bench = study.experiment.timing.bench_settings()
    return {"kernel_ref": study.ref, "problem": study.problem.model_dump(), "hardware": hw.name,
            "seed": s.seed, "timeout_s": s.timeout_s, "retries": s.retries, "bench": bench,
            "env": env, "cwd": os.getcwd(), "resources": resources, "ctx_id": ctx_id}


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


class StudyRecorder:
    """Sends a study's journal to MLflow, tolerating a tracking server that is away."""

    def __init__(self, tracker: Tracker, state: SweepState, study, log):
        self.tracker, self.state, self.study, self.log = tracker, state, study, log
        self.journal = state.journal(slug(study.key))
        self._records: list[dict] = []  # the journal so far, read incrementally
        self.tags = {"study": study.key, "target": study.target.name, "kernel": study.kernel_name}
        self.down_since = None

    @property
    def parent(self):
        return self.state.study(self.study.key).get("parent")

    def _guard(self, what, fn):
        try:
            out = fn()
        except Exception as exc:  # MLflow away: the journal keeps everything; say so once
            if self.down_since is None:
                self.down_since = time.time()
                self.log(f"  ! MLflow unreachable ({type(exc).__name__}) during {what}: records "
                         f"stay in {self.journal.path}; sent when it returns or by `kernelevolve sync`")
            return None
        if self.down_since is not None:
            self.log(f"  MLflow reachable again after {time.time() - self.down_since:.0f} s: catching up")
            self.down_since = None
        return out

    def records(self) -> list[dict]:
        """Every journaled candidate once, in order (new lines read since the last call only)."""
        self._records += self.journal.read_new()
        return unique_by_candidate(self._records)

    def sync(self) -> None:
        if self.parent:
            self._guard("sync", lambda: self.tracker.sync(self.parent, self.records(), self.tags))

    def finish(self, summary: dict, history: list) -> bool:
        def send():
            self.tracker.sync(self.parent, self.records(), self.tags)
            self.tracker.finish_study(self.parent, summary, history, records=self.records())
            return True
        return bool(self._guard("finish", send))


def _start_points(study, state: SweepState, log) -> tuple[list[dict], dict | None]:
    """The configs evaluated first: the kernel entry's start_points, the search's, then the warm
    start's (chosen once per study and kept in the sweep state, so that a resumed study enqueues
    the same ones). Returns them and the warm start's record (None without one)."""
    s = study.experiment.search
    points = list(study.kernel_start_points)
    points += [p for p in s.start_points if p not in points]
    if not s.warm_start:
        return points, None
    if "warm_start" not in state.study(study.key):
        from tuner.deploy.export import warm_start_points

        warm, entries = warm_start_points(s.warm_start, study)
        state.update(study.key, warm_start={"table": s.warm_start, "configs": warm, "entries": entries})
        log(f"  warm start: {len(warm)} configs from {s.warm_start} "
            f"({len(entries)} entries of this kernel, dtype and hardware)")
    record = state.study(study.key)["warm_start"]
    points += [p for p in record["configs"] if p not in points]
    return points, record


def run_study(study, tracker: Tracker, state: SweepState, progress, log) -> dict:
    s = study.experiment.search
    resources = check_target(study.target)
    ctx = _context(study, resources, f"{state.sweep_id}/{study.key}")
    device = probe_target(study, ctx)
    rec = StudyRecorder(tracker, state, study, log)
    start_points, warm = _start_points(study, state, log)
    if not rec.parent:
        artifacts = {"experiment.yaml": config_mod.dump(study.experiment),
                     "search_space.json": study.space.to_json()}
        if warm is not None:  # what the warm start enqueued: the table file may change later
            artifacts["warm_start.json"] = json.dumps(warm, indent=1, default=str)
        state.update(study.key, parent=tracker.start_study(study, state.sweep_id, artifacts, device))

    searcher = ConstrainedSearch(study.space, s.sampler, s.seed, rec.journal.path, study.key,
                                 s.max_rejects, start_points=start_points)
    before = rec.records()
    replayed = searcher.replay(before)
    evaluated = sum(1 for r in before if r["status"] != "invalid")
    budget = study.budget()
    remaining = max(0, budget - evaluated)
    progress.study_started(study, budget, evaluated)
    if replayed:
        log(f"  resumed: {replayed} journaled candidates told to the sampler, {remaining} to go")
        rec.sync()

    def on_record(r):
        rec.sync()
        progress.candidate(study, r)

    t0 = time.time()
    attempt = state.study(study.key).get("attempts", 0) + 1
    state.update(study.key, attempts=attempt)
    if remaining:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(run_candidate, ctx=ctx), resources),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining,
                                        max_concurrent_trials=s.concurrency, reuse_actors=True),
            run_config=tune.RunConfig(
                name=slug(f"{state.sweep_id}-{study.key}-{attempt}"), verbose=0,
                storage_path=os.path.join(state.folder, "ray"),
                callbacks=[RecordCallback(rec.journal.path, study.key)]),
        )
        _ON_RECORD[study.key] = on_record
        try:
            tuner.fit()
        finally:
            _ON_RECORD.pop(study.key, None)
    fit_s = time.time() - t0
    records = rec.records()
    rec.sync()
    top = sorted((r for r in records if r["status"] == "ok"), key=lambda r: r["latency_ms"])[: s.top_k]
    rounds = study.experiment.timing.retime_rounds
    retimed = (_remote(ctx, {"op": "retime", "configs": [r["config"] for r in top], "rounds": rounds},
                       s.timeout_s * (len(top) + 1)) if top else None)
    summary = summarize(records, retimed)
    summary.update(study=study.key, parent_run_id=rec.parent, wall_s=time.time() - t0, fit_s=fit_s,
                   timing="interpreter" if study.target.profile.interpreter else "gpu")
    history = [{"params": p, "state": st, "value": v} for p, st, v in searcher.history()]
    in_mlflow = rec.finish(summary, history)
    state.update(study.key, done=True, summary=summary, history=history, in_mlflow=in_mlflow)
    progress.study_finished(study, summary)
    return summary


def run(exp, address: str | None = None, log=print, resume: bool = False, progress=None) -> list[dict]:
    root = state_root(exp.name)
    if resume:
        state = SweepState.latest(root)
        if state is None:
            raise NothingToResume(f"no sweep of '{exp.name}' to resume under {root}")
    init_ray(address or exp.ray.address)
    for target in exp.targets:  # every target checked before the first study starts
        check_target(target)
    tracker = Tracker(exp.tracking.uri, exp.name)
    if not resume:
        sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        state = SweepState.new(root, sweep_id, exp.source_path)
    log(f"sweep {state.sweep_id} of {exp.name}{' (resumed)' if resume else ''}: tracking at {tracker.uri}")
    progress = progress or Progress(log)
    out = []
    for study in exp.studies():
        done = state.study(study.key)
        if done.get("done"):
            log(f"study {study.key}: already finished in this sweep")
            out.append(done["summary"])
            continue
        out.append(run_study(study, tracker, state, progress, log))
    return out


def sync(exp, log=print) -> dict:
    """Send every journaled record of the experiment's latest sweep to MLflow; finish the parent
    runs of studies that ended while MLflow was away. Returns counts of what was written."""
    state = SweepState.latest(state_root(exp.name))
    if state is None:
        raise NothingToResume(f"no sweep of '{exp.name}' under {state_root(exp.name)}")
    tracker = Tracker(exp.tracking.uri, exp.name)
    written, finished = 0, 0
    for study in exp.studies():
        st = state.study(study.key)
        if not st.get("parent"):
            continue
        journal = state.journal(slug(study.key))
        tags = {"study": study.key, "target": study.target.name, "kernel": study.kernel_name}
        written += tracker.sync(st["parent"], unique_by_candidate(journal.records()), tags)
        if st.get("done") and not st.get("in_mlflow"):
            tracker.finish_study(st["parent"], st["summary"], st.get("history", []))
            state.update(study.key, in_mlflow=True)
            finished += 1
    log(f"sync {state.sweep_id}: {written} candidate records written, {finished} studies finished")
    return {"written": written, "finished": finished}

