"""Optuna samplers that choose among a space's valid configs not yet tried (the "pool").

Optuna's samplers propose points of the raw product of the domains; most GEMM points break a
constraint, and the searcher then moves them to a valid neighbour (tuner.search.constrained).
A pool sampler knows the space (the registry builds every sampler with it) and proposes valid,
untried configs directly:

  UniformSampler ("uniform")  a valid untried config, uniformly at random: random search without
                              repeats over the valid space, and how recorded spaces too large to
                              record whole are sampled (experiments/record-spaces-h100.yaml)
  LearnedSampler ("learned")  the config a cost model ranks best (tuner.search.learned_sampler)

Both are `optuna.samplers.BaseSampler`s: Ray Tune's OptunaSearch drives them as it drives TPE.
What a subclass decides is `choose(pool, study, trial, rng, index)`; the pool, the exclusion of what was
tried or is running, and the seeding are here. When the pool is empty (or a subclass declines),
Optuna's RandomSampler (seeded) answers, and the searcher's projection takes it from there.
"""
from __future__ import annotations

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from kernelevolve.tuner.search.space import Space, config_key

POOL = 4000  # candidates offered to `choose` per proposal at most (a seeded sample of the pool)
RANDOM_POOL_DRAWS = 20_000  # raw points drawn where a space is too large to enumerate


class PoolSampler(BaseSampler):
    def __init__(self, space: Space, seed: int | None = None):
        self.space = space
        self.seed = seed
        self._random = RandomSampler(seed=seed)
        self._configs: list[dict] | None = None  # the space's valid configs, decoded (launch form)
        self._config_keys: list[str] = []
        self._key_index: dict[str, int] = {}  # config key -> its position in _configs
        self._trial_keys: dict[int, str] = {}  # finished trial number -> its config's key

    # -- Optuna's sampler interface ---------------------------------------------------------
    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        # The space this sampler was built for. A study that asks for a parameter with another
        # distribution gets the value only where that distribution contains it (Optuna checks),
        # else an independent random one.
        return self.space.distributions()

    def sample_relative(self, study, trial, search_space: dict) -> dict:
        if set(search_space) != set(self.space.distributions()):
            return {}
        rng = np.random.default_rng([self.seed or 0, trial.number])
        taken = self._taken(study, trial, search_space)
        configs = self.valid_configs()
        # the untried configs' positions, in the valid set's order (a mask: a GEMM space's 13-23k
        # keys tested one by one took ~2 ms of every proposal)
        untried = np.ones(len(configs), dtype=bool)
        untried[[self._key_index[k] for k in taken if k in self._key_index]] = False
        free = np.flatnonzero(untried)
        if not len(free):
            return {}
        if len(free) > POOL:
            free = free[rng.choice(len(free), POOL, replace=False)]
        chosen = self.choose([configs[i] for i in free], study, trial, rng, free)
        return {} if chosen is None else self.space.encode(chosen)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def _taken(self, study, trial, search_space) -> set[str]:
        """The configs of every other trial, finished or running (a finished one's key cached)."""
        taken = set()
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number or not set(t.params) >= set(search_space):
                continue
            key = self._trial_keys.get(t.number)
            if key is None:
                key = config_key(self.space.decode(t.params))
                if t.state.is_finished():
                    self._trial_keys[t.number] = key
            taken.add(key)
        return taken

    # -- for subclasses ---------------------------------------------------------------------
    def choose(self, pool: list[dict], study, trial, rng: np.random.Generator,
               index: np.ndarray) -> dict | None:
        """One of `pool` (None: decline). `index`: each pool config's position in valid_configs(),
        for what a subclass computes once per valid config."""
        raise NotImplementedError

    @staticmethod
    def completed(study) -> list[FrozenTrial]:
        return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None]

    def valid_configs(self) -> list[dict]:
        """The space's valid configs: enumerated once where the space is small enough, else those
        found in RANDOM_POOL_DRAWS seeded draws (the same ones every time for a seed)."""
        if self._configs is None:
            if self.space.enumerable():
                self._configs = self.space.valid_configs()
            else:
                draw = np.random.default_rng(self.seed or 0)
                found = {}
                for _ in range(RANDOM_POOL_DRAWS):
                    cfg = self.space.canonicalize({d.name: d.values()[draw.integers(len(d.values()))]
                                                   for d in self.space.domains})
                    if not self.space.violations(cfg):
                        found.setdefault(config_key(cfg), cfg)
                self._configs = list(found.values())
            self._config_keys = [config_key(c) for c in self._configs]
            self._key_index = {k: i for i, k in enumerate(self._config_keys)}
        return self._configs


class UniformSampler(PoolSampler):
    """A valid config not yet tried, uniformly at random."""

    def choose(self, pool, study, trial, rng, index):
        return pool[int(rng.integers(len(pool)))]
