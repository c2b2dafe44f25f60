"""The learned sampler: an Optuna sampler that ranks a study's untried valid configs with a cost
model (tuner.search.cost_model) and proposes the most promising, before anything is compiled.

It is an `optuna.samplers.BaseSampler`, registered as "learned" (tuner.search.samplers), so Ray
Tune's OptunaSearch drives it as it drives TPE. Each proposal:
  1. candidates: the space's valid configs not yet proposed (enumerated once, where the space is
     small enough; else valid configs drawn at random), a seeded sample of at most POOL of them;
  2. the model is refit on every completed trial (its value is the log10 latency; a failure's
     penalty is learned as "slower than the slowest correct", cost_model.targets);
  3. the candidate with the lowest optimistic prediction (mean - KAPPA x spread) is proposed.
Before STARTUP trials have completed, with no prior, it proposes at random (Optuna's
RandomSampler, seeded): a model of two points ranks nothing.

A prior: candidates of other recorded spaces of the same kernel (other shapes, other GPUs). A
model fit on them ranks from the first proposal; it is blended with the study's own model, whose
weight grows with the study's own results (n / (n + PRIOR_HALF)).
"""
from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from tuner.search.cost_model import CostModel, Featurizer, targets
from tuner.search.protocol import PENALTY
from tuner.search.space import Space, config_key

STARTUP = 4  # completed trials before the model proposes (without a prior)
POOL = 4000  # candidates scored per proposal at most
KAPPA = 0.5  # optimism: how much the ensemble's spread counts
PRIOR_HALF = 10  # own results at which the study's model and the prior weigh the same
ENUMERATE_MAX = 250_000  # raw points enumerated for the candidates (as the searcher: constrained.py)
RANDOM_POOL_DRAWS = 20_000  # raw points drawn where a space is too large to enumerate


class LearnedSampler(BaseSampler):
    def __init__(self, space: Space, seed: int | None = None, *, prior: list | None = None,
                 problem: dict | None = None):
        """`prior`: RecordedSpace objects of the same kernel (tuner.records.recorded_space);
        `problem`: this study's problem (its sizes are features where a prior is given)."""
        self.space = space
        self.seed = seed
        self._random = RandomSampler(seed=seed)
        self._configs: list[dict] | None = None  # the candidates, decoded (launch form)
        problems = [problem or {}] + [p.header["problem"] for p in (prior or [])]
        self.features = Featurizer(space.describe(), problems if prior else [])
        self.problem = problem or {}
        self.prior = self._fit_prior(prior) if prior else None

    # -- Optuna's sampler interface ---------------------------------------------------------
    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        # The space's own parameters, where the study asks for them with the same distributions
        # (a study over other parameters gets independent random values: nothing to model).
        if self.prior is None and not self._completed(study):
            return {}
        ours = self.space.distributions()
        done = self._completed(study)
        if done:
            shared = optuna.search_space.intersection_search_space(done)
            ours = {k: v for k, v in ours.items() if shared.get(k) == v}
        return ours if set(ours) == set(self.space.distributions()) else {}

    def sample_relative(self, study, trial, search_space: dict) -> dict:
        if not search_space:
            return {}
        done = self._completed(study)
        if self.prior is None and len(done) < STARTUP:
            return {}
        rng = np.random.default_rng([self.seed or 0, trial.number])
        taken = {config_key(self.space.decode(t.params)) for t in study.get_trials(deepcopy=False)
                 if t.number != trial.number and set(t.params) >= set(search_space)}
        pool = [c for c in self._candidates(rng) if config_key(c) not in taken]
        if not pool:
            return {}  # every candidate tried: Optuna's independent sampling takes over
        if len(pool) > POOL:
            pool = [pool[i] for i in rng.choice(len(pool), POOL, replace=False)]
        score = self._score(pool, done, rng)
        best = pool[int(np.argmin(score + 1e-9 * rng.random(len(score))))]  # ties: at random
        return {k: v for k, v in self.space.encode(best).items() if k in search_space}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    # -- the model --------------------------------------------------------------------------
    @staticmethod
    def _completed(study) -> list[FrozenTrial]:
        return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None]

    def _candidates(self, rng) -> list[dict]:
        if self._configs is None:
            if self.space.size() <= ENUMERATE_MAX:
                self._configs = self.space.valid_configs()
            else:  # draws, seeded by the sampler's seed: the same candidates every time
                draw = np.random.default_rng(self.seed or 0)
                found = {}
                for _ in range(RANDOM_POOL_DRAWS):
                    cfg = self.space.canonicalize({d.name: d.values()[draw.integers(len(d.values()))]
                                                   for d in self.space.domains})
                    if not self.space.violations(cfg):
                        found.setdefault(config_key(cfg), cfg)
                self._configs = list(found.values())
        return self._configs

    def _fit_prior(self, prior: list) -> CostModel:
        xs, ys = [], []
        for rec in prior:
            names = {d.name for d in self.space.domains}
            cands = [c for c in rec.candidates if set(c["config"]) == names]
            if not cands:
                continue
            failed = [c["status"] != "ok" for c in cands]
            values = [np.log10(c["latency_ms"] / 1e3) if not f else 0.0 for c, f in zip(cands, failed)]
            xs.append(self.features.matrix([c["config"] for c in cands], rec.header["problem"]))
            ys.append(targets(values, failed))
        if not xs:
            return None
        return CostModel(np.random.default_rng(self.seed or 0)).fit(np.vstack(xs), np.concatenate(ys))

    def _score(self, pool: list[dict], done: list[FrozenTrial], rng) -> np.ndarray:
        x_pool = self.features.matrix(pool, self.problem)
        score = np.zeros(len(pool))
        weight = 0.0
        if len(done) >= 2:
            configs = [self.space.decode(t.params) for t in done]
            failed = [t.value >= PENALTY for t in done]
            y = targets([t.value for t in done], failed)
            own = CostModel(rng).fit(self.features.matrix(configs, self.problem), y)
            mean, spread = own.predict(x_pool)
            weight = len(done) / (len(done) + PRIOR_HALF) if self.prior is not None else 1.0
            score += weight * (mean - KAPPA * spread)
        if self.prior is not None:
            mean, spread = self.prior.predict(x_pool)
            score += (1.0 - weight) * (mean - KAPPA * spread)
        return score
