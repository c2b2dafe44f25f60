"""Samplers by name, and the searcher that puts our space's constraints in front of Optuna.

Ray Tune's OptunaSearch drives Optuna's samplers. We wrap it (ConstrainedSearch) for three things
it does not do:
  * constraints: a proposal that breaks a constraint is told to Optuna at once as a penalty and
    recorded as an `invalid` candidate; it never takes a Ray trial, a compile or GPU time.
  * duplicates: a proposal equal to a finished candidate is told its known value and not run
    again (TPE proposes repeats often on small discrete spaces).
  * failures: a failed or crashed candidate reaches Optuna as a finite penalty, never as FAIL or
    NaN (with FAIL, TPE learns nothing and proposes the same crash again; NaN makes `tell` raise
    inside Ray and leaves the Optuna trial RUNNING forever).
"""
from __future__ import annotations

import math
import pickle

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tuner.records.journal import Journal
from tuner.search.samplers import OBJECTIVE, PENALTY, make_sampler
from tuner.search.space import Space, config_key


class ConstrainedSearch(Searcher):
    def __init__(self, space: Space, sampler: str, seed: int, journal_path: str,
                 study_key: str, max_rejects: int = 2000, start_points: list | None = None):
        super().__init__(metric=OBJECTIVE, mode="min")
        self.space = space
        self.study_key = study_key
        self.journal_path = journal_path
        self.max_rejects = max_rejects
        self.inner = OptunaSearch(
            space=space.distributions(), metric=OBJECTIVE, mode="min",
            sampler=make_sampler(sampler, space, seed),
            points_to_evaluate=[space.encode(p) for p in (start_points or [])] or None,
        )
        self.seen: dict[str, float | None] = {}  # config key -> objective (None while running)
        self.live: dict[str, tuple[str, str]] = {}  # Tune trial id -> (Optuna-side id, config key)
        self.proposals = 0

    def suggest(self, trial_id: str):
        for attempt in range(self.max_rejects):
            inner_id = f"{trial_id}#{attempt}"
            raw = self.inner.suggest(inner_id)
            self.proposals += 1
            cfg = self.space.decode(raw)
            key = config_key(cfg)
            if key in self.seen:
                known = self.seen[key]
                self.inner.on_trial_complete(inner_id, {OBJECTIVE: known} if known is not None else None)
                continue
            reasons = self.space.violations(cfg)
            if reasons:
                self.seen[key] = PENALTY
                self.inner.on_trial_complete(inner_id, {OBJECTIVE: PENALTY})
                Journal(self.journal_path).append({
                    "candidate_id": f"{trial_id}-r{attempt}", "study": self.study_key,
                    "config": cfg, "status": "invalid", "error": "; ".join(reasons),
                    OBJECTIVE: PENALTY,
                })
                continue
            self.seen[key] = None
            self.live[trial_id] = (inner_id, key)
            return cfg
        return Searcher.FINISHED  # nothing new and valid in max_rejects proposals: space exhausted

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id not in self.live:
            return
        inner_id, key = self.live.pop(trial_id)
        value = (result or {}).get(OBJECTIVE)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            value = PENALTY  # a trial that crashed still teaches the sampler to stay away
        self.seen[key] = value
        self.inner.on_trial_complete(inner_id, {OBJECTIVE: value})

    def replay(self, records: list[dict]) -> int:
        """Tell Optuna every journaled candidate, in journal order (a resumed sweep's history).

        Why not Ray Tune's own restore: Tune checkpoints the searcher periodically, so a driver
        killed between checkpoints comes back with a searcher that lacks the latest results. The
        journal is written (and fsynced) per candidate, so replaying it restores all of them.
        Returns how many candidates were replayed.
        """
        n = 0
        for rec in records:
            cfg = rec.get("config")
            key = config_key(cfg)
            if key in self.seen:
                continue
            value = rec.get(OBJECTIVE)
            if rec.get("status") != "ok" or not isinstance(value, (int, float)) or not math.isfinite(value):
                value = PENALTY
            self.seen[key] = value
            self.inner.add_evaluated_point(self.space.encode(cfg), value)
            n += 1
        return n

    def history(self) -> list[tuple[dict, str, float]]:
        """What Optuna has been told, in order: (params, state, value)."""
        return [(t.params, t.state.name, t.value) for t in self.inner._ot_study.trials]

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__.copy(), fh)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
