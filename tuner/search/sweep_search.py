"""The sweep's one searcher: every study's own Optuna searcher behind one Ray Tune Searcher.

A sweep runs all its (kernel, problem, target) studies in one Tuner, so the candidates of every
study are in flight together and every GPU of every target has work. Each suggestion goes to the
first study, in file order, that has candidates left and is under its concurrency cap (its
`search.concurrency`): as many studies run at once as the cluster has slots for, and they end one
after another, so a finished study's re-timing overlaps the others' candidates instead of every
study's re-timing waiting at the end. The trial's config names its study (STUDY_PARAM), and its
result goes back to that study's searcher. Studies stay independent: each has its own sampler, seed and history,
exactly as if it were swept alone.

A trial carries up to `batch[study]` candidates of its study (tuner.search.protocol.batch_size):
the study's concurrency cap counts candidates, not trials, so batching changes how many proposals
a study has out without feedback only through the cap, as before.
"""
from __future__ import annotations

import time
from collections import Counter

from ray.tune.search import Searcher

from kernelevolve.tuner.search.constrained import ConstrainedSearch
from kernelevolve.tuner.search.protocol import (BATCH_PARAM, OBJECTIVE, STUDY_PARAM, candidate_id, encode_batch,
                                                replies_of)


# Tune's trial loop, given None while no trial is out, sleeps a whole second before it asks again
# (ray.tune's TuneController._update_trial_queue, blocking); at a sweep's start every study may
# still be waiting for its valid configs, the first of which arrive well within that second
# (H200 sweeps: the Tuner blocked 2 s in those sleeps before its first trial). So with nothing in
# flight the searcher waits for a set itself, looking every SET_POLL_S, for SET_WAIT_S at most;
# with trials out it never waits (their results would wait behind it).
SET_POLL_S = 0.01
SET_WAIT_S = 30.0


class SweepSearch(Searcher):
    def __init__(self, studies: dict[str, ConstrainedSearch], budgets: dict[str, int],
                 caps: dict[str, int], batch: dict[str, int] | None = None, first_out=None,
                 set_wait_s: float = SET_WAIT_S):
        """`first_out(study key)`: called as a study's first trial is handed out. `set_wait_s`:
        how long a suggestion with nothing in flight waits for a study's valid configs."""
        super().__init__(metric=OBJECTIVE, mode="min")
        self.studies = studies
        self.left = dict(budgets)  # candidates each study may still hand out
        self.budgets = dict(budgets)
        self.caps = caps
        self.batch = {k: max(1, (batch or {}).get(k, 1)) for k in studies}
        self.in_flight = Counter()  # candidates, not trials
        self.live: dict[str, tuple[str, list[str]]] = {}  # trial id -> (study key, its candidate ids)
        self.first_out, self.started = first_out, set()
        self.set_wait_s = set_wait_s

    def __getstate__(self):
        # Tune pickles its searcher with the experiment's state: the hook (the sweep's, holding
        # locks and lanes) stays behind; it only starts lanes' work early
        return dict(self.__dict__, first_out=None)

    def done(self, key: str) -> bool:
        """A study whose every candidate has been handed out and has finished."""
        return (self.left[key] == 0 or self.studies[key].exhausted) and not self.in_flight[key]

    def suggest(self, trial_id: str):
        open_ = [k for k in self.studies if self.left[k] > 0 and not self.studies[k].exhausted]
        if not open_:
            return Searcher.FINISHED
        # a study whose valid configs are still being enumerated hands out its listed configs
        # (the vendor's, its start points) and then waits for them (a second or so)
        ready = [k for k in open_ if self.in_flight[k] < self.caps[k] and self.studies[k].can_suggest]
        if not ready and not sum(self.in_flight.values()):
            ready = self._wait_for_a_set(open_)
        for key in ready:
            room = min(self.batch[key], self.caps[key] - self.in_flight[key], self.left[key])
            members = []
            for i in range(room):
                if not self.studies[key].can_suggest:
                    break  # its listed configs are out: the rest waits for its valid set
                cid = candidate_id(trial_id, i)
                cfg = self.studies[key].suggest(cid)
                if cfg is None or cfg == Searcher.FINISHED:
                    break  # none now, or exhausted: its searcher says so from now on
                members.append({"candidate_id": cid, "config": cfg})
            if not members:
                continue
            self.left[key] -= len(members)
            self.in_flight[key] += len(members)
            self.live[trial_id] = (key, [m["candidate_id"] for m in members])
            if key not in self.started:
                self.started.add(key)
                if self.first_out is not None:
                    self.first_out(key)
            return {STUDY_PARAM: key, BATCH_PARAM: encode_batch(members)}
        if all(self.left[k] == 0 or self.studies[k].exhausted for k in self.studies):
            return Searcher.FINISHED
        return None  # every open study is at its cap: ask again when a candidate ends

    def _wait_for_a_set(self, open_: list[str]) -> list[str]:
        """The open studies ready once one's valid configs arrive (SET_WAIT_S at most)."""
        end = time.monotonic() + getattr(self, "set_wait_s", SET_WAIT_S)  # a searcher pickled before it
        while True:
            ready = [k for k in open_ if self.studies[k].can_suggest]
            if ready or time.monotonic() >= end:
                return ready
            time.sleep(SET_POLL_S)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        key, ids = self.live.pop(trial_id, (None, []))
        if key is None:
            return
        for cid, reply in zip(ids, replies_of(result, len(ids))):
            self.in_flight[key] -= 1
            self.studies[key].on_trial_complete(cid, reply, error)
