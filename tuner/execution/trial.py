"""What runs inside Ray Tune: the trial function of a study's candidates, of any study of the sweep.

The sweep runs every study in one Tuner; a trial's config names its study (STUDY_PARAM) and its
candidates (BATCH_PARAM: several per trial, tuner.search.protocol says why), and the trial finds
that study's context in the sweep's. The trial actor (Tune reuses it across
candidates and studies) keeps one evaluation process (tuner.execution.worker) per environment,
so torch's import and the CUDA context are paid once per slot for the whole sweep.

GPU targets: the trial's own process compiles the candidate (steps 1-2, nothing launched on the
GPU), then the lane of the GPU Ray gave the trial verifies and times it (steps 3-4;
tuner.execution.lanes). The compiles of many candidates thus run at once on the node's CPU cores,
while each GPU runs one candidate's launches at a time. The interpreter target runs all four
steps in the trial's process (there is no compile to overlap), its timed section under a lock.
"""
from __future__ import annotations

import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import ray
from ray import tune
from ray.tune.execution.placement_groups import PlacementGroupFactory

from kernelevolve.tuner.execution.stacks import sample_actor_start
from kernelevolve.tuner.execution.worker import CandidateWorker, make_request
from kernelevolve.tuner.search.protocol import (BATCH_PARAM, BATCH_RESULT, OBJECTIVE, PENALTY, STUDY_PARAM,
                                                decode_batch, encode_batch, objective_of)

_WORKERS: dict[str, CandidateWorker] = {}
# a compile slot's start (the worker's reply fields) under the names its candidate's record gives it
SLOT_START = {"worker_start_s": "slot_start_s", "worker_fork_wait_s": "slot_fork_wait_s",
              "worker_child_start_s": "slot_child_start_s", "worker_child_setup_s": "slot_child_setup_s",
              "worker_child_module_s": "slot_child_module_s", "worker_child_evaluator_s": "slot_child_evaluator_s"}
ACTOR_STARTED = time.time()  # when this trial actor imported the engine (records: actor_started)
_SAMPLED: list = []  # this actor's stack sampler, where asked for (tuner/execution/stacks.py)


class StudyResources:
    """Ray resources of a trial: its study's target's share per candidate, times the study's
    candidates per trial, whether its batch is full or not (so that Tune can reuse the actor of
    any trial of the study). A trial of 4 candidates at 1/16 of a GPU each holds a quarter of one
    GPU: Ray packs trials onto a node's GPUs by their fractions, and a trial of one candidate's
    share would put every trial of the sweep on the first GPU. Picklable, as Tune needs."""

    def __init__(self, by_study: dict[str, dict], batch: dict[str, int] | None = None):
        self.by_study, self.batch = by_study, batch or {}

    def per_trial(self, key: str) -> dict:
        n = self.batch.get(key, 1)
        return {k: v * n for k, v in self.by_study[key].items()}

    def __call__(self, config: dict) -> PlacementGroupFactory:
        return PlacementGroupFactory([self.per_trial(config[STUDY_PARAM])])


def _worker(env: dict, cwd: str, slot: int = 0) -> CandidateWorker:
    """The trial actor's evaluation process for one of its candidate slots (kept for the sweep)."""
    key = repr(sorted(env.items())) + cwd + f"#{slot}"
    if key not in _WORKERS:
        _WORKERS[key] = CandidateWorker(env=env, cwd=cwd)
    return _WORKERS[key]


def _with_retries(send, retries: int) -> dict:
    """Policy for an evaluation process that died mid-candidate (killed, segfault): run the
    candidate again in a fresh process, up to `retries` times; a second death is its result."""
    reply, n = send(), 0
    while reply.get("worker_died") and n < retries:
        n += 1
        reply = send()
    reply["retries"] = n
    return reply


class _Pending:
    """A candidate on its way: its reply, or its compile's result and the lane request that
    verifies and times it (in flight while the trial compiles the next candidate)."""

    def __init__(self, reply: dict | None = None, compiled: dict | None = None, ref=None,
                 send=None, queued: float = 0.0, retries: int = 0, timeout: float = 0.0):
        self.reply, self.compiled, self.ref, self.send = reply, compiled, ref, send
        self.queued, self.retries, self.timeout = queued, retries, timeout
        self.started = 0.0


def begin(config: dict, ctx: dict, sweep: dict, candidate_id: str, slot: int = 0) -> _Pending:
    started = time.time()
    pending = _begin(config, ctx, sweep, candidate_id, slot)
    pending.started = started
    return pending


def _begin(config: dict, ctx: dict, sweep: dict, candidate_id: str, slot: int) -> _Pending:
    """Steps 1-2 of one candidate of the study `ctx` (GPU: compile here, then hand it to the lane
    of this trial's GPU without waiting); the interpreter runs all four steps here."""
    # a seed of its own per candidate, reproducible from the study seed and its id
    seed = (ctx["seed"] * 1_000_003 + zlib.crc32(candidate_id.encode())) % (2**31)
    request = make_request("evaluate", ctx["kernel_ref"], ctx["problem"], ctx["hardware"], ctx["bench"],
                           config=dict(config), seed=seed)
    worker, timeout = _worker(ctx["env"], ctx["cwd"], slot), ctx["timeout_s"]
    if not ctx["lanes"]:
        return _Pending(reply=_with_retries(lambda: worker.request(request, timeout), ctx["retries"]))
    # GPU: steps 1-2 in this actor's own process, 3-4 on the lane of its GPU
    from kernelevolve.tuner.execution.lanes import my_lane

    asked = time.time()
    compiled = _with_retries(lambda: worker.request(dict(request, op="compile"), timeout), ctx["retries"])
    compiled["compile_wall_s"] = time.time() - asked  # with the slot's own start, on its first
    for worker_key, slot_key in SLOT_START.items():
        if worker_key in compiled:  # that start (the lane's reply may carry its own)
            compiled[slot_key] = compiled.pop(worker_key)
    if compiled.get("status") != "ok":
        return _Pending(reply=compiled)
    try:
        # the lane is looked up at each send: a resend after its actor died finds it restarted
        send = lambda: my_lane(sweep["sweep_id"]).request.remote(dict(request, compiled=True), timeout)  # noqa: E731
        ref, queued = send(), time.time()
        compiled["handoff_s"] = queued - asked - compiled["compile_wall_s"]
        return _Pending(compiled=compiled, ref=ref, send=send, queued=queued,
                        retries=ctx["retries"], timeout=timeout)
    except Exception as exc:  # no lane: a record, not a raise
        return _Pending(reply={"status": "runtime_error", "error": f"GPU lane failed: {type(exc).__name__}: {exc}"})


def finish(pending: _Pending) -> dict:
    """Steps 3-4's reply (the lane's), with the compile's figures; always a record, never a raise."""
    if pending.reply is not None:
        return pending.reply
    # the lane enforces the candidate's timeout; this wait also covers the lane's queue
    wait = pending.timeout * 20 + 600
    first = [pending.ref]
    send = lambda: _with_retries(lambda: ray.get(first.pop() if first else pending.send(), timeout=wait),  # noqa: E731
                                 pending.retries)
    try:
        try:
            reply = send()
            reply["lane_answered"] = time.time()  # the lane's reply in this trial's hands
        except ray.exceptions.RayActorError:
            # The lane's actor died with this candidate in its queue. A candidate that crashes
            # kills the lane's evaluator process (a worker_died reply, retried above), never the
            # actor, so this is not the candidate's doing: sent once more, to the lane restarted.
            reply = send()
            reply["retries"] = reply.get("retries", 0) + 1
    except Exception as exc:  # the lane actor died again or never answered: a record, not a raise
        reply = {"status": "runtime_error", "error": f"GPU lane failed: {type(exc).__name__}: {exc}"}
    reply["queue_s"] = max(0.0, reply.pop("lane_started", pending.queued) - pending.queued)
    for key in ("compile_s", "compile_wall_s", *SLOT_START.values(), "study_load_s", "compiled_on", "handoff_s",
                "n_regs", "n_spills", "shared_bytes"):
        if key in pending.compiled:
            reply.setdefault(key, pending.compiled[key])
    return reply


def run_candidates(config: dict, sweep: dict) -> None:
    """Ray Tune trial function: evaluate the trial's candidates (BATCH_PARAM) of its study and
    report one flat result carrying each one's reply. The trial holds one candidate's resources per
    candidate (StudyResources): each candidate compiles at once in its own evaluation process, and
    is handed to the GPU's lane as soon as it is compiled."""
    if not _SAMPLED:  # a trial actor's first trial (the driver imports this module too)
        _SAMPLED.append(sample_actor_start("trial", ACTOR_STARTED))
    ctx = sweep["studies"][config[STUDY_PARAM]]
    node_id = ray.get_runtime_context().get_node_id()  # which node measured it
    # which of the node's GPUs Ray gave this trial (its lane); "" without GPUs
    gpu_ids = ",".join(str(g) for g in ray.get_gpu_ids())
    members = decode_batch(config[BATCH_PARAM])
    # threads only wait: each on its own evaluation process, then on the lane's reply
    with ThreadPoolExecutor(max_workers=len(members)) as pool:
        pending = list(pool.map(lambda i: begin(members[i]["config"], ctx, sweep,
                                                members[i]["candidate_id"], slot=i), range(len(members))))
        replies = list(pool.map(finish, pending))
    out, reported = [], time.time()  # (the report itself follows at once)
    for member, p, reply in zip(members, pending, replies):
        reply["ray_node_id"], reply["ray_gpu_ids"] = node_id, gpu_ids
        reply.pop("worker_died", None)
        reply.pop("traceback", None)
        ok = reply.get("status") == "ok"
        reply[OBJECTIVE] = objective_of(reply["latency_ms"] / 1e3) if ok else PENALTY
        reply["candidate_id"] = member["candidate_id"]
        reply["actor_started"], reply["trial_started"], reply["trial_reported"] = ACTOR_STARTED, p.started, reported
        out.append({k: v for k, v in reply.items() if isinstance(v, (int, float, str, bool))})
    tune.report({OBJECTIVE: min(r[OBJECTIVE] for r in out), "status": "ok", BATCH_RESULT: encode_batch(out)})
