"""GPU lanes and compile slots: the long-lived evaluation processes of a sweep, one set per GPU.

Why a lane per GPU: candidates share a GPU so that their compiles overlap, but what they put on
the GPU (verification launches, timing) must not overlap, or they disturb each other's timings.
So a candidate's trial compiles ahead on its own CPU core (tuner.measure.evaluate's `compile`
request, which launches nothing), and hands the rest (steps 3 and 4: verify, time) to the lane of
the GPU that Ray gave the trial. The lane's evaluator process keeps its CUDA context, each study's
input sets and references and every compiled kernel for the whole sweep; the lane is a Ray actor
that handles one request at a time, so its queue is the GPU's timing order.

A lane is a named Ray actor pinned to its node (`lane:<sweep id>:<node id>:<gpu id>`), asking for no Ray
resources itself: the trials hold the GPU fractions, and so keep Ray's accounting of how many
candidates a GPU takes; the lane only does their device work. A candidate that crashes or
corrupts the lane's evaluator (an illegal memory access) is recorded and the evaluator process
is replaced (tuner.execution.worker); the lane actor itself stays.

Compile slots: the processes that compile ahead, started with the lanes (torch, Triton and a CUDA
context warm before the first candidate, instead of inside the first trials). A trial actor
claims one slot of its GPU for its lifetime with a file lock on the node (released by the OS if
the actor dies), so no two trials ever share a slot; a trial that finds none free compiles in a
process of its own.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tuner.execution.worker import CandidateWorker


def lane_name(sweep_id: str, node_id: str, gpu_id: str) -> str:
    """A lane belongs to one sweep: a later sweep (maybe of changed kernel code) never reuses it."""
    return f"lane:{sweep_id}:{node_id}:{gpu_id}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class Lane:
    def __init__(self, gpu_id: str, env: dict, cwd: str):
        # Actors that ask for no GPU see every GPU of the node: the evaluator process is given its own.
        self.worker = CandidateWorker(env={**env, "CUDA_VISIBLE_DEVICES": str(gpu_id)}, cwd=cwd)
        self.gpu_id = str(gpu_id)

    def request(self, payload: dict, timeout_s: float) -> dict:
        started = time.time()
        reply = self.worker.request(payload, timeout_s)
        reply["lane_started"] = started
        return reply

    def warm(self) -> dict:
        """Start the evaluator now (torch, CUDA context), so the first candidate does not wait."""
        return self.worker.request({"op": "probe"}, timeout_s=300)

    def close(self) -> None:
        self.worker.close()


def slot_name(sweep_id: str, node_id: str, gpu_id: str, k: int) -> str:
    return f"slot:{sweep_id}:{node_id}:{gpu_id}:{k}"


def gpu_nodes() -> list[tuple[str, int]]:
    """(node id, GPU count) of every live node with GPUs."""
    return [(n["NodeID"], int(n["Resources"].get("GPU", 0))) for n in ray.nodes()
            if n.get("Alive") and n["Resources"].get("GPU", 0) >= 1]


# A compile slot keeps one input set of a few studies: it only needs their shapes to compile.
SLOT_INPUT_BYTES = 1 << 30


def start_lanes(sweep_id: str, env: dict, cwd: str, slots_per_gpu: int = 0) -> tuple[dict, dict]:
    """One lane per GPU of the cluster and `slots_per_gpu` compile slots beside it, all started
    (evaluators warm) before the first candidate. Returns (lanes, device info of each lane).
    Ray numbers a node's GPUs 0..n-1 as its trials see them in ray.get_gpu_ids()."""
    lanes, slots = {}, []
    for node_id, count in gpu_nodes():
        pin = NodeAffinitySchedulingStrategy(node_id, soft=False)
        for gpu in range(count):
            name = lane_name(sweep_id, node_id, str(gpu))
            lanes[name] = Lane.options(name=name, get_if_exists=True, scheduling_strategy=pin).remote(
                str(gpu), env, cwd)
            slots += [Lane.options(name=slot_name(sweep_id, node_id, str(gpu), k), get_if_exists=True,
                                   scheduling_strategy=pin).remote(
                str(gpu), {**env, "KERNELEVOLVE_INPUT_BYTES": str(SLOT_INPUT_BYTES)}, cwd)
                for k in range(slots_per_gpu)]
    infos = ray.get([lane.warm.remote() for lane in list(lanes.values()) + slots])
    return lanes, dict(zip(lanes, infos))


_SLOT: dict = {}  # this trial actor's compile slot: {"handle": actor, "lock": open file}


def my_slot(sweep_id: str):
    """This trial actor's compile slot on its GPU, claimed once for the actor's life; None where
    every slot of the GPU is taken (the caller then compiles in a process of its own)."""
    if sweep_id in _SLOT:
        return _SLOT[sweep_id]["handle"]
    node_id = ray.get_runtime_context().get_node_id()
    gpus = ray.get_gpu_ids()
    folder = os.path.join(tempfile.gettempdir(), "kernelevolve-slots")
    os.makedirs(folder, exist_ok=True)
    k = 0
    while gpus:
        name = slot_name(sweep_id, node_id, str(gpus[0]), k)
        try:
            handle = ray.get_actor(name)
        except ValueError:
            break  # no slot k: all taken
        fh = open(os.path.join(folder, name.replace(":", "_") + ".lock"), "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            k += 1
            continue
        _SLOT[sweep_id] = {"handle": handle, "lock": fh}
        return handle
    _SLOT[sweep_id] = {"handle": None, "lock": None}
    return None


def my_lane(sweep_id: str, env: dict, cwd: str) -> "ray.actor.ActorHandle":
    """The lane of the GPU Ray gave the calling trial. A node whose GPUs Ray numbers otherwise
    than 0..n-1 (a raylet started with CUDA_VISIBLE_DEVICES) gets its lane here, on first use."""
    node_id = ray.get_runtime_context().get_node_id()
    gpus = ray.get_gpu_ids()
    if not gpus:
        raise RuntimeError("a GPU candidate's trial was given no GPU by Ray")
    name = lane_name(sweep_id, node_id, str(gpus[0]))
    try:
        return ray.get_actor(name)
    except ValueError:
        return Lane.options(name=name, get_if_exists=True, 
                            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                            ).remote(str(gpus[0]), env, cwd)


def stop_lanes(sweep_id: str) -> None:
    """Close every lane and slot of the sweep (its evaluator process exits), then end the actors."""
    for entry in ray.util.list_named_actors(all_namespaces=False):
        name = entry if isinstance(entry, str) else entry.get("name", "")
        if not name.startswith((f"lane:{sweep_id}:", f"slot:{sweep_id}:")):
            continue
        try:
            lane = ray.get_actor(name)
            ray.get(lane.close.remote(), timeout=30)
            ray.kill(lane)
        except Exception:  # a lane already gone has nothing to close
            pass
