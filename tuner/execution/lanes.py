"""GPU lanes: one long-lived evaluator per GPU of the cluster, the only process that runs kernels there.

Why a lane per GPU: candidates share a GPU so that their compiles overlap, but what they put on
the GPU (verification launches, timing) must not overlap, or they disturb each other's timings.
So a candidate's trial compiles ahead on its own CPU core (tuner.measure.evaluate's `compile`
request, which launches nothing), and hands the rest (steps 3 and 4: verify, time) to the lane of
the GPU that Ray gave the trial. The lane's evaluator process keeps its CUDA context, each study's
input sets and references and every compiled kernel for the whole sweep; the lane is a Ray actor
that runs one request at a time on it, so its queue is the GPU's timing order: by turn (a study's
preparation and re-timing ahead of the candidates then waiting: TURN_OF_OP), then as sent.

As a study's first trial goes out, each lane is sent the study's `prepare` request
(tuner/measure/prepare.py), which it runs while that trial's candidates compile: measured on an
H100 (an 8-study sweep), a warm lane sat idle for seconds, and then the first candidate of each
study paid, on the sweep's critical path, for loading its kernel module, making its input sets and
float64 references and timing the torch peer (3.7 s for the first GEMM 4096^3 candidate, 0.5-0.8 s
for the others, one study after another). Sent for every study at the set-up instead, the lanes
of a 32-study sweep spent their first 4-8 s on studies whose turn came a minute later.

A lane is a named Ray actor pinned to its node (`lane:<sweep id>:<node id>:<gpu id>`), asking for no Ray
resources itself: the trials hold the GPU fractions, and so keep Ray's accounting of how many
candidates a GPU takes; the lane only does their device work. A candidate that crashes or
corrupts the lane's evaluator (an illegal memory access) is recorded and the evaluator process
is replaced (tuner.execution.worker); the lane actor itself stays.

Compiles run in each trial actor's own evaluation process (tuner.execution.trial), started at the
actor's first candidate and kept for the sweep; the node's fork server forks it (and a lane's
evaluator and judge, started together), with torch and Triton imported once
(tuner.execution.spawner). Measured on the H100 node: pre-starting 16 such
processes beside the lane (to have them warm before the Tuner starts) made the set-up 9 s longer
(16 CUDA contexts created at once) and the first result no sooner, so they are not pre-started.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from contextlib import contextmanager

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kernelevolve.tuner.execution.worker import CandidateWorker, make_request
from kernelevolve.tuner.experiment import registry
from kernelevolve.tuner.experiment.config import Timing


def plain(value):
    """`value` in builtin types only (a str, int or float subclass as the builtin, a scalar of numpy
    or a 0-d tensor as its item, tuples as lists; anything else but None, bool, bytes, lists and
    dicts as its str). Why: a trial actor unpickles its lane's reply, and an object of a library in
    it makes that process import the library first: a torch.__version__ (a TorchVersion) in the
    evaluator's reply held every first-wave trial's report 3-4 s on an H200 node while its actor
    imported torch."""
    if value is None or type(value) in (bool, int, float, str, bytes):
        return value
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if getattr(value, "shape", None) == () and callable(getattr(value, "item", None)):
        return plain(value.item())  # a numpy scalar, a 0-d tensor
    return str(value)


# A prepare runs no candidate code, so a long limit risks little; a kill would throw away the
# lane's warm evaluator (its CUDA context, every study prepared before).
PREPARE_TIMEOUT_S = 600.0


def lane_name(sweep_id: str, node_id: str, gpu_id: str) -> str:
    """A lane belongs to one sweep: a later sweep (maybe of changed kernel code) never reuses it."""
    return f"lane:{sweep_id}:{node_id}:{gpu_id}"


# The order a lane takes the requests waiting for it: lower first, then as they came. A study's
# preparation and its end-of-study re-timing go ahead of the candidates queued then. Why: measured
# on a 4 x H200 node (the generated GEMM suite, 7 studies a GPU), a study's re-timing waited behind
# the other studies' candidates for 16-29 s of its end, every such study's result that much later
# (and a prepare sent as a study's first trial went out waited behind the candidates sent before
# it, while that trial's candidates were already compiled). The lane's own start comes first of
# all, then its self-check and the release of its memory; a close keeps its place among the
# candidates. Within a turn, arrival order: requests enter the actor's threads as Ray hands them
# over, so two sent at the same moment may take either order (the candidates' order never mattered).
TURN_START, TURN_FIRST, TURN_STUDY, TURN_CANDIDATE = 0, 1, 2, 3
TURN_OF_OP = {"probe": TURN_FIRST, "release": TURN_FIRST, "prepare": TURN_STUDY, "retime": TURN_STUDY}
# requests inside the actor at once, each waiting for its turn in a thread of its own (past this
# many, Ray keeps the rest in its own queue, in the order sent, until a thread is free)
LANE_THREADS = 256


class Turns:
    """One request at a time on the lane's evaluator; the waiting ones by turn, then arrival."""

    def __init__(self):
        self._cv = threading.Condition()
        self._waiting: list = []  # heap of (turn, arrival)
        self._arrivals = itertools.count()
        self._busy = False

    @contextmanager
    def turn(self, turn: int):
        with self._cv:
            ticket = (turn, next(self._arrivals))
            heapq.heappush(self._waiting, ticket)
            while self._busy or self._waiting[0] != ticket:
                self._cv.wait()
            heapq.heappop(self._waiting)
            self._busy = True
        try:
            yield
        finally:
            with self._cv:
                self._busy = False
                self._cv.notify_all()


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=LANE_THREADS)
class Lane:
    def __init__(self, gpu_id: str, env: dict, cwd: str):
        # Actors that ask for no GPU see every GPU of the node: the evaluator process is given its own.
        self.worker = CandidateWorker(env={**env, "CUDA_VISIBLE_DEVICES": str(gpu_id)}, cwd=cwd)
        self.gpu_id = str(gpu_id)
        self.created = time.time()
        self.turns = Turns()
        # seconds the evaluator was busy, by request op, and the span they fell in (busy_report)
        self.busy_s: dict[str, float] = {}
        self.span: list[float] = []

    def _on_evaluator(self, turn: int, op: str, payload: dict, timeout_s: float) -> dict:
        """`payload` run on the evaluator when `turn` comes; its reply with when it began there
        (the wait before it is a candidate's queue_s) and for how long, counted as `op`'s."""
        # before the turn: the first vendor config's decision imports its kernel's module (torch,
        # Triton) into this actor, ~4 s on a 4 x H200 node, which held the lane's self-check
        # on the evaluator while the GPU waited (the self-check's reply: 9.8 s on the lane, 3.6 s
        # of it evaluating)
        exemptions = self.worker.judge_exemptions(payload)
        with self.turns.turn(turn):
            started = time.time()
            try:
                reply = self.worker.request(payload, timeout_s, exemptions)
            finally:
                ended = time.time()
                self.busy_s[op] = self.busy_s.get(op, 0.0) + ended - started
                self.span = [min(self.span[0], started), ended] if self.span else [started, ended]
        return plain(dict(reply, lane_started=started, lane_s=ended - started, lane_ended=ended))

    def request(self, payload: dict, timeout_s: float, turn: int | None = None) -> dict:
        """`payload` run on the lane's evaluator when its turn comes (`turn`: its op's, TURN_OF_OP,
        unless given)."""
        op = payload.get("op")
        return self._on_evaluator(TURN_OF_OP.get(op, TURN_CANDIDATE) if turn is None else turn, str(op),
                                  payload, timeout_s)

    def warm(self) -> dict:
        """Start the evaluator and its judge now (torch, CUDA context), so the first candidate
        does not wait. The reply says when the actor came up and how long the start took."""
        reply = self._on_evaluator(TURN_START, "start", {"op": "probe", "start_judge": True}, 300)
        return dict(reply, lane_created=self.created)

    def busy(self) -> dict:
        """What the lane's evaluator spent its time on: {"by_op": seconds, "span": [first request's
        start, last one's end]} (read without a turn: a threaded actor answers at once)."""
        return {"by_op": dict(self.busy_s), "span": list(self.span)}

    def close(self) -> None:
        with self.turns.turn(TURN_CANDIDATE):
            self.worker.close()


def node_gpu_ids(count: int, raylet_env) -> list[str]:
    """The names Ray gives a node's GPUs in its tasks' ray.get_gpu_ids(), and so a lane's name and
    its evaluator's CUDA_VISIBLE_DEVICES: a raylet started under CUDA_VISIBLE_DEVICES hands out
    the entries of that list (Ray's indices into it), any other the indices 0..n-1.
    `raylet_env`: the environment the node's raylet started with, known for the driver's own node
    when this process started Ray there (it inherited ours); {} for the others, whose lanes a
    trial creates by the name it is given (my_lane).
    Why it matters: with CUDA_VISIBLE_DEVICES=2 (one sweep per GPU of a node, the GEMM suite's
    shards) lanes named 0..n-1 ran their self-check, prepares and end-of-study re-timings on GPU
    0, another sweep's GPU, and every trial created a lane of its own for GPU 2."""
    visible = [d.strip() for d in str(raylet_env.get("CUDA_VISIBLE_DEVICES") or "").split(",") if d.strip()]
    return visible[:count] if len(visible) >= count else [str(i) for i in range(count)]


def gpu_nodes() -> list[tuple[str, int]]:
    """(node id, GPU count) of every live node with GPUs."""
    return [(n["NodeID"], int(n["Resources"].get("GPU", 0))) for n in ray.nodes()
            if n.get("Alive") and n["Resources"].get("GPU", 0) >= 1]


# The first verification in a lane's life took 2.5-3.1 s of its judge's time on the H100 and H200
# nodes (every lane, every run; 0.01 s for the next candidates, of any study): one-time costs of the
# judge's first check (its first reads of CUDA IPC buffers, the lazily loaded kernels of its
# comparisons), paid on the sweep's critical path by whichever candidate came first. So each
# lane verifies and times one small built-in candidate right after its warm-up, while the first
# trials' actors start: the vendor GEMM (nothing to compile) in bf16, whose result is no record.
SELF_CHECK = {"kernel_ref": registry.BUILTIN["matmul"],
              "problem": {"M": 256, "N": 256, "K": 256, "dtype": "bfloat16"}, "config": {"IMPL": "vendor"}}
SELF_CHECK_TIMEOUT_S = 300.0


def start_lanes(sweep_id: str, env: dict, cwd: str, hardware: str = "",
                raylet_env: dict | None = None) -> tuple[dict, dict, list]:
    """One lane per GPU of the cluster, its evaluator starting. Returns (lanes, the reference of
    each lane's device probe: ready once its evaluator is up, [(lane name, the reference of its
    self-check's reply)]). Each lane is named by the GPU id its trials see in ray.get_gpu_ids()
    (node_gpu_ids). `hardware`: the profile of the GPU target the self-check is run for.
    `raylet_env`: the environment the raylet of this process's node started with, where this
    process started that Ray (None where it joined one: its nodes' lanes then named 0..n-1)."""
    lanes = {}
    here = ray.get_runtime_context().get_node_id()
    for node_id, count in gpu_nodes():
        known = node_id == here and raylet_env is not None  # else the names are a guess
        if not known:  # a trial may find its GPU without a lane: the keeper starts it then
            start_keeper(sweep_id, env, cwd)
        pin = NodeAffinitySchedulingStrategy(node_id, soft=False)
        for gpu in node_gpu_ids(count, raylet_env if known else {}):
            name = lane_name(sweep_id, node_id, gpu)
            lanes[name] = Lane.options(name=name, get_if_exists=True, scheduling_strategy=pin).remote(
                gpu, env, cwd)
    warm = {name: lane.warm.remote() for name, lane in lanes.items()}
    check = make_request("evaluate", SELF_CHECK["kernel_ref"], SELF_CHECK["problem"], hardware,
                         Timing(warmup_ms=1, rep_ms=2).bench_settings("do_bench"), config=dict(SELF_CHECK["config"]),
                         seed=0)
    # behind each lane's warm-up, ahead of any prepare or candidate
    checks = [(name, lane.request.remote(check, SELF_CHECK_TIMEOUT_S, TURN_FIRST)) for name, lane in lanes.items()]
    return lanes, warm, checks


def self_check_report(checks: list) -> list[str]:
    """What each lane's self-check found (answered ones only: it ran long before the sweep's end)."""
    ready, _ = ray.wait([ref for _, ref in checks], num_returns=len(checks), timeout=0)
    lines = []
    for name, ref in checks:
        if ref not in ready:
            continue
        try:
            reply = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a report line, not a failure of the sweep
            reply = {"status": "runtime_error", "error": f"{type(exc).__name__}: {exc}"}
        lines.append(_self_check_line(name.rsplit(':', 1)[-1], reply))
    return lines


# the self-check reply's spans its line names (the verification's split among them); any other
# over 50 ms is added to it
_VERIFY_SPLIT = ("verify_guard_s", "verify_encode_s", "verify_decode_s", "verify_check_s", "verify_release_s")
_SELF_CHECK_SHOWN = {"eval_s", "verify_s", "compile_s", "load_s", "lane_s", *_VERIFY_SPLIT}


def _self_check_line(lane: str, reply: dict) -> str:
    """One lane's self-check, as the sweep's log says it. Every other span of the reply over
    50 ms is named too: where a self-check far longer on the lane than its evaluation spent the
    rest (2 x H200 node: 6.2 s on the lane, 1.2 s evaluated)."""
    if reply.get("status") != "ok":
        return f"lane {lane}: self-check {reply.get('status')}: {str(reply.get('error', ''))[:300]}"
    began = reply.get("lane_started", 0.0)
    split = ", ".join(f"{k[len('verify_'):-2]} {reply[k]:.2f}" for k in _VERIFY_SPLIT if k in reply)
    others = ", ".join(f"{k} {v:.2f}" for k, v in sorted(reply.items()) if k.endswith("_s")
                       and k not in _SELF_CHECK_SHOWN and isinstance(v, (int, float)) and v >= 0.05)
    return (f"lane {lane}: self-check ok in {reply.get('eval_s', 0.0):.1f} s "
            f"(verified {reply.get('verify_s', 0.0):.2f} s: {split}; first launch "
            f"{reply.get('compile_s', reply.get('load_s', 0.0)):.2f} s), on the lane from unix "
            f"{began:.3f} to {began + reply.get('lane_s', 0.0):.3f}" + (f"; also {others}" if others else ""))


def warm_report(warm: dict) -> list[str]:
    """When each lane's actor came up and how long its evaluator and judge took to start."""
    ready, _ = ray.wait(list(warm.values()), num_returns=len(warm), timeout=0) if warm else ([], [])
    lines = []
    for name, ref in warm.items():
        if ref not in ready:
            continue
        try:
            reply = ray.get(ref)
        except Exception:  # noqa: BLE001 - a lane that failed its start said so when it was asked
            continue
        if "lane_created" in reply:
            lines.append(f"lane {name.rsplit(':', 1)[-1]}: actor up at unix {reply['lane_created']:.3f}, "
                         f"evaluator and judge started in {reply['lane_s']:.2f} s (from unix "
                         f"{reply['lane_started']:.3f})")
    return lines


# a lane's request ops as its report names them
BUSY_NAMES = {"evaluate": "candidates", "retime": "re-timings", "prepare": "prepares",
              "start": "its start", "release": "releases"}


def busy_report(lanes: dict) -> list[str]:
    """How busy each lane's GPU evaluator was, by what it ran, over the span of its requests: the
    candidates' own lane time (the records' lane_s) leaves out the end-of-study re-timings and
    the prepares, which take the same GPU. The lane's self-check is a candidate ("evaluate")."""
    refs = {name: lane.busy.remote() for name, lane in lanes.items()}
    lines = []
    for name, ref in refs.items():
        try:
            got = ray.get(ref, timeout=30)
        except Exception:  # noqa: BLE001 - a report line; a lane that died said so elsewhere
            continue
        by_op, span = got.get("by_op") or {}, got.get("span") or []
        if not by_op or len(span) != 2:
            continue
        wall, total = max(span[1] - span[0], 1e-9), sum(by_op.values())
        parts = ", ".join(f"{BUSY_NAMES.get(op, op)} {s:.1f} s" for op, s in
                          sorted(by_op.items(), key=lambda kv: -kv[1]))
        lines.append(f"lane {name.rsplit(':', 1)[-1]}: busy {total:.1f} s of the {wall:.1f} s from its first "
                     f"request to its last ({100 * total / wall:.0f}%): {parts}")
    return lines


def prepare(lanes: dict, studies: list) -> list:
    """Every study's prepare request to every lane, without waiting: [(lane name, study key, its
    reply's reference)]. `studies`: [(study key, its plan's ctx)], in the order they are wanted. A
    lane runs the requests one at a time, a prepare behind its warm-up and ahead of the candidates
    waiting then (Turns)."""
    sent = []
    for key, ctx in studies:
        # start_judge: each set is registered with the judge as made (prepare.py says why)
        payload = make_request("prepare", ctx["kernel_ref"], ctx["problem"], ctx["hardware"], ctx["bench"],
                               start_judge=True)
        for name, lane in lanes.items():
            sent.append((name, key, lane.request.remote(payload, max(PREPARE_TIMEOUT_S, ctx["timeout_s"]))))
    return sent


def prepare_report(sent: list) -> list[str]:
    """One line per prepare that failed (that study's first candidate on that lane paid for its sets
    itself, as without one), and what the others cost. Only those answered: at a sweep's end all
    are, and a sweep that stops early does not wait for the rest."""
    done, _ = ray.wait([ref for _, _, ref in sent], num_returns=len(sent), timeout=0) if sent else ([], [])
    lines, spent, ok, spans = [], 0.0, 0, {}
    for name, key, ref in sent:
        if ref not in done:
            continue
        try:
            reply = ray.get(ref)
        except Exception as exc:  # the lane actor died: its candidates recorded that themselves
            reply = {"status": "runtime_error", "error": f"{type(exc).__name__}: {exc}"}
        if reply.get("status") == "ok":
            ok, spent = ok + 1, spent + reply.get("prepare_s", 0.0)
            began = reply.get("lane_started", 0.0)
            first, last = spans.get(name, (began, began))
            spans[name] = (min(first, began), max(last, began + reply.get("lane_s", 0.0)))
            continue
        why = (str(reply.get("error") or reply.get("status")).splitlines() or ["?"])[0][:300]
        lines.append(f"  ! {key}: lane {name} could not prepare it ({why}); its first candidate there paid instead")
    if sent:
        lines.append(f"lanes prepared {ok} of {len(sent)} (study, lane) pairs ahead of their candidates "
                     f"in {spent:.1f} s of lane time")
        for name, (first, last) in sorted(spans.items()):
            lines.append(f"  lane {name.rsplit(':', 1)[-1]}: prepares on the lane from unix {first:.3f} to {last:.3f}")
    return lines


def keeper_name(sweep_id: str) -> str:
    return f"lanes:{sweep_id}"


@ray.remote(num_cpus=0)
class LaneKeeper:
    """Starts, on a trial's request, the lane of a GPU the sweep started none for (a remote
    raylet started under CUDA_VISIBLE_DEVICES: node_gpu_ids), and holds it. Why a keeper: a lane
    is owned by whoever creates it, and Ray ends an actor with its owner; a lane created by a
    trial died with the trial's actor (Tune ends actors as it likes), with every candidate queued
    on it ("all references to the actor were removed": 138 candidates of one GEMM-suite shard were
    lost so). The keeper is the driver's, so its lanes live as long as the sweep, and no longer
    (a detached lane would outlive a killed driver on a cluster that outlives it)."""

    def __init__(self, sweep_id: str, env: dict, cwd: str):
        self.sweep_id, self.env, self.cwd = sweep_id, env, cwd
        self.lanes: dict = {}

    def lane(self, node_id: str, gpu_id: str):
        name = lane_name(self.sweep_id, node_id, gpu_id)
        if name not in self.lanes:
            self.lanes[name] = Lane.options(
                name=name, get_if_exists=True,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(gpu_id, self.env, self.cwd)
        return self.lanes[name]


_KEEPERS: dict = {}  # sweep id -> its keeper's handle: the driver's reference keeps it alive


def start_keeper(sweep_id: str, env: dict, cwd: str):
    """The sweep's LaneKeeper (one, named), owned by the caller (the driver), which holds it until
    stop_lanes. Started only where a node's lane names are a guess (start_lanes): a sweep on the
    node whose Ray it started names every lane right and pays for no keeper's process."""
    if sweep_id not in _KEEPERS:
        _KEEPERS[sweep_id] = LaneKeeper.options(name=keeper_name(sweep_id), get_if_exists=True).remote(
            sweep_id, env, cwd)
    return _KEEPERS[sweep_id]


def my_lane(sweep_id: str) -> "ray.actor.ActorHandle":
    """The lane of the GPU Ray gave the calling trial: the one the sweep started for it, else the
    one the sweep's keeper starts for it on this first use (LaneKeeper says why not the trial)."""
    node_id = ray.get_runtime_context().get_node_id()
    gpus = ray.get_gpu_ids()
    if not gpus:
        raise RuntimeError("a GPU candidate's trial was given no GPU by Ray")
    name = lane_name(sweep_id, node_id, str(gpus[0]))
    try:
        return ray.get_actor(name)
    except ValueError:
        return ray.get(ray.get_actor(keeper_name(sweep_id)).lane.remote(node_id, str(gpus[0])), timeout=60)


def named_lane(name: str):
    """The sweep's actor of that name, a lane or its keeper, whoever started it (None if none)."""
    try:
        return ray.get_actor(name)
    except ValueError:
        return None


def stop_lanes(sweep_id: str) -> None:
    """Close every lane of the sweep (its evaluator process exits), then end the actors, the
    keeper last."""
    for entry in ray.util.list_named_actors(all_namespaces=False):
        name = entry if isinstance(entry, str) else entry.get("name", "")
        if not name.startswith(f"lane:{sweep_id}:"):
            continue
        try:
            lane = ray.get_actor(name)
            ray.get(lane.close.remote(), timeout=30)
            ray.kill(lane)
        except Exception:  # a lane already gone has nothing to close
            pass
    keeper = _KEEPERS.pop(sweep_id, None) or named_lane(keeper_name(sweep_id))
    if keeper is not None:
        ray.kill(keeper)
