"""The learned sampler: the untried valid config a cost model ranks best, proposed before anything is
compiled.

A pool sampler (tuner.search.pool_sampler), registered as "learned": Ray Tune's OptunaSearch
drives it as it drives TPE. Each proposal:
  1. the pool: the space's valid configs not yet tried or running (a seeded sample of them);
  2. the cost model (tuner.search.cost_model) is refit on every completed trial (its value is the
     log10 latency; a failure's penalty is learned as "slower than the slowest correct");
  3. the config with the lowest optimistic prediction (mean - KAPPA x spread) is proposed.
Until STARTUP trials have completed, with no prior, it proposes uniformly at random among the
pool: a model of two points ranks nothing.

A prior: candidates of other recorded spaces of the same kernel (other shapes, other GPU kinds;
tuner.records.recorded_space). A model fit on them ranks from the first proposal; it is blended
with the study's own model, whose weight grows with the study's own results (n / (n + PRIOR_HALF)).
"""
from __future__ import annotations

import numpy as np

from kernelevolve.tuner.search.cost_model import CostModel, Featurizer, targets
from kernelevolve.tuner.search.pool_sampler import PoolSampler
from kernelevolve.tuner.search.protocol import PENALTY
from kernelevolve.tuner.search.space import Space

STARTUP = 4  # completed trials before the study's own model proposes (without a prior)
KAPPA = 0.5  # optimism: how much the ensemble's spread counts against its mean
PRIOR_HALF = 10  # own results at which the study's model and the prior weigh the same


class LearnedSampler(PoolSampler):
    def __init__(self, space: Space, seed: int | None = None, *, prior: list | None = None,
                 problem: dict | None = None):
        """`prior`: RecordedSpace objects of the same kernel; `problem`: this study's problem (its
        sizes are features where there is a prior: the shapes then differ)."""
        super().__init__(space, seed)
        self.problem = problem or {}
        problems = [self.problem] + [p.header["problem"] for p in (prior or [])]
        self.features = Featurizer(space.describe(), problems if prior else [])
        self.prior = self._fit_prior(prior) if prior else None

    def choose(self, pool, study, trial, rng):
        done = self.completed(study)
        if self.prior is None and len(done) < STARTUP:
            return pool[int(rng.integers(len(pool)))]
        score = self._score(pool, done, rng)
        return pool[int(np.argmin(score + 1e-9 * rng.random(len(score))))]  # ties: at random

    def _fit_prior(self, prior: list) -> CostModel | None:
        names = {d.name for d in self.space.domains}
        xs, ys = [], []
        for rec in prior:
            cands = [c for c in rec.candidates if set(c["config"]) == names]
            if not cands:
                continue
            failed = [c["status"] != "ok" for c in cands]
            values = [0.0 if f else float(np.log10(c["latency_ms"] / 1e3)) for c, f in zip(cands, failed)]
            xs.append(self.features.matrix([c["config"] for c in cands], rec.header["problem"]))
            ys.append(targets(values, failed))  # centred per space: shapes differ in scale
        if not xs:
            return None
        return CostModel(np.random.default_rng(self.seed or 0)).fit(np.vstack(xs), np.concatenate(ys))

    def _score(self, pool: list[dict], done: list, rng) -> np.ndarray:
        x_pool = self.features.matrix(pool, self.problem)
        score = np.zeros(len(pool))
        weight = 0.0
        if len(done) >= 2:
            configs = [self.space.decode(t.params) for t in done]
            failed = [t.value >= PENALTY for t in done]
            own = CostModel(rng).fit(self.features.matrix(configs, self.problem),
                                     targets([t.value for t in done], failed))
            mean, spread = own.predict(x_pool)
            weight = len(done) / (len(done) + PRIOR_HALF) if self.prior is not None else 1.0
            score += weight * (mean - KAPPA * spread)
        if self.prior is not None:
            mean, spread = self.prior.predict(x_pool)
            score += (1.0 - weight) * (mean - KAPPA * spread)
        return score
