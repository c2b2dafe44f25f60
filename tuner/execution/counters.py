"""Nsight Compute inside a sweep: a study's finalists after its re-timing (experiment
`profile.top_k`), and its best so far while it runs, to steer the search (`profile.steer`).

When a study ends, its top-k are re-timed interleaved (tuner.execution.sweep); with
`profile.top_k` > 0 the fastest of them are then profiled (tuner.profile), all of them in one
process under ncu (one start of ncu, Python, torch and CUDA per study, not per finalist; each
finalist still verified before its launches are profiled), on the node and GPU of the lane that
timed the first of them, as the re-timing runs there: a separate pass, after every timing of the
study, so no measured latency is taken under the profiler. With `profile.steer`, every
`steer_every` candidates the study's best so far is profiled the same way and the rules of
tuner.search.steering queue the next configs. The profile runs in a Ray task on that node (ncu
must run where the GPU is), holding the GPU's timing lock while it verifies and launches; the
counters come back to the driver, which writes them to MLflow (the driver owns the records).

A candidate that cannot be profiled (no ncu on the node, counters restricted, a timeout, its
verification failed) costs the study nothing and its fellow finalists nothing: the reason is
logged and tagged on the study's run.
"""
from __future__ import annotations

import os
import tempfile
import threading

import ray

from kernelevolve.tuner.records.schema import is_vendor_record
from kernelevolve.tuner.search.space import config_key

MAX_FILE_BYTES = 64 << 20  # a .ncu-rep larger than this stays on the node (a note says so)


def finalists(top: list[dict], retimed: dict | None, k: int) -> list[dict]:
    """The first k of the study's top records, in re-timed order where the re-timing succeeded
    (its own order otherwise), each with the latency the counters are read beside."""
    order = {config_key(r["config"]): r for r in top}
    if retimed and retimed.get("status") == "ok" and retimed.get("rows"):
        rows = sorted(retimed["rows"], key=lambda r: r["latency_ms"])
        picked = [{**order[config_key(r["config"])], "latency_ms": r["latency_ms"], "measured_by": "retime"}
                  for r in rows if config_key(r["config"]) in order]
    else:
        picked = [{**r, "measured_by": "sweep"} for r in top]
    return picked[:k]


def logged_for(record: dict, ctx: dict, study_key: str) -> dict:
    """What tuner.profile.candidate.profile_logged reads, from the sweep's own context (the same
    fields `kernelevolve reproduce` reads back from MLflow)."""
    return {"run_id": record["candidate_id"], "candidate_id": record["candidate_id"], "study": study_key,
            "kernel_ref": ctx["kernel_ref"], "problem": ctx["problem"], "hardware": ctx["hardware"],
            "bench": ctx["bench"], "config": record["config"], "latency_ms": record.get("latency_ms")}


def profile_batch(logged: list[dict], calls: int, timeout_s: float, gpu: str | None) -> list[dict]:
    """Runs where the GPU is (a Ray task): the candidates in one ncu run; per candidate, in order,
    {"fields", "files": {name: bytes}, "run": what the run cost} or {"error"}."""
    from kernelevolve.tuner.profile.candidate import ProfileError, profile_many
    from kernelevolve.tuner.profile.ncu import NcuUnavailable

    env = {"CUDA_VISIBLE_DEVICES": str(gpu)} if gpu not in (None, "") else {}
    with tempfile.TemporaryDirectory(prefix="kernelevolve-ncu-") as tmp:
        try:
            results = profile_many(logged, tmp, calls, timeout_s, env=env)
        except (ProfileError, NcuUnavailable) as exc:
            return [{"error": str(exc)} for _ in logged]
        read: dict[str, bytes | None] = {}  # the run's log and report are shared: read once
        out = []
        for res in results:
            if "error" in res:
                out.append(res)
                continue
            for path in res["files"]:
                if path not in read:
                    read[path] = _small_file(path)
            files = {os.path.basename(p): read[p] for p in res["files"] if read[p] is not None}
            out.append({**res, "files": files})
    return out


def _small_file(path: str) -> bytes | None:
    if not os.path.exists(path) or os.path.getsize(path) > MAX_FILE_BYTES:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def profile_remote(records: list[dict], logged: list[dict], calls: int, timeout_s: float):
    """A Ray task running profile_batch on the node and GPU that timed the first record."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = records[0].get("ray_node_id")
    gpu = str(records[0].get("ray_gpu_ids", "")).split(",")[0] or None
    options = {"num_cpus": 0}
    if node:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
    return ray.remote(profile_batch).options(**options).remote(logged, calls, timeout_s, gpu)


def _describe(cid: str, res: dict) -> str:
    return (f"{cid} {res['fields']['bottleneck']}: {res['fields']['bottleneck_reason']}" if "fields" in res
            else f"{cid} not profiled: {res['error']}")


def _cost(results: dict[str, dict]) -> str:
    """One line of what the study's ncu run cost ("" where none ran)."""
    run = next((r["run"] for r in results.values() if r.get("run")), None)
    if not run:
        return ""
    served = ", ".join(f"{s:.1f}" for s in run.get("served_s") or [] if isinstance(s, (int, float)))
    passes = f"; {run['passes']} replay passes per kernel at most" if run.get("passes") else ""
    alone = ("; ncu's page had no NVTX ranges to tell the finalists apart: each profiled again alone"
             if run.get("alone") else "")
    return (f"ncu: {run['candidates']} candidate(s) in one run, {run['wall_s']:.1f} s "
            f"(in the target: {served or '-'} s, the first with its start-up{passes}){alone}")


def _profile(records: list[dict], plan, p) -> dict[str, dict]:
    """The records profiled together: candidate id -> its outcome."""
    logged = [logged_for(r, plan.ctx, plan.study.key) for r in records]
    ids = [r["candidate_id"] for r in records]
    ref = profile_remote(records, logged, p.calls, p.timeout_s)
    try:
        got = ray.get(ref, timeout=p.timeout_s * len(records) + 600)
    except Exception as exc:  # a lost task: the study's records stand
        got = [{"error": f"{type(exc).__name__}: {exc}"} for _ in records]
    return dict(zip(ids, got))


def out_of_memory(res: dict) -> bool:
    return "out of memory" in str(res.get("error", "")).lower()


def release_lane(lane) -> str:
    """Ask a GPU lane's evaluator to hand its cached input sets back to the GPU; what it freed."""
    reply = ray.get(lane.request.remote({"op": "release"}, 120), timeout=300)
    return f"{reply.get('released_bytes', 0) / 2**30:.1f} GiB" if reply.get("status") == "ok" else \
        f"nothing ({reply.get('error', 'no reply')})"


def profile_finalists(plan, top: list[dict], retimed: dict | None, log, lane_of=None) -> dict:
    """The study's fastest finalists under Nsight Compute, in one ncu run, after its re-timing;
    {} where `profile.top_k` is 0 or the target is no GPU. `plan`: the sweep's Plan of the study.

    The profiled process shares the GPU with the sweep's lane, whose evaluator keeps every study's
    input sets (up to a quarter of the GPU) and the compiling processes' contexts: a finalist whose
    profile ran out of memory is profiled once more after `lane_of(record)`'s evaluator has handed
    its cached sets back (it makes them again when next asked)."""
    p, study = plan.study.experiment.profile, plan.study
    if not p.top_k or not top:
        return {}
    if study.target.profile.interpreter:
        log(f"  {study.key}: not profiled (profile.top_k): ncu reads a GPU's counters, this study ran "
            "in the interpreter")
        return {}
    picked = finalists(top, retimed, p.top_k)
    out = _profile(picked, plan, p)
    again = [r for r in picked if out_of_memory(out[r["candidate_id"]])]
    if again and lane_of is not None:
        try:
            freed = release_lane(lane_of(again[0]))
        except Exception as exc:  # the retry is still worth its try
            freed = f"nothing ({type(exc).__name__}: {exc})"
        log(f"  {study.key}: {len(again)} finalist(s) ran out of GPU memory under ncu; the lane handed "
            f"back {freed} of cached inputs; profiling them again")
        out.update(_profile(again, plan, p))
    for cid, res in out.items():
        log(f"  {study.key}: {_describe(cid, res)}")
    if _cost(out):
        log(f"  {study.key}: {_cost(out)}")
    return out


def maybe_steer(plan, log) -> None:
    """profile.steer: every steer_every candidates, the study's best so far (if not profiled yet)
    is profiled and the rules for its label queue the next configs, in a thread of its own: the
    trial loop never waits for ncu. One at a time per study."""
    p = plan.study.experiment.profile
    if not p.steer or plan.study.target.profile.interpreter or plan.steering or plan.finishing:
        return
    if len(plan.records) - plan.steered_at < p.steer_every:
        return
    # the best Triton kernel: the rules mutate tile and pipeline choices a vendor path has none of
    ok = [r for r in plan.records if r["status"] == "ok" and not is_vendor_record(r)]
    best = min(ok, key=lambda r: r["latency_ms"]) if ok else None
    if best is None or best["candidate_id"] in plan.profiled:
        return
    plan.steered_at, plan.steering = len(plan.records), True
    threading.Thread(target=steer, args=(plan, best, log), daemon=True).start()


def steer(plan, best: dict, log) -> None:
    """Profile `best` and hand the rules' proposals to the study's searcher."""
    from kernelevolve.tuner.search import steering

    key = plan.study.key
    try:
        res = _profile([best], plan, plan.study.experiment.profile)[best["candidate_id"]]
        plan.profiled[best["candidate_id"]] = res
        if "error" in res:
            log(f"  ! {key}: steering: {_describe(best['candidate_id'], res)}")
            return
        fields = res["fields"]
        configs = steering.proposals(fields["bottleneck"], fields, best["config"], plan.study.space,
                                     plan.searcher.seen.copy())
        plan.searcher.steer(configs)
        log(f"  {key}: steering: best so far {_describe(best['candidate_id'], res)}; "
            f"{len(configs)} configs proposed next")
    except Exception as exc:  # steering is advice: the search goes on without it
        log(f"  ! {key}: steering failed: {type(exc).__name__}: {exc}")
    finally:
        plan.steering = False


def log_profiles(client, parent_id: str, results: dict[str, dict]) -> list[str]:
    """Write each profiled finalist's counters to its child run, then the study's table and
    roofline; returns one line per finalist that could not be profiled, or per missing view."""
    from mlflow.entities import ViewType

    from kernelevolve.tuner.records.profile_log import log_candidate_profile, log_study_profile

    notes = []
    experiment_id = client.get_run(parent_id).info.experiment_id
    for cid, res in results.items():
        if "error" in res:
            notes.append(f"{cid}: not profiled: {res['error']}")
            continue
        kids = client.search_runs([experiment_id], run_view_type=ViewType.ALL,
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and "
                                                f"tags.candidate_id = '{cid}'")
        if not kids:
            notes.append(f"{cid}: profiled, but its run is not in MLflow yet (`kernelevolve sync`)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for name, data in res["files"].items():
                paths.append(os.path.join(tmp, name))
                with open(paths[-1], "wb") as fh:
                    fh.write(data)
            log_candidate_profile(client, kids[0].info.run_id, res["fields"], paths)
    if any("fields" in r for r in results.values()):
        notes += [f"{name}: {why}" for name, why in log_study_profile(client, parent_id).items()]
    if notes:
        client.set_tag(parent_id, "profile_notes", " | ".join(notes)[:7000])
    return notes
