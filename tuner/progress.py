"""Progress of a sweep as it runs: one line per candidate, a summary line per study.

The driver calls `study_started`, `candidate` and `study_finished`; anything with those three
methods can stand in (a richer terminal display, a test's recorder).
"""
from __future__ import annotations

import json
import time


class Progress:
    def __init__(self, log=print):
        self.log = log
        self.done: dict = {}
        self.budget: dict = {}
        self.t0: dict = {}

    def study_started(self, study, budget: int, already: int) -> None:
        s = study.experiment.search
        self.done[study.key], self.budget[study.key], self.t0[study.key] = already, budget, time.time()
        self.log(f"study {study.key}: {s.sampler} sampler, {budget} candidates, "
                 f"{s.concurrency} at a time, resources {study.target.ray_resources()}")

    def candidate(self, study, rec: dict) -> None:
        if rec["status"] != "invalid":
            self.done[study.key] += 1
        lat = f"{rec['latency_ms']:.4g} ms" if rec.get("latency_ms") else ""
        err = f"  ({str(rec.get('error', ''))[:120]})" if rec["status"] != "ok" else ""
        self.log(f"  [{self.done[study.key]}/{self.budget[study.key]}] {rec['status']:<16} {lat:>12}  "
                 f"{json.dumps(rec['config'])}{err}")

    def study_finished(self, study, summary: dict) -> None:
        best = summary.get("best") or {}
        self.log(f"study {study.key} finished in {time.time() - self.t0[study.key]:.0f} s: "
                 f"{summary['counts']}; best {best.get('latency_ms', float('nan')):.4g} ms")
