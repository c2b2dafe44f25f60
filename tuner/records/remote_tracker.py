"""The sweep's MLflow writes, in processes of their own: Ray actors on the driver's node.

MLflow's SQLAlchemy store spends ~15-30 ms of Python per candidate child run (create, log a
batch, terminate: about 30 ORM statements; profiled on the SQLite store). In the driver's writer
thread that time held the GIL the trial loop needs: at 20 candidates a second MLflow alone took
a third of the driver, and a sweep on more GPUs could not go faster than the driver writes. The
actors do the same writes with the same Tracker (tuner.records.tracking); the driver's writer
threads only wait for their replies (without the GIL). On the driver's node, so a SQLite path
means the same file.

Why several: one writer wrote ~25 child runs a second on the 4-GPU node, where the candidates
came at 40 a second, and every study then ended ~24 s after its last candidate. Each study's
writes go to one actor (recorder.WRITERS of them, chosen by the study: recorder.writer_of), in order, so a study's parent run,
its children and its end are written as before; different studies are written at once (a SQLite
store waits for the other writers' short transactions: tuner.records.sqlite_store).
"""
from __future__ import annotations

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kernelevolve.tuner.records.recorder import WRITERS, writer_of
from kernelevolve.tuner.records.tracking import Tracker, study_run_fields


@ray.remote(num_cpus=0, max_restarts=3, max_task_retries=0)
class TrackerActor:
    def __init__(self, uri: str, experiment: str):
        self.tracker = Tracker(uri, experiment)

    def call(self, method: str, *args, **kwargs):
        return getattr(self.tracker, method)(*args, **kwargs)


class RemoteTracker:
    """Tracker's writing methods, run by TrackerActors. `local` is the store as the sweep opened
    it first (a Tracker, or tuner.records.store_opening's OpenedStore: the store reachable and the
    experiment created): the URI and the commit come from it, every write of the sweep goes
    through the actors, each study's through one of them."""

    def __init__(self, local, experiment: str, writers: int = WRITERS):
        self.uri, self.commit = local.uri, local.commit
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.actors = [TrackerActor.options(scheduling_strategy=here).remote(local.uri, experiment)
                       for _ in range(max(1, writers))]
        self.writer_of_parent: dict[str, int] = {}  # parent run id -> its study's writer

    def _call(self, writer: int, method: str, *args, **kwargs):
        return ray.get(self.actors[writer].call.remote(method, *args, **kwargs))

    def _of_parent(self, parent_id: str) -> int:
        # a parent opened by an earlier run of the sweep (--resume): chosen by its id, as stably
        return self.writer_of_parent.get(parent_id, writer_of(parent_id, len(self.actors)))

    def start_study(self, study, sweep_id: str, artifacts: dict[str, str], device: dict,
                    prior: list | None = None) -> str:
        """Tracker.start_study's parent run; its fields are computed here, where the study lives
        (a study holds kernels and spaces that need not pickle: layer_norm's holds torch.ops)."""
        tags, params = study_run_fields(study, sweep_id, device, self.commit, prior)
        writer = writer_of(study.key, len(self.actors))
        parent = self._call(writer, "open_study", tags, params, artifacts)
        self.writer_of_parent[parent] = writer
        return parent

    def finish_study(self, parent_id: str, *args, **kwargs) -> None:
        return self._call(self._of_parent(parent_id), "finish_study", parent_id, *args, **kwargs)

    def sync(self, parent_id: str, records: list[dict], study_tags: dict) -> int:
        return self._call(self._of_parent(parent_id), "sync", parent_id, records, study_tags)

    def with_client(self, fn, *args):
        return self._call(0, "with_client", fn, *args)
