"""The sweep's one searcher: every study's own Optuna searcher behind one Ray Tune Searcher.

A sweep runs all its (kernel, problem, target) studies in one Tuner, so the candidates of every
study are in flight together and every GPU of every target has work. Each suggestion goes to the
first study, in file order, that has candidates left and is under its concurrency cap (its
`search.concurrency`): as many studies run at once as the cluster has slots for, and they end one
after another, so a finished study's re-timing overlaps the others' candidates instead of every
study's re-timing waiting at the end. The trial's config names its study (STUDY_PARAM), and its
result goes back to that study's searcher. Studies stay independent: each has its own sampler, seed and history,
exactly as if it were swept alone.
"""
from __future__ import annotations

from collections import Counter

from ray.tune.search import Searcher

from kernelevolve.tuner.search.constrained import ConstrainedSearch
from kernelevolve.tuner.search.protocol import OBJECTIVE, STUDY_PARAM


class SweepSearch(Searcher):
    def __init__(self, studies: dict[str, ConstrainedSearch], budgets: dict[str, int],
                 caps: dict[str, int]):
        super().__init__(metric=OBJECTIVE, mode="min")
        self.studies = studies
        self.left = dict(budgets)  # candidates each study may still hand out
        self.budgets = dict(budgets)
        self.caps = caps
        self.in_flight = Counter()
        self.live: dict[str, str] = {}  # trial id -> study key

    def done(self, key: str) -> bool:
        """A study whose every candidate has been handed out and has finished."""
        return (self.left[key] == 0 or self.studies[key].exhausted) and not self.in_flight[key]

    def suggest(self, trial_id: str):
        open_ = [k for k in self.studies if self.left[k] > 0 and not self.studies[k].exhausted]
        if not open_:
            return Searcher.FINISHED
        ready = [k for k in open_ if self.in_flight[k] < self.caps[k]]
        for key in ready:
            cfg = self.studies[key].suggest(trial_id)
            if cfg == Searcher.FINISHED:
                continue  # exhausted: its searcher says so from now on
            if cfg is None:
                continue
            self.left[key] -= 1
            self.in_flight[key] += 1
            self.live[trial_id] = key
            return {**cfg, STUDY_PARAM: key}
        if all(self.left[k] == 0 or self.studies[k].exhausted for k in self.studies):
            return Searcher.FINISHED
        return None  # every open study is at its cap: ask again when a candidate ends

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        key = self.live.pop(trial_id, None)
        if key is None:
            return
        self.in_flight[key] -= 1
        self.studies[key].on_trial_complete(trial_id, result, error)
