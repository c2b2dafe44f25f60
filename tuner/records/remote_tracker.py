"""The sweep's MLflow writes, in a process of their own: a Ray actor on the driver's node.

MLflow's SQLAlchemy store spends ~15-30 ms of Python per candidate child run (create, log a
batch, terminate: about 30 ORM statements; profiled on the SQLite store). In the driver's writer
thread that time held the GIL the trial loop needs: at 20 candidates a second MLflow alone took
a third of the driver, and a sweep on more GPUs could not go faster than the driver writes. The
actor does the same writes with the same Tracker (tuner.records.tracking); the driver's writer
thread only waits for its replies (without the GIL). One actor, so the store still has one
writer; on the driver's node, so a SQLite path means the same file.
"""
from __future__ import annotations

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kernelevolve.tuner.records.tracking import Tracker, study_run_fields


@ray.remote(num_cpus=0, max_restarts=3, max_task_retries=0)
class TrackerActor:
    def __init__(self, uri: str, experiment: str):
        self.tracker = Tracker(uri, experiment)

    def call(self, method: str, *args, **kwargs):
        return getattr(self.tracker, method)(*args, **kwargs)


class RemoteTracker:
    """Tracker's writing methods, run by a TrackerActor. `local` is the driver's own Tracker,
    opened first (it checks the store is reachable and creates the experiment): the URI and the
    commit come from it, every write of the sweep goes through the actor."""

    def __init__(self, local: Tracker, experiment: str):
        self.uri, self.commit = local.uri, local.commit
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.actor = TrackerActor.options(scheduling_strategy=here).remote(local.uri, experiment)

    def _call(self, method: str, *args, **kwargs):
        return ray.get(self.actor.call.remote(method, *args, **kwargs))

    def start_study(self, study, sweep_id: str, artifacts: dict[str, str], device: dict,
                    prior: list | None = None) -> str:
        """Tracker.start_study's parent run; its fields are computed here, where the study lives
        (a study holds kernels and spaces that need not pickle: layer_norm's holds torch.ops)."""
        tags, params = study_run_fields(study, sweep_id, device, self.commit, prior)
        return self._call("open_study", tags, params, artifacts)

    def finish_study(self, *args, **kwargs) -> None:
        return self._call("finish_study", *args, **kwargs)

    def sync(self, parent_id: str, records: list[dict], study_tags: dict) -> int:
        return self._call("sync", parent_id, records, study_tags)

    def with_client(self, fn, *args):
        return self._call("with_client", fn, *args)
