"""A study's end, in its own thread once its last candidate has ended: its top-k re-timed
interleaved with the torch peer on a GPU lane (on the interpreter, in a Ray task), its finalists
profiled where the experiment asks, its summary and plots made, and its parent run written in
order with the study's candidate writes (the sweep's writer thread). Nothing incorrect can win:
only `ok` candidates are re-timed, and a row the judge finds wrong in the re-timing is never best.
"""
from __future__ import annotations

import time

import ray

from kernelevolve.tuner.execution import cluster
from kernelevolve.tuner.execution.counters import log_profiles, profile_finalists
from kernelevolve.tuner.execution.studies import retime_finalists, summarize
from kernelevolve.tuner.execution.worker import make_request
from kernelevolve.tuner.records.journal import unique_by_candidate


def finish(sweep, plan) -> None:
    """A study's end, in its own thread; whatever fails there, the sweep still hears of it."""
    try:
        _end(sweep, plan)
    except Exception as exc:
        sweep.log(f"  ! {plan.study.key}: its end failed: {type(exc).__name__}: {exc}")
        summary = summarize(unique_by_candidate(plan.recorder.journal.records()), None)
        summary.update(study=plan.study.key, parent_run_id=plan.recorder.parent, **_clock_of(plan.study),
                       error=f"{type(exc).__name__}: {exc}")
        with sweep.lock:
            sweep.out[plan.study.key] = summary


def _clock_of(study) -> dict:
    """The clock the study's candidates, finalists and peer were timed with, and why: a caller
    that times the winner again (a benchmark beside its peers) uses the same."""
    return {"clock": study.clock.clock, "clock_rule": study.clock.rule}


def _end(sweep, plan) -> None:
    """Re-time the study's top-k beside the peer on a lane; then its parent run, in order with
    the study's candidate writes (the writer thread)."""
    study, s = plan.study, plan.study.experiment.search
    began = time.time()
    records = unique_by_candidate(plan.recorder.journal.records())
    top = retime_finalists(records, s.top_k)
    try:
        retimed = _retime(sweep, plan, top)
    except Exception as exc:  # the study's records stand; its winner is then its own best
        retimed = {"status": "runtime_error", "error": f"re-timing failed: {type(exc).__name__}: {exc}"}
    retimed_at = time.time()
    # the finalists, and the candidates profiled for steering while the study ran
    profiled = {**plan.profiled, **profile_finalists(plan, top, retimed, sweep.log,
                                                     sweep._lane_of if plan.ctx["lanes"] else None)}
    profiled_at = time.time()
    summary = summarize(records, retimed)
    if profiled:
        summary["bottlenecks"] = {cid: r.get("fields", {}).get("bottleneck", "not profiled")
                                  for cid, r in profiled.items()}
    summary.update(study=study.key, parent_run_id=plan.recorder.parent, wall_s=time.time() - plan.t0,
                   timing="interpreter" if study.target.profile.interpreter else "gpu", **_clock_of(study),
                   proposals=plan.searcher.proposals(), exhausted=plan.searcher.exhausted)
    if plan.searcher.exhausted:
        sweep.log(f"  {study.key}: the space is exhausted: every one of its "
                 f"{summary['proposals'].get('valid_configs') or 'valid'} valid configs was evaluated")
    history = [{"params": p, "state": st, "value": v} for p, st, v in plan.searcher.history()]
    # drawn by the sweep's plotting actors, warm from its start (tuner/review/plotter.py says why)
    rendered = sweep.plotter_pool().draw(records, study.key, study.target.profile.name, summary["timing"],
                                   getattr(study.problem, "dtype", None))
    drawn_at = time.time()
    # where the study's end went, seconds (its parent run's end_*_s metrics; the driver's log line
    # adds the wait for the writer and the parent run's write): on a 4-GPU node a study's end took
    # a median 8.9 s from its last candidate to its parent run, 2.2-3.5 s on one or two GPUs
    summary["end_s"] = {"retime": retimed_at - began, "profile": profiled_at - retimed_at,
                        "plots": drawn_at - profiled_at}

    def send():
        writing = time.time()
        in_mlflow = plan.recorder.finish(summary, history, rendered)
        summary["end_s"].update(writer_wait=writing - drawn_at, parent_run=time.time() - writing)
        if profiled and in_mlflow:
            for note in plan.recorder._guard("profile", lambda: sweep.tracker.with_client(
                    log_profiles, plan.recorder.parent, profiled)) or []:
                sweep.log(f"  ! {study.key}: {note}")
        sweep.state.update(study.key, done=True, summary=summary, history=history, in_mlflow=in_mlflow)
        sweep.progress.study_finished(study, summary)
        with sweep.lock:
            sweep.out[study.key] = summary
    sweep.writer.submit(send, plan.study.key)

def _retime(sweep, plan, top: list[dict]) -> dict | None:
    s = plan.study.experiment.search
    retimed = None
    if top:
        ctx = plan.ctx
        payload = make_request("retime", ctx["kernel_ref"], ctx["problem"], ctx["hardware"], ctx["bench"],
                               configs=[r["config"] for r in top],
                               rounds=plan.study.experiment.timing.retime_rounds)
        timeout = s.timeout_s * (len(top) + 1)
        if plan.ctx["lanes"]:
            lane = sweep._lane_of(top[0])
            retimed = ray.get(lane.request.remote(payload, timeout), timeout=timeout + 600)
        else:
            retimed = cluster.remote_request(plan.ctx["resources"], plan.ctx["env"], payload, timeout)
    return retimed
