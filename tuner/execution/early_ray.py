"""A sweep's private Ray, started as the command begins, beside the engine's imports.

Why: measured on a 4 x H200 node (docs/benchmarks.md, "Compile slots that initialise no CUDA"),
`kernelevolve run` spent 5.8 s importing the engine (torch, Ray Tune) and then 6.7-7.0 s starting
Ray, one after the other, before its first trial. Ray's start is its own processes (GCS, raylet,
agents) coming up; nothing in it needs the engine. So `kernelevolve run` starts that Ray first, in a
process of its own (the head), and the sweep joins it when it gets there (tuner.execution.cluster
init_ray). A process, not a thread of the driver: the sweep forks its valid-set enumerations while
the driver has no thread of Ray's yet (tuner.search.valid_sets says why).

The head (`python -m kernelevolve.tuner.execution.early_ray NUM_CPUS`) calls ray.init as the sweep
would for a private Ray (loopback only: tuner.execution.local_ray), prints the GCS address and its
node's id (so that the driver joins that node without searching the machine's processes for it:
tuner.execution.local_ray.join_node), and
holds that Ray until its stdin closes (the command ended) or the command's process is gone (it
died, whatever other process still holds the pipe), then shuts it down. It runs in a session of
its own, so a Ctrl-C meant for the sweep (which stops it resumably) does not end its Ray under it. Ray's token authentication: the head and the driver
both run with RAY_AUTH_MODE=token (unless the user chose a mode), so the driver reads the token
the head saved, as a `ray.init()` of its own would have made and read it.

Whatever goes wrong here costs only the head: the sweep then starts its own Ray, as before.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from kernelevolve.tuner.execution.local_ray import prepare_environment

AUTH_MODE = "RAY_AUTH_MODE"
SWITCH = "KERNELEVOLVE_EARLY_RAY"  # "0": no head; the sweep starts its Ray itself, after the imports
READY_TIMEOUT_S = 120.0  # a head that has not printed its address by then is given up on


class Head:
    """The driver's handle on the head process."""

    def __init__(self, proc: subprocess.Popen, num_cpus: int | None):
        self.proc, self.num_cpus = proc, num_cpus
        self.started = time.time()
        self._address: str | None = None
        self.node_id: str | None = None  # the head's Ray node (hex), once address() has it

    def address(self, timeout_s: float = READY_TIMEOUT_S) -> str | None:
        """The GCS address once the head's Ray is up (waits for it), or None where it failed."""
        if self._address is None and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, self.started + timeout_s - time.time()))
            words = (self.proc.stdout.readline() if ready else "").split()
            self._address, self.node_id = (words + [None, None])[:2]
            if self._address is None:
                self.close()
        return self._address

    def close(self) -> None:
        """Its Ray shut down and the head ended (a head that does not end in time is killed)."""
        if self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


_EARLY: Head | None = None


def start_early(num_cpus: int | None = None) -> Head | None:
    """Start the head now, before the caller imports the engine (and Ray). None where it is too
    late for it (Ray already imported here: the driver would not read the head's token mode) or
    where KERNELEVOLVE_EARLY_RAY=0 says not to (a comparison of both starts, or a machine where
    the head cannot run)."""
    global _EARLY
    if _EARLY is not None:
        return _EARLY
    if "ray" in sys.modules or os.environ.get(SWITCH) == "0":
        return None
    prepare_environment()
    os.environ.setdefault(AUTH_MODE, "token")
    proc = subprocess.Popen([sys.executable, "-m", __name__, str(num_cpus or 0), str(os.getpid())],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    _EARLY = Head(proc, num_cpus)
    return _EARLY


def take(num_cpus: int | None) -> Head | None:
    """The head started early for a Ray of `num_cpus` (None: all cores), or None; a head started
    for another number of cores is ended (the sweep starts the Ray it asked for itself)."""
    global _EARLY
    head, _EARLY = _EARLY, None
    if head is not None and head.num_cpus != num_cpus:
        head.close()
        return None
    return head


def _hold(driver_pid: int, poll_s: float = 0.5) -> None:
    """Until stdin closes or the driver's process is gone (this head is then another's child)."""
    while os.getppid() == driver_pid:
        ready, _, _ = select.select([sys.stdin], [], [], poll_s)
        if ready and not sys.stdin.read(1):
            return


def _serve(num_cpus: int, driver_pid: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep's to handle; this Ray ends with stdin
    import ray

    from kernelevolve.tuner.execution.local_ray import init_private

    context = init_private(num_cpus or None)
    print(context.address_info["gcs_address"], context.address_info["node_id"], flush=True)
    _hold(driver_pid)
    ray.shutdown()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
