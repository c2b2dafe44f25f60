"""The searcher of one study: Optuna (through Ray Tune's OptunaSearch), kept to the space's valid configs.

Ray Tune's OptunaSearch drives Optuna's samplers. We wrap it (ConstrainedSearch) for what it does
not do:
  * valid proposals: where the space's valid configs can be enumerated (up to ENUMERATE_MAX raw
    points), a proposal that breaks a constraint, or repeats a config already evaluated, is moved
    to the nearest valid config not yet evaluated (distance over the sampler's own encoding:
    ordered domains by position, choices by equality), and Optuna is told that config's result
    for its proposal. No proposal is wasted, and the share of wasted proposals cannot grow with
    concurrency. The space is exhausted when every valid config was evaluated.
    Larger spaces (a conv space has millions of points) are searched by rejection: a proposal
    that breaks a constraint is told a penalty at once and counted by rule; it costs no trial,
    no compile and is never a candidate record.
  * failures: a failed or crashed candidate reaches Optuna as a finite penalty, never as FAIL or
    NaN (with FAIL, TPE learns nothing and proposes the same crash again; NaN makes `tell` raise
    inside Ray and leaves the Optuna trial RUNNING forever).
  * ordered results (`window`, the study's concurrency): proposal n is made knowing exactly the
    results of proposals 0..n-window, told in proposal order, whatever order they ended in and
    however many ran at once; a result that ends early waits, and proposal n waits for the oldest
    of them. Told as they arrive (window None), the same seed proposed other candidates in every
    run (with 8 in flight, the order results come back in changes what TPE asks next): two runs
    of one file, or a sweep and its one-at-a-time reference, were two different searches whose
    best kernels landed up to 22% apart on the H100. Ordered, they are one search.
"""
from __future__ import annotations

import math
import pickle
import random
from collections import Counter

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from kernelevolve.tuner.search.samplers import OBJECTIVE, PENALTY, NoProposals, make_sampler
from kernelevolve.tuner.search.space import Choice, Space, config_key

# In a space searched by rejection, a suggestion that met this many broken proposals in a row is
# drawn at random among the valid configs instead (seeded; its result is still told to the
# sampler): each TPE ask costs milliseconds and grows with the study's history, while a GEMM with
# K = 13 has 0.8% valid points (about 120 asks per candidate, and minutes for a study).
SPARSE_ASKS = 32
RANDOM_DRAWS = 50_000  # uniform draws checked for a valid, new config (~1.5 s at most)


def rule_name(rule) -> str:
    """A constraint's name for the rejection counts: its docstring's first line, else its name."""
    doc = (getattr(rule, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else getattr(rule, "__name__", repr(rule))


class ValidSet:
    """The space's valid configs as vectors of the sampler's encoding, for nearest-valid moves."""

    def __init__(self, space: Space, configs: list[dict] | None = None, vectors: np.ndarray | None = None,
                 keys: dict[str, int] | None = None):
        """`configs`, `vectors`, `keys`: the set, its encoding and its keys made elsewhere
        (tuner.search.valid_sets: a process of the sweep's), else made here."""
        self.configs = space.valid_configs() if configs is None else configs
        self.keys = self.keys_of(self.configs) if keys is None else keys
        self.space = space
        self.vectors = self.vectors_of(space, self.configs) if vectors is None else vectors
        self.free = np.ones(len(self.configs), dtype=bool)

    @staticmethod
    def keys_of(configs: list[dict]) -> dict[str, int]:
        """Each config's key (space.config_key) -> its position."""
        return {config_key(c): i for i, c in enumerate(configs)}

    @classmethod
    def vectors_of(cls, space: Space, configs: list[dict]) -> np.ndarray:
        """The sampler's encoding of each config (one row each)."""
        return np.array([cls.encode(space, c) for c in configs], dtype=np.float32).reshape(len(configs), -1)

    def vector(self, cfg: dict) -> list[float]:
        return self.encode(self.space, cfg)

    @staticmethod
    def encode(space: Space, cfg: dict) -> list[float]:
        out = []
        for d in space.searched:
            values = d.values()
            if isinstance(d, Choice):  # unordered: one-hot, half a unit each, so a change costs 1
                out += [0.5 if cfg[d.name] == v else 0.0 for v in values]
            else:  # ordered: position in the domain, 0..1
                out.append(values.index(cfg[d.name]) / max(1, len(values) - 1))
        return out

    def take(self, key: str) -> None:
        i = self.keys.get(key)
        if i is not None:
            self.free[i] = False

    def nearest_free(self, cfg: dict) -> dict | None:
        if not self.free.any():
            return None
        dist = np.abs(self.vectors - np.array(self.vector(cfg), dtype=np.float32)).sum(axis=1)
        dist[~self.free] = np.inf
        return self.configs[int(np.argmin(dist))]


OUTSIDE = "outside"  # the live marker of a config evaluated outside the space (no sampler trial)


class ConstrainedSearch(Searcher):
    def __init__(self, space: Space, sampler, seed: int, study_key: str,
                 max_rejects: int = 2000, start_points: list | None = None, valid="enumerate",
                 outside: list | None = None, prior: list | None = None, problem: dict | None = None,
                 window: int | None = None):
        """`sampler`: a registered name (tuner.search.samplers), or an Optuna sampler built by the
        caller (a replay hands over a learned sampler with a prior fit on other recorded spaces).
        `prior`, `problem`: the recorded spaces a registered sampler that learns ("learned",
        "auto") is fit on first (tuner.search.prior), and the study's problem.
        `outside`: configs that are no point of the space (the vendor library's GEMM,
        kernels/gemm_vendor.py), each evaluated once, first, and never told to the sampler: a
        whole other implementation is no evidence about tile sizes, and as a searched dimension
        it would cost proposals every study.
        `window`: results are told in proposal order, proposal n knowing those of 0..n-window
        (the module's docstring says why); None: told as they arrive."""
        super().__init__(metric=OBJECTIVE, mode="min")
        self.space = space
        self.study_key = study_key
        self.max_rejects = max_rejects
        if isinstance(sampler, str):
            sampler = make_sampler(sampler, space, seed, prior, problem)
        # sampler "none": the start points are the study's only candidates, each evaluated as
        # listed; one that comes back as a repeat (a resumed study enqueues them all again) is
        # passed over, never moved to another config or replaced by one drawn at random
        self.listed_only = isinstance(sampler, NoProposals)
        self.inner = OptunaSearch(
            space=space.distributions(), metric=OBJECTIVE, mode="min",
            sampler=sampler,
            # a start point written before a switch existed means it off (Space.defaults)
            points_to_evaluate=[space.encode(space.complete(p)) for p in (start_points or [])] or None,
        )
        if valid == "enumerate":  # the space's valid configs, enumerated here where few enough
            valid = ValidSet(space) if space.enumerable() else None
        self.valid = valid
        # A ValidSet enumerated elsewhere (the sweep enumerates every study's at once, while the
        # first candidates already run by rejection), handed over by another thread and adopted
        # at the next suggestion, in the thread that suggests.
        self.arriving: ValidSet | None = None
        # True while that set is being enumerated: the sweep's searcher then asks this study for
        # nothing but its listed configs (`listed_left`: they need no set), since proposals by
        # rejection meanwhile cost the driver ~0.1 s each and slow the enumeration they wait for
        # (one GIL)
        self.awaiting = False
        self.listed = len(start_points or [])  # the inner searcher hands them out first
        self.seen: dict[str, float | None] = {}  # config key -> objective (None while running)
        self.live: dict[str, tuple[str, str]] = {}  # Tune trial id -> (Optuna-side id, config key)
        self.rng = random.Random(seed)
        self.drawn: dict[str, dict] = {}  # Tune trial id -> config drawn at random (not asked)
        # configs the counters' rules proposed (tuner.search.steering), handed over by the thread
        # that profiled, evaluated before the sampler is asked again
        self.steered: list[dict] = []
        self.outside = [dict(c) for c in (outside or [])]
        self.outside_keys = {config_key(c) for c in self.outside}
        self.counts = Counter()  # proposals, rejected, duplicates, projected, drawn, steered
        self.rejected_by = Counter()  # constraint -> proposals it rejected
        self.exhausted = False
        self.window = window
        self.order: list[str] = []  # trial ids in proposal order (ordered: told in this order)
        self.held: dict[str, float] = {}  # trial id -> its result, ended but not told yet
        self.told = 0  # how many of `order` were told

    @property
    def listed_left(self) -> bool:
        """Whether its next suggestion is a listed config (an outside one, or a start point the
        inner searcher has not handed out yet): one that needs no valid set and no sampler."""
        return bool(self.outside) or self.counts["proposals"] < self.listed

    @property
    def can_suggest(self) -> bool:
        """Whether the sweep's searcher may ask it now: its valid configs are in, or it still has
        listed configs (which need none) to hand out."""
        return not self.awaiting or self.listed_left

    def _violated(self, cfg: dict) -> list:
        return [c for c in self.space.constraints if c(cfg)]

    def _accept(self, trial_id: str, inner_id: str | None, cfg: dict) -> dict:
        key = config_key(cfg)
        if inner_id is None:
            self.drawn[trial_id] = cfg
        self.seen[key] = None
        if self.valid is not None:
            self.valid.take(key)
        self.live[trial_id] = (inner_id, key)
        return cfg

    def adopt(self, valid: ValidSet) -> None:
        for key in self.seen:
            valid.take(key)
        self.valid = valid

    def _draw_valid(self) -> dict | None:
        """A valid config not yet evaluated, drawn uniformly at random (None if none is found)."""
        domains = [(d.name, d.values()) for d in self.space.domains]
        for _ in range(RANDOM_DRAWS):
            cfg = self.space.canonicalize({k: self.rng.choice(v) for k, v in domains})
            if config_key(cfg) not in self.seen and not self.space.violations(cfg):
                return cfg
        return None

    def steer(self, configs: list[dict]) -> None:
        """Evaluate these configs next (from another thread: list.append is atomic)."""
        for cfg in configs:
            self.steered.append(cfg)

    def _next_steered(self) -> dict | None:
        while self.steered:
            cfg = self.space.canonicalize(self.space.complete(self.steered.pop(0)))
            if config_key(cfg) not in self.seen and not self.space.violations(cfg):
                return cfg
        return None

    def suggest(self, trial_id: str):
        if self.exhausted:
            return Searcher.FINISHED
        if self.window is not None:  # proposal n knows exactly the results of 0..n-window
            due = len(self.order) - self.window + 1
            if self._tell_through(due) < due:
                return None  # the oldest of them has not ended: ask again when one does
        cfg = self._suggest(trial_id)
        if isinstance(cfg, dict):
            self.order.append(trial_id)
        return cfg

    def _suggest(self, trial_id: str):
        while self.outside:  # before the sampler's first proposal
            cfg = self.outside.pop(0)
            key = config_key(cfg)
            if key not in self.seen:
                self.counts["outside"] += 1
                self.seen[key] = None
                self.live[trial_id] = (OUTSIDE, key)
                return cfg
        steered = self._next_steered()
        if steered is not None:  # told to the sampler as an evaluated point, as a drawn config is
            self.counts["steered"] += 1
            return self._accept(trial_id, None, steered)
        for attempt in range(self.max_rejects):
            if self.arriving is not None:  # the enumeration ended: project from now on
                self.adopt(self.arriving)
                self.arriving = None
            if self.valid is None and attempt >= SPARSE_ASKS and not self.listed_only:
                drawn = self._draw_valid()
                if drawn is not None:
                    self.counts["drawn"] += 1
                    return self._accept(trial_id, None, drawn)
            inner_id = f"{trial_id}#{attempt}"
            raw = self.inner.suggest(inner_id)
            if raw is None or raw == Searcher.FINISHED:
                return raw
            self.counts["proposals"] += 1
            cfg = self.space.decode(raw)
            key = config_key(cfg)
            repeat = key in self.seen
            broken = [] if repeat else self._violated(cfg)
            if not repeat and not broken:
                return self._accept(trial_id, inner_id, cfg)
            if self.valid is not None and not self.listed_only:  # to the nearest valid config not yet evaluated
                near = self.valid.nearest_free(cfg)
                if near is None:
                    self.exhausted = True
                    self.inner.on_trial_complete(inner_id, {OBJECTIVE: self.seen.get(key) or PENALTY})
                    return Searcher.FINISHED
                self.counts["projected"] += 1
                return self._accept(trial_id, inner_id, near)
            if repeat:
                self.counts["duplicates"] += 1
                known = self.seen[key]
                self.inner.on_trial_complete(inner_id, {OBJECTIVE: known} if known is not None else None)
                continue
            self.counts["rejected"] += 1
            self.rejected_by.update(rule_name(c) for c in broken)
            self.seen[key] = PENALTY
            self.inner.on_trial_complete(inner_id, {OBJECTIVE: PENALTY})
        self.exhausted = True  # nothing new and valid in max_rejects proposals
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id not in self.live:
            return
        value = (result or {}).get(OBJECTIVE)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            value = PENALTY  # a trial that crashed still teaches the sampler to stay away
        if self.window is None:
            self._tell(trial_id, value)
        else:  # told in proposal order, when a later proposal is due to know it
            self.held[trial_id] = value

    def _tell_through(self, count: int) -> int:
        """Tell the held results of the first `count` proposals, in order, up to the first that
        has not ended. Returns how many of the proposals have been told."""
        while self.told < min(count, len(self.order)) and self.order[self.told] in self.held:
            trial_id = self.order[self.told]
            self._tell(trial_id, self.held.pop(trial_id))
            self.told += 1
        return self.told

    def _tell(self, trial_id: str, value: float) -> None:
        inner_id, key = self.live.pop(trial_id)
        self.seen[key] = value
        if inner_id == OUTSIDE:  # not a point of the space: the sampler never hears of it
            return
        if inner_id is None:  # drawn at random, not asked of the sampler: told as a finished point
            self.inner.add_evaluated_point(self.space.encode(self.drawn.pop(trial_id)), value)
        else:
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
            if isinstance(cfg, dict) and config_key(cfg) not in self.outside_keys:
                cfg = self.space.complete(cfg)  # journaled before a switch existed: it was off
            key = config_key(cfg)
            if key in self.seen:
                continue
            value = rec.get(OBJECTIVE)
            if rec.get("status") != "ok" or not isinstance(value, (int, float)) or not math.isfinite(value):
                value = PENALTY
            self.seen[key] = value
            if key in self.outside_keys:  # evaluated already; never a sampler's point
                continue
            if not isinstance(cfg, dict) or not {d.name for d in self.space.searched} <= set(cfg):
                # no point of the space: a config outside it that this study no longer evaluates
                # (a vendor path journaled by another version of the kernel); kept, never told
                continue
            if self.valid is not None:
                self.valid.take(key)
            self.inner.add_evaluated_point(self.space.encode(cfg), value)
            n += 1
        return n

    def proposals(self) -> dict:
        """What the sampler proposed and what became of it (the parent run carries it)."""
        return {"proposals": self.counts["proposals"], "rejected": self.counts["rejected"],
                "duplicates": self.counts["duplicates"], "projected": self.counts["projected"],
                "drawn": self.counts["drawn"], "steered": self.counts["steered"],
                "outside": self.counts["outside"],
                "rejected_by": dict(self.rejected_by),
                "valid_configs": len(self.valid.configs) if self.valid is not None else None}

    def history(self) -> list[tuple[dict, str, float]]:
        """What Optuna has been told, in order: (params, state, value); at a study's end, every
        result that ended (ordered: in proposal order, up to the first that did not)."""
        self._tell_through(len(self.order))
        return [(t.params, t.state.name, t.value) for t in self.inner._ot_study.trials]

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__.copy(), fh)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
