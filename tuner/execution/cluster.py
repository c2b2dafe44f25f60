"""The Ray side of a sweep: start or join Ray, check that targets can be served, run one-off requests.

Fixed costs are paid once per sweep, not per study: Ray starts once, each target's device is
probed once, and the lanes (tuner.execution.lanes) start once.
"""
from __future__ import annotations

import logging
import os

import ray

from kernelevolve.tuner.execution.spawner import ENV as SPAWNER_ENV
from kernelevolve.tuner.execution.worker import CandidateWorker
from kernelevolve.tuner.experiment import hardware


class TargetUnavailable(Exception):
    """No node of the Ray cluster can serve a target: a user error (exit 2), never a hang."""




def init_ray(address: str | None, num_cpus: int | None = None) -> str:
    """Join the Ray at `address`, or the private one the command started early for this sweep
    (tuner.execution.early_ray), or start a private one here (with `num_cpus` of this machine's
    cores: a benchmark's share of a node; None: all of them). Returns how: "joined", "early" or
    "started"."""
    from kernelevolve.tuner.execution import early_ray
    from kernelevolve.tuner.execution.local_ray import init_private, join_node, loopback_init_kwargs, prepare_environment

    prepare_environment()
    head = None if address else early_ray.take(num_cpus)
    if ray.is_initialized():
        if head is not None:  # this process joined a Ray before: the head is not needed
            head.close()
        return "joined"
    # A private Ray (no --address) listens on loopback only (tuner.execution.local_ray says how
    # Ray 2.60 is made to), so nothing of it is reachable from outside this machine.
    if head is not None and head.address():
        try:
            with join_node(head.node_id):
                ray.init(address=head.address(), log_to_driver=False, logging_level=logging.ERROR,
                         **loopback_init_kwargs())
            return "early"
        except Exception:  # noqa: BLE001 - a head that cannot be joined: this sweep's own Ray instead
            head.close()
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        return "joined"
    init_private(num_cpus)
    return "started"


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


def _fits_per_node(need) -> list[int]:
    import json

    need = json.loads(need) if isinstance(need, str) else need
    out = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node["Resources"]
        fits = [have.get(k, 0) / v for k, v in need.items() if v > 0]
        out.append(int(min(fits) + 1e-9) if fits else 0)
    return out


def room_for(need) -> int:
    """How many trials asking for `need` (a dict, or its JSON) the live nodes can hold at once."""
    return sum(_fits_per_node(need))


def most_per_trial(need: dict) -> int:
    """How many candidates asking for `need` each one trial may carry: what one node holds (a
    trial runs on one node), and no more than one GPU's worth (a trial's candidates all go to
    the lane of the one GPU Ray gives it)."""
    most = max(_fits_per_node(need) or [1])
    share = float(need.get("GPU", 0) or 0)
    if share > 0:
        most = min(most, int(1 / share + 1e-9))
    return max(1, most)


def target_env(target) -> dict:
    """The environment of every evaluation process of a target."""
    env = {"TRITON_DEFAULT_FP_FUSION": "1"}  # explicit: results must not depend on a default
    if target.profile.interpreter:
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    if "TRITON_CACHE_DIR" in os.environ:  # a cache chosen by the driver reaches every worker
        env["TRITON_CACHE_DIR"] = os.environ["TRITON_CACHE_DIR"]
    if SPAWNER_ENV in os.environ and not target.profile.interpreter:  # its node's fork server
        env[SPAWNER_ENV] = os.environ[SPAWNER_ENV]
    return env


def one_shot(env: dict, cwd: str, payload: dict, timeout_s: float) -> dict:
    """Ray task: one request (a device probe, a re-timing) in a fresh evaluation process."""
    worker = CandidateWorker(env=env, cwd=cwd)
    try:
        return worker.request(payload, timeout_s)
    finally:
        worker.close()


def remote_request(resources: dict, env: dict, payload: dict, timeout_s: float) -> dict:
    """One request on a target's resources, in a fresh worker; failures come back as records."""
    res = dict(resources)
    task = ray.remote(one_shot).options(num_cpus=res.pop("CPU", 1), num_gpus=res.pop("GPU", 0),
                                        resources=res or None, max_retries=0)
    try:
        return ray.get(task.remote(env, os.getcwd(), payload, timeout_s), timeout=timeout_s + 120)
    except Exception as exc:
        return {"status": "runtime_error", "error": f"{type(exc).__name__}: {exc}"}


def check_device(target, info: dict) -> dict:
    """A device probe's answer checked against the chip the target names."""
    if info.get("status") != "ok":
        raise TargetUnavailable(f"target '{target.name}': its worker failed to start: {info.get('error')}")
    if not hardware.matches(target.profile, info):
        raise TargetUnavailable(f"target '{target.name}' names {target.profile.name}, "
                                f"but its worker found '{info.get('gpu_name')}'")
    return info
