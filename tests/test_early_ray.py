"""The sweep's private Ray started early, in a head process beside the engine's imports
(tuner/execution/early_ray.py): the sweep joins it, a head for other cores is not used, and the
head's Ray ends with the command."""
import json
import os
import subprocess
import sys

import pytest

from kernelevolve.tuner.execution import early_ray

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a command's process: the head started before Ray is imported, then the sweep's init_ray
DRIVER = """
import json, os, sys
from kernelevolve.tuner.execution import early_ray
head = early_ray.start_early({early})
import ray
from ray._private import services
from kernelevolve.tuner.execution import cluster
scans, scan = [], services._find_address_from_flag  # Ray's search of the machine's processes
services._find_address_from_flag = lambda flag: scans.append(flag) or scan(flag)
how = cluster.init_ray(None, {asked})
import psutil, time
time.sleep(3)  # a worker started ahead for the head's driver would be up by now
# a Python worker names itself ray::IDLE until it runs something
ahead = sum(p.name().startswith("ray::IDLE") for p in psutil.Process(head.proc.pid).children(recursive=True)) \
    if how == "early" else None
@ray.remote
def pid():
    return os.getpid()
out = {{"how": how, "cpus": ray.cluster_resources().get("CPU"), "task_pid": ray.get(pid.remote()), "workers_ahead": ahead,
       "head_pid": head.proc.pid if head is not None else None,
       "head_alive": head is not None and head.proc.poll() is None, "node_scans": scans.count("--node_id")}}
print(json.dumps(out), flush=True)
"""


def _drive(early, asked) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop(early_ray.AUTH_MODE, None)
    proc = subprocess.run([sys.executable, "-c", DRIVER.format(early=early, asked=asked)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has ended
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_the_sweep_joins_the_ray_started_early_and_it_ends_with_the_command():
    out = _drive(early=1, asked=1)
    assert out["how"] == "early" and out["cpus"] == 1 and out["head_alive"]
    assert out["node_scans"] == 0  # the driver joined the head's node without searching for it
    assert out["workers_ahead"] == 0  # no Python worker started ahead of any task (local_ray says why)
    import time

    deadline = time.time() + 60  # the command ended: its head saw stdin close and shut Ray down
    while _alive(out["head_pid"]) and time.time() < deadline:
        time.sleep(0.5)
    assert not _alive(out["head_pid"])


@pytest.mark.slow
def test_a_head_for_other_cores_is_ended_and_the_sweep_starts_its_own():
    out = _drive(early=2, asked=1)
    assert out["how"] == "started" and out["cpus"] == 1 and not out["head_alive"]


def test_switched_off_and_too_late_once_ray_is_imported(monkeypatch):
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setenv(early_ray.SWITCH, "0")
    assert early_ray.start_early() is None
    monkeypatch.undo()

    import ray  # noqa: F401 - this process has imported it (as any test of the engine has)

    assert early_ray.start_early() is None and early_ray.take(None) is None


def test_join_node_answers_ray_s_search_with_the_known_node_for_the_call_only():
    from ray._private import services

    from kernelevolve.tuner.execution.local_ray import join_node

    search = services.find_node_ids
    with join_node("ab12"):
        assert services.find_node_ids() == {"ab12"}
    assert services.find_node_ids is search
    with join_node(None):  # a head that did not say its node: Ray searches as it always does
        assert services.find_node_ids is search
