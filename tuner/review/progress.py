"""Progress of a sweep as it runs: plain lines (`Progress`) or a live terminal table (`RichProgress`).

The driver calls `study_started`, `candidate` and `study_finished`; anything with those three
methods can stand in (a test's recorder too). `Progress` prints one line per candidate and one per
study: what CI logs want. `RichProgress` redraws one row per study in place (candidates done of
the budget, best latency and speedup so far, failures by status, elapsed, ETA) and draws nothing
at all when its console is not a terminal, so a log file never fills with redraws.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars


class Progress:
    def __init__(self, log=print):
        self.log = log
        self.done: dict = {}
        self.budget: dict = {}
        self.t0: dict = {}

    def study_started(self, study, budget: int, already: int) -> None:
        s = study.experiment.search
        self.done[study.key], self.budget[study.key], self.t0[study.key] = already, budget, time.time()
        # whether the sampler's invalid proposals are moved to valid configs or refused: a space
        # past the listing limit (tuner/search/space.py) is searched by rejection, which a run's
        # log must show (one run's staged GEMM spaces went unlisted without a word)
        space = study.space
        how = "its valid configs listed" if space.enumerable() else \
            f"searched by rejection ({space.size():,} raw points, too many to list)"
        self.log(f"study {study.key}: {s.sampler} sampler, {budget} candidates, "
                 f"{s.concurrency} at a time, resources {study.target.ray_resources()}, {how}")

    def candidate(self, study, rec: dict) -> None:
        if rec["status"] != "invalid":
            self.done[study.key] += 1
        lat = f"{rec['latency_ms']:.4g} ms" if rec.get("latency_ms") else ""
        err = f"  ({str(rec.get('error', ''))[:120]})" if rec["status"] != "ok" else ""
        # once a second study has started, the studies' lines interleave: each names its study
        # (a five-study probe's log could not be read back by study without it)
        whose = f"{study.key} " if len(self.done) > 1 else ""
        self.log(f"  {whose}[{self.done[study.key]}/{self.budget[study.key]}] {rec['status']:<16} {lat:>12}  "
                 f"{json.dumps(rec['config'])}{err}")

    def study_finished(self, study, summary: dict) -> None:
        best = summary.get("best") or {}
        which = {"retime_interleaved": " (re-timed at the end of the study)",
                 "sweep": " (its sweep measurement)"}.get(best.get("measured_by"), "")
        end = summary.get("end_s") or {}
        names = (("retime", "re-timing"), ("profile", "profiling"), ("plots", "plots"),
                 ("writer_wait", "waiting for the writer"), ("parent_run", "its parent run"))
        parts = [f"{label} {end[k]:.1f} s" for k, label in names if end.get(k, 0) >= 0.05]
        self.log(f"study {study.key} finished in {time.time() - self.t0[study.key]:.0f} s: "
                 f"{summary['counts']}; best {best.get('latency_ms', float('nan')):.4g} ms{which}"
                 + (f"; its end: {', '.join(parts)}" if parts else ""))


class RichProgress:
    """One live row per study. Use as a context manager (or call `close`) to stop the display."""

    def __init__(self, console=None):
        self.console = console or Console()
        self.enabled = self.console.is_terminal
        self.bars = Bars(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                         TextColumn("best {task.fields[best]}"), TextColumn("{task.fields[speedup]}"),
                         TextColumn("[red]{task.fields[failures]}"), TimeElapsedColumn(),
                         TextColumn("ETA {task.fields[eta]}"),
                         console=self.console, disable=not self.enabled, transient=False)
        self.tasks: dict = {}  # study key -> rich task id
        self.stats: dict = {}  # study key -> counts, best so far, failures, pace
        self.started = False

    def log(self, message: str) -> None:
        """Driver messages (sweep started, MLflow away, ...): printed above the live rows."""
        self.console.print(message, markup=False, highlight=False)

    def _fields(self, key: str) -> dict:
        st = self.stats[key]
        best = f"{st['best_ms']:.4g} ms" if st["best_ms"] < math.inf else "-"
        if st["timing"] == "interpreter" and st["best_ms"] < math.inf:
            best += " (interpreter)"
        speedup = f"{st['speedup']:.3g}x vs torch" if st["speedup"] else ""
        failures = " ".join(f"{k}={v}" for k, v in sorted(st["failures"].items()))
        return {"best": best, "speedup": speedup, "failures": failures, "eta": self._eta(st)}

    @staticmethod
    def _eta(st: dict) -> str:
        """Time left at this run's pace (candidates journaled before a resume do not count)."""
        if st["finished"]:
            return "-"
        ran, left = st["done"] - st["already"], st["budget"] - st["done"]
        if ran <= 0:
            return "?"
        secs = max(0, left) * (time.time() - st["t0"]) / ran
        return f"{int(secs // 60)}:{int(secs % 60):02d}"

    def study_started(self, study, budget: int, already: int) -> None:
        if self.enabled and not self.started:
            self.bars.start()
            self.started = True
        timing = "interpreter" if study.target.profile.interpreter else "gpu"
        self.stats[study.key] = {"done": already, "already": already, "budget": budget,
                                 "t0": time.time(), "finished": False, "best_ms": math.inf,
                                 "speedup": None, "failures": Counter(), "timing": timing}
        self.tasks[study.key] = self.bars.add_task(escape(study.key), total=budget,
                                                   completed=already, **self._fields(study.key))

    def candidate(self, study, rec: dict) -> None:
        st = self.stats[study.key]
        if rec["status"] != "invalid":  # constraint rejects cost nothing and do not count
            st["done"] += 1
        if rec["status"] == "ok" and rec.get("latency_ms") and rec["latency_ms"] < st["best_ms"]:
            st["best_ms"], st["speedup"] = rec["latency_ms"], rec.get("speedup")
        elif rec["status"] != "ok":
            st["failures"][rec["status"]] += 1
        self.bars.update(self.tasks[study.key], completed=st["done"], **self._fields(study.key))

    def study_finished(self, study, summary: dict) -> None:
        st, task = self.stats[study.key], self.tasks[study.key]
        best = summary.get("best") or {}
        st["finished"] = True
        # The counts are the journal's: they include constraint rejects the sampler never ran.
        st["failures"] = Counter({k: v for k, v in summary.get("counts", {}).items() if k != "ok"})
        if best.get("latency_ms"):  # the re-timed winner replaces the sweep's own figure
            st["best_ms"], st["speedup"] = best["latency_ms"], best.get("speedup")
        self.bars.update(task, description=f"[green]done[/] {escape(study.key)}",
                         **self._fields(study.key))
        self.bars.stop_task(task)

    def close(self) -> None:
        if self.started:
            self.bars.stop()
            self.started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
