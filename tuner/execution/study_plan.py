"""One study inside a sweep, planned before the Tuner starts: its recorder and parent run, its
searcher (start points, warm start, prior, the vendor configs outside its space), its budget
after a resume, and the context every one of its trials carries (tuner.execution.trial).

The sweep (tuner.execution.sweep) plans each study with `plan`, then runs them all in one Tuner.
"""
from __future__ import annotations

import json
import re
import time

from kernelevolve.tuner.execution import cluster
from kernelevolve.tuner.execution.cluster import TargetUnavailable, check_target
from kernelevolve.tuner.execution.studies import _start_points
from kernelevolve.tuner.experiment import config as config_mod
from kernelevolve.tuner.measure.clocks import AUTO
from kernelevolve.tuner.measure.vendor import vendor_configs_of
from kernelevolve.tuner.records.recorder import StudyRecorder
from kernelevolve.tuner.search import prior as prior_mod
from kernelevolve.tuner.search.constrained import ConstrainedSearch

COMPILE_INPUT_BYTES = 1 << 30  # inputs a trial's compiling process keeps, across studies
# The niceness of a trial's compiling process (and the compilers it starts): a GPU node runs 16 of
# them beside each GPU lane's evaluator and judge, and a candidate's verification is host work of
# the lane's (the judge's checks took ~10 ms a candidate on a busy H100 host against ~6 ms alone).
# Compiles run ahead of the lane, so they are the ones that can wait for a core.
COMPILE_NICE = 10


def slug(text: str) -> str:
    """A study key as a file or run name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


class Plan:
    """One study inside the sweep: its searcher, recorder, budget and, once done, its summary."""

    def __init__(self, study, ctx: dict, recorder: StudyRecorder, searcher: ConstrainedSearch,
                 remaining: int):
        self.study, self.ctx, self.recorder, self.searcher = study, ctx, recorder, searcher
        self.remaining = remaining
        self.records: list[dict] = []  # this run's candidates, in the order they ended
        self.t0 = time.time()
        self.finishing = False
        # profile.steer: candidate id -> its profile; records seen at the last steer; one at a time
        self.profiled: dict[str, dict] = {}
        self.steered_at = 0
        self.steering = False


def prior_of(recorded, study) -> list | None:
    """The recorded spaces the study's sampler is fit on first (tuner.search.prior.prior_for):
    its kernel's, at other problems or on other hardware. None: the experiment names no prior."""
    if recorded is None:
        return None
    return prior_mod.prior_for(recorded, study.kernel_name, study.problem.model_dump(),
                               study.target.profile.name, space=study.space)


def plan(sweep, study, cwd: str) -> None:
    """The study's Plan, in sweep.plans; its parent run opened by the sweep's writer (before any of
    its candidates is written)."""
    s, target = study.experiment.search, study.target
    rec = StudyRecorder(sweep.tracker, sweep.state, study, slug(study.key), sweep.log)
    start_points, warm = _start_points(study, sweep.state, sweep.log)
    prior = prior_of(sweep.recorded, study)
    if prior is not None:
        sweep.log(f"  {study.key}: a prior of {len(prior)} recorded space(s) of {study.kernel_name}"
                  + ("" if prior else f" ({s.prior} holds none at another problem or GPU: "
                     f"{s.sampler} searches without one)"))
    if study.experiment.timing.clock == AUTO and not target.profile.interpreter:  # which, and why
        sweep.log(f"  {study.key}: timed with {study.clock.clock} ({study.clock.rule})")
    if not rec.parent:  # the parent run is opened by the writer, before any of its candidates
        artifacts = {"experiment.yaml": config_mod.dump(study.experiment),
                     "search_space.json": study.space.to_json()}
        if warm is not None:  # what the warm start enqueued: the table file may change later
            artifacts["warm_start.json"] = json.dumps(warm, indent=1, default=str)
        if prior is not None:  # which recordings the sampler was fit on: the folder may change later
            artifacts["prior_spaces.json"] = json.dumps(prior_mod.describe(prior), indent=1, default=str)

        def open_parent(study=study, artifacts=artifacts, prior=prior):
            try:
                device = sweep.device(study.target)
            except TargetUnavailable:
                return  # the sweep stops and says why
            parent = rec._guard("start", lambda: sweep.tracker.start_study(
                study, sweep.state.sweep_id, artifacts, device, prior=prior))
            if parent:
                sweep.state.update(study.key, parent=parent)
        sweep.writer.submit(open_parent, study.key)
    # a built-in GEMM's vendor path (torch.mm / addmm) is evaluated first, beside and not
    # instead of the budget's Triton candidates: what is dispatched is never slower than it
    outside = vendor_configs_of(study.ref, study.problem.model_dump())
    searcher = ConstrainedSearch(study.space, s.sampler, s.seed, study.key, s.max_rejects,
                                 start_points=start_points, valid=None,  # adopted when enumerated
                                 outside=outside, prior=prior, problem=study.problem.model_dump(),
                                 window=s.concurrency if s.ordered else None)
    before = rec.records()
    replayed = searcher.replay(before)
    evaluated = sum(1 for r in before if r["status"] != "invalid")
    budget = study.budget() + len(outside)
    remaining = max(0, budget - evaluated)
    if replayed:
        sweep.log(f"  {study.key}: resumed, {replayed} journaled candidates told to the sampler, "
                  f"{remaining} to go")
        sweep.writer.submit_sync(study.key, rec.sync)
    env = cluster.target_env(target)
    if not target.profile.interpreter:
        # a trial's own process only compiles, on described inputs (tuner/measure/described.py);
        # a study that falls back to device inputs needs one input set or two (16 processes
        # per GPU each keeping a quarter of the GPU's memory ran it out of memory)
        env["KERNELEVOLVE_INPUT_BYTES"] = str(COMPILE_INPUT_BYTES)
        # ... and yields the CPU to the GPU lane's evaluator and judge (COMPILE_NICE)
        env["KERNELEVOLVE_NICE"] = str(COMPILE_NICE)
    ctx = {"kernel_ref": study.ref, "problem": study.problem.model_dump(),
           "hardware": target.profile.name, "seed": s.seed, "timeout_s": s.timeout_s,
           "retries": s.retries, "bench": study.bench_settings(), "env": env,
           "cwd": cwd, "resources": check_target(target), "lanes": not target.profile.interpreter}
    sweep.plans[study.key] = Plan(study, ctx, rec, searcher, remaining)
    sweep.state.update(study.key, attempts=sweep.state.study(study.key).get("attempts", 0) + 1)
    sweep.progress.study_started(study, budget, evaluated)
