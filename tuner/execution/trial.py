"""What runs inside Ray: the trial function of one candidate, and the end-of-study re-timing task.

Both hand the real work to a CandidateWorker process (tuner.execution.worker). The trial actor keeps its
worker between candidates (Tune reuses actors), so a study pays torch's import and the CUDA
context once per concurrent slot, not once per candidate.
"""
from __future__ import annotations

import zlib

import ray
from ray import tune

from tuner.search.samplers import OBJECTIVE, PENALTY, objective_of
from tuner.execution.worker import CandidateWorker

_WORKER: CandidateWorker | None = None


def _worker(ctx: dict) -> CandidateWorker:
    global _WORKER
    if _WORKER is None or _WORKER.env.get("KERNELEVOLVE_CTX") != ctx["ctx_id"]:
        if _WORKER is not None:
            _WORKER.close()
        _WORKER = CandidateWorker(env={**ctx["env"], "KERNELEVOLVE_CTX": ctx["ctx_id"]}, cwd=ctx["cwd"])
    return _WORKER


def run_candidate(config: dict, ctx: dict) -> None:
    """Ray Tune trial function: evaluate one config, report one flat, finite result."""
    trial_id = tune.get_context().get_trial_id()
    request = {"op": "evaluate", "kernel_ref": ctx["kernel_ref"], "problem": ctx["problem"],
               "hardware": ctx["hardware"], "config": dict(config), "bench": ctx["bench"],
               # a seed of its own per candidate, reproducible from the study seed and trial id
               "seed": (ctx["seed"] * 1_000_003 + zlib.crc32(trial_id.encode())) % (2**31)}
    reply = _worker(ctx).request(request, ctx["timeout_s"])
    retries = 0
    # Policy for a worker process that died mid-candidate (killed, segfault): run the candidate
    # again in a fresh process, up to `retries` times; a second death is its result.
    while reply.get("worker_died") and retries < ctx.get("retries", 0):
        retries += 1
        reply = _worker(ctx).request(request, ctx["timeout_s"])
    reply["retries"] = retries
    reply["ray_node_id"] = ray.get_runtime_context().get_node_id()  # which node measured it
    # which of the node's GPUs Ray gave this trial (its timing lane); "" without GPUs
    reply["ray_gpu_ids"] = ",".join(str(g) for g in ray.get_gpu_ids())
    reply.pop("worker_died", None)
    reply.pop("traceback", None)
    ok = reply.get("status") == "ok"
    reply[OBJECTIVE] = objective_of(reply["latency_ms"] / 1e3) if ok else PENALTY
    reply["candidate_id"] = trial_id
    tune.report({k: v for k, v in reply.items() if isinstance(v, (int, float, str, bool))})


def one_shot(ctx: dict, payload: dict, timeout_s: float) -> dict:
    """Ray task: one request (a device probe, the end-of-study re-timing) in a fresh worker."""
    worker = CandidateWorker(env=ctx["env"], cwd=ctx["cwd"])
    try:
        return worker.request(payload, timeout_s)
    finally:
        worker.close()
