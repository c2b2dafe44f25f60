"""A real multi-node Ray cluster on this machine: a `ray start` head and two workers with different
custom resources, each on its own loopback address. Studies must land on the nodes that carry
their target's resources; a target no node can serve is a clear error (exit 2), not a hang."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.5", 0))
        return sock.getsockname()[1]


PORT = _free_port()  # not a fixed port: another Ray on this machine must not collide with ours
HEAD = f"127.0.0.5:{PORT}"
# Ray 2.60 turns on token authentication for `ray start --head`; every process uses the token.
ENV = dict(os.environ, RAY_AUTH_MODE="token", PYTHONUNBUFFERED="1")
RAY = [sys.executable, "-m", "ray.scripts.scripts"]

EXP = """
name: cluster
kernels:
  - kernel: matmul
    problems: [{M: 40, N: 24, K: 50, dtype: float32}]
targets:
  - {name: lane-h100, hardware: cpu-interpreter, resources: {CPU: 1, lane_h100: 1}}
  - {name: lane-a100, hardware: cpu-interpreter, resources: {CPU: 1, lane_a100: 1}}
search: {sampler: random, samples: 3, concurrency: 1, seed: 0, timeout_s: 300, top_k: 1}
tracking: {uri: sqlite:///mlflow.db}
"""


def _node(*args) -> subprocess.Popen:
    """One `ray start --block` node in its own process group, so that the teardown stops exactly
    this test's nodes (a `ray stop` would also kill any other Ray on the machine, the pytest
    process's own among them)."""
    # A small object store per node: by default each takes ~30% of RAM in /dev/shm, and three of
    # them beside the pytest process's own Ray do not fit on a small CI machine.
    args = (*args, "--object-store-memory=200000000")
    return subprocess.Popen(RAY + ["start", "--block", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _nodes() -> dict:
    out = subprocess.run([sys.executable, "-c", (
        "import json, ray; ray.init(address='%s', _node_ip_address='127.0.0.5', logging_level='ERROR');"
        "print('NODES=' + json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))") % HEAD],
        env=ENV, capture_output=True, text=True, timeout=120)
    lines = [x for x in out.stdout.splitlines() if x.startswith("NODES=")]  # Ray may print too
    return json.loads(lines[-1][len("NODES="):]) if lines else {}


def _wait_for(count: int, timeout_s: float = 180) -> dict:
    deadline = time.time() + timeout_s
    nodes = {}
    while time.time() < deadline:
        time.sleep(3)
        nodes = _nodes()
        if len(nodes) >= count:
            break
    return nodes


@pytest.fixture(scope="module")
def cluster():
    import ray
    ray.shutdown()  # an earlier test's private Ray in this process would compete with the nodes
    procs = [_node("--head", "--node-ip-address=127.0.0.5", f"--port={PORT}", "--num-cpus=1",
                   "--include-dashboard=false", "--disable-usage-stats")]
    try:
        # One node at a time, each registered before the next starts: nodes that start together
        # race for the head's registration and one of them may never join.
        nodes = _wait_for(1)
        procs.append(_node(f"--address={HEAD}", "--node-ip-address=127.0.0.6", "--num-cpus=1",
                           '--resources={"lane_h100": 2}'))
        nodes = _wait_for(2)
        procs.append(_node(f"--address={HEAD}", "--node-ip-address=127.0.0.7", "--num-cpus=1",
                           '--resources={"lane_a100": 2}'))
        nodes = _wait_for(3)
        yield nodes
    finally:
        for p in reversed(procs):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(timeout=20)
                    break
                except subprocess.TimeoutExpired:
                    continue


def _run(tmp_path, text):
    (tmp_path / "exp.yaml").write_text(text)
    return subprocess.run([sys.executable, "-m", "kernelevolve.tuner.cli", "run", "exp.yaml", "--address", HEAD,
                           "--quiet"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)


def test_studies_land_on_the_nodes_with_their_resources(cluster, tmp_path):
    assert len(cluster) == 3
    proc = _run(tmp_path, EXP)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    e = client.get_experiment_by_name("cluster")
    children = client.search_runs([e.experiment_id], "tags.`kernelevolve.role` = 'candidate' and tags.status = 'ok'")
    by_target = {}
    for c in children:
        by_target.setdefault(c.data.tags["target"], set()).add(c.data.tags["ray_node_id"])
    assert set(by_target) == {"lane-h100", "lane-a100"}
    for target, lane in (("lane-h100", "lane_h100"), ("lane-a100", "lane_a100")):
        nodes = by_target[target]
        assert len(nodes) == 1, f"{target} ran on several nodes: {nodes}"
        assert lane in cluster[nodes.pop()], f"{target} ran on a node without {lane}"
    # one sweep schedules both studies together: each target's candidates run on its own node
    # while the other target's run on theirs (their spans overlap in time)
    spans = {}
    for c in children:
        t, m = c.data.tags["target"], c.data.metrics
        lo, hi = spans.get(t, (float("inf"), 0.0))
        spans[t] = (min(lo, m["trial_started"]), max(hi, m["timed_to"]))
    (a0, a1), (b0, b1) = spans.values()
    assert max(a0, b0) < min(a1, b1), f"the two studies ran one after the other: {spans}"


def test_target_no_node_can_serve_is_a_clear_error(cluster, tmp_path):
    proc = _run(tmp_path, EXP.replace("lane_a100: 1", "lane_mi300x: 1"))
    assert proc.returncode == 2
    assert "needs lane_mi300x=1" in proc.stderr and "Traceback" not in proc.stderr
