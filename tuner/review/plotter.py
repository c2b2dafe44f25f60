"""Where a sweep draws its studies' plots (tuner/review/plots.py): a few Ray actors started at the
sweep's first result, on the driver's node, each importing matplotlib and Optuna and drawing one
figure as it starts, so that a study's end finds one ready.

Why not a Ray task per study, as before: a task runs in whatever worker Ray has idle, and a study
that ended while the node was busy got a worker started for it, then paid its imports and
matplotlib's first figure (its font cache). On a 2 x H200 node (the 32-study suite, 2026-11-28)
the plots took 0.7-7.0 s of a study's end where drawing them warm takes ~0.4 s; the last three
studies' ends, which the sweep's last record waits for, held 0.7, 4.8 and 4.4 s of it. Why not
the driver: its main thread runs the searchers, and the writer thread must not wait for
matplotlib. Several actors, not one: studies end in bursts (a 4-GPU node ended 8 within 2 s).
"""
from __future__ import annotations

import itertools
import threading

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

PLOTTERS = 2  # actors a sweep starts (fewer for fewer studies): each a process holding matplotlib
CLOSED = "plots not drawn: the sweep was stopping and had closed its plotters"


@ray.remote(num_cpus=0, max_restarts=1, max_task_retries=1)
class PlotterActor:
    def __init__(self):
        from kernelevolve.tuner.review import plots

        self.plots = plots
        plots.warm_up()  # the imports, and the first figure's cost, paid now and not at a study's end

    def ready(self) -> bool:
        return True

    def draw(self, records, study, hardware, timing, dtype):
        return self.plots.render_safely(records, study, hardware, timing, dtype)


class Plotters:
    """The sweep's plotting actors, used in turn; `draw` blocks its caller (a study's end thread)
    until its plots are drawn. Started on the driver's node, where the records are."""

    def __init__(self, count: int):
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self.actors = [PlotterActor.options(scheduling_strategy=here).remote() for _ in range(max(1, count))]
        self._turn = itertools.cycle(range(len(self.actors)))
        self._lock = threading.Lock()

    def draw(self, records: list[dict], study: str, hardware: str, timing: str, dtype) -> tuple[dict, dict]:
        with self._lock:
            if not self.actors:
                # closed: a sweep that is stopping (Ctrl-C, SIGTERM, a timeout) closes its plotters
                # while a study's end may still be drawing; that study keeps its end and its
                # records, and says why its plots are missing (an H200 probe cut by `timeout`
                # logged "its end failed: IndexError" here before)
                return {}, {"error": CLOSED}
            actor = self.actors[next(self._turn)]
        try:
            return ray.get(actor.draw.remote(records, study, hardware, timing, dtype))
        except Exception as exc:  # a plotter lost: the study's end goes on, its plots noted missing
            return {}, {"error": f"plots failed to draw: {type(exc).__name__}: {exc}"}

    def close(self) -> None:
        with self._lock:
            actors, self.actors = self.actors, []
        for actor in actors:
            ray.kill(actor)
