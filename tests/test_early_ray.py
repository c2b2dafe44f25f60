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
from kernelevolve.tuner.execution import cluster
how = cluster.init_ray(None, {asked})
@ray.remote
def pid():
    return os.getpid()
out = {{"how": how, "cpus": ray.cluster_resources().get("CPU"), "task_pid": ray.get(pid.remote()),
       "head_pid": head.proc.pid if head is not None else None,
       "head_alive": head is not None and head.proc.poll() is None}}
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
