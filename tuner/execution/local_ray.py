"""A private Ray on this machine whose servers listen on loopback only.

What Ray 2.60 does (read in its source, checked with `ss -ltnp`): its C++ gRPC servers (GCS,
raylet, every worker's core-worker server) bind "127.0.0.1" only when the node IP address they are
given is exactly "127.0.0.1" (`GrpcServer(..., listen_to_localhost_only = node_ip_address ==
"127.0.0.1")`), and "0.0.0.0" otherwise. ray.init turns "127.0.0.1" into the machine's routable
address (services.resolve_ip_for_localhost) unless `ray_constants.ENABLE_RAY_CLUSTER` is false,
which on Linux only the environment variable RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes it (its
name notwithstanding; it is read when ray is imported). So a node IP of "127.0.0.2" (what the
sweep used) is advertised, but the servers still listen on every interface; with the variable
set and "127.0.0.1" given, they listen on 127.0.0.1 only.

`loopback_init_kwargs()` sets that up and returns what ray.init takes; sweep.init_ray calls it
for a Ray started without --address. Ray's own Python helpers (runtime-env agent, log and metrics
agents) listen on the node IP address, here 127.0.0.1, too.
"""
from __future__ import annotations

import contextlib
import os

LOOPBACK = "127.0.0.1"
ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray's system config, read by the raylet as it starts: workers started with the raylet (one per
# core) and for the first driver that joins it
PRESTART_SWITCHES = ("RAY_enable_worker_prestart", "RAY_prestart_worker_first_driver")


def prepare_environment() -> None:
    """What every private Ray of a sweep runs with, in this process's environment (a Ray started
    from here, its raylet and its workers inherit it): tuner.execution.cluster init_ray and the
    early head (tuner.execution.early_ray) both call it before their Ray starts."""
    # Trials must see the driver's cwd: relative kernel paths and stores resolve against it.
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # The sweep handles SIGINT and SIGTERM itself (a stop that can be resumed): Tune must not.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    # No Python workers started ahead of any task: a raylet starts one per core as it starts and
    # for the first driver that joins it, and Ray Tune's trial actors (a runtime environment of
    # their own) never run on them (checked on Ray 2.60: a trial actor ran on a worker started for
    # it, beside the ones started ahead); of the sweep's other actors, the few plain ones (lanes,
    # MLflow writers, the lane keeper) did, and now start a worker each when asked. On a 4 x H200
    # node that was 64 interpreters importing Ray at once, on the cores the sweep's own start needed.
    for switch in PRESTART_SWITCHES:
        os.environ.setdefault(switch, "0")


def loopback_init_kwargs() -> dict:
    """ray.init keyword arguments for a private, loopback-only Ray (call before ray.init)."""
    os.environ[ENV] = "0"  # for processes Ray starts, and for a ray not imported yet
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # ray is already imported: its constant, too
    return {"_node_ip_address": LOOPBACK}


def init_private(num_cpus: int | None = None):
    """ray.init of a private, loopback-only Ray on this machine (`num_cpus` of its cores; None:
    all), as both the sweep (tuner.execution.cluster init_ray) and the early head
    (tuner.execution.early_ray) start it. address="local": never whatever cluster `ray start` left
    registered on this machine (a stale one would make ray.init wait for it for minutes)."""
    import logging

    import ray

    return ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                    **loopback_init_kwargs(), **({"num_cpus": num_cpus} if num_cpus else {}))


@contextlib.contextmanager
def join_node(node_id: str | None):
    """Within it, a ray.init that joins a running Ray connects to the node `node_id` (hex) without
    looking for it among the machine's processes.

    Why: a driver joining a Ray (Ray 2.60, `services.get_node_to_connect_for_driver`) finds the
    raylets on its machine by reading every process's command line (`services.find_node_ids`,
    psutil). On a 4 x H200 node, while the head's Ray started its 64 workers, that read took ~6 s of
    the sweep's start (driver stack samples, docs/benchmarks.md "The start, shortened"). The early head
    (tuner.execution.early_ray) knows its node, so the search is answered with it; Ray still asks
    its GCS for that node's details and fails as before if it is not alive. Ray has no parameter
    for this: the private function is replaced for the call only, and only where it exists."""
    from ray._private import services

    if not node_id or not callable(getattr(services, "find_node_ids", None)):
        yield
        return
    found = services.find_node_ids
    services.find_node_ids = lambda: {node_id}
    try:
        yield
    finally:
        services.find_node_ids = found


def listening_sockets(pids) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state owned by one of `pids`."""
    import psutil

    pids = set(pids)
    found = []
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            found.append((c.laddr.ip, c.laddr.port, c.pid))
    return found


def ray_process_ids() -> list[int]:
    """This process and every process under it (a private Ray's GCS, raylet, workers, agents)."""
    import psutil

    me = psutil.Process()
    return [me.pid] + [p.pid for p in me.children(recursive=True)]
