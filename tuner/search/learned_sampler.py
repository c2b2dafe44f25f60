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
Each prior space gives at most PRIOR_MAX of its candidates (the fastest and a seeded sample of the
rest), and the prior's prediction of a config is made once and remembered: it does not change
with the study's results.

A prior can be wrong for a new shape, and a search that only follows it learns nothing to say so:
on the H100, the prior of four other GEMM shapes sent a held-out 8192x1024x1024 bf16 study to
split-K=8 tiles for all 16 of its candidates (0.53-0.56 ms each; TPE's best 0.038 ms), and the
study's own model, fit on 16 equally bad results, had no contrast to rank by. So while a prior is
followed, every EXPLORE_EVERY-th proposal is a valid config drawn at random (the contrast), and
once the study has TRUST_MIN results the prior is followed only while it ranks them the right way
round (Spearman correlation of its predictions with the measured latencies above 0); otherwise the
study's own model alone proposes.
"""
from __future__ import annotations

import math

import numpy as np

from kernelevolve.tuner.search.cost_model import CostModel, Featurizer, targets
from kernelevolve.tuner.search.pool_sampler import PoolSampler
from kernelevolve.tuner.search.protocol import PENALTY
from kernelevolve.tuner.search.space import Space, config_key

STARTUP = 4  # completed trials before the study's own model proposes (without a prior)
KAPPA = 0.5  # optimism: how much the ensemble's spread counts against its mean
PRIOR_HALF = 10  # own results at which the study's model and the prior weigh the same
EXPLORE_EVERY = 4  # while a prior is followed, every 4th proposal is drawn at random (docstring)
TRUST_MIN = 4  # own results before the prior's ranking of them is checked
# Candidates of one prior space the prior is fit on, at most. A 2,000-config GEMM recording gives
# 2,000: three of them made the prior's k-nearest-neighbours a pool x 6,000 distance matrix, 0.6 s
# per proposal on a 2-core CPU when it was predicted at every proposal (a replay of 400
# candidates x 5 seeds: 20 minutes a space). The prior's prediction is now made once per config
# (_prior_score), which alone brings that replay under 2 minutes; the cap keeps the fit and that
# one prediction bounded as priors grow (more shapes, more GPU kinds), and 500 per space already
# cover a space's regions: on the four 2,000-config GEMM recordings, the capped and the whole prior
# needed as many candidates (geomean over the four, 5 seeds: 0.25 and 0.28 of TPE's;
# docs/results/replay/h100_2000_spaces_prior*.md). Kept: the fastest PRIOR_TOP of the correct ones
# (where the search must go, so the neighbours of the best stay dense), and a seeded uniform sample
# of the rest, failures in their proportion. Targets are computed on the whole space first, so the
# subsample does not move its centring.
PRIOR_MAX = 500
PRIOR_TOP = 0.1  # share of a prior space's correct candidates always kept (the fastest), at most half the cap


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
        self._prior_scores: dict[str, float] = {}  # config key -> the prior's optimistic score
        # The features of every valid config, made at the first proposal that needs them: made
        # per proposal for a pool of 4,000 they took most of its time (~15 ms of ~17 on the CPU
        # box for a GEMM space), on the sweep's driver thread, once per candidate.
        self._valid_features: np.ndarray | None = None

    def choose(self, pool, study, trial, rng, index):
        done = self.completed(study)
        if self.prior is None and len(done) < STARTUP:
            return pool[int(rng.integers(len(pool)))]
        follow = self.prior is not None and self.trusts_prior(done)
        if follow and trial.number % EXPLORE_EVERY == EXPLORE_EVERY - 1:
            return pool[int(rng.integers(len(pool)))]
        score = self._score(pool, done, rng, follow, index)
        return pool[int(np.argmin(score + 1e-9 * rng.random(len(score))))]  # ties: at random

    def trusts_prior(self, done: list) -> bool:
        """Whether the prior ranks the study's own results the right way round (module docstring):
        True until TRUST_MIN of them, then while the rank correlation of its predictions with the
        measured values (a failure: the search's penalty, slowest of all) is above 0."""
        if len(done) < TRUST_MIN:
            return True
        configs = [self.space.decode(t.params) for t in done]
        predicted = self._prior_score([config_key(c) for c in configs],
                                      self.features.matrix(configs, self.problem))
        return _rank_correlation(predicted, np.array([t.value for t in done], dtype=float)) > 0.0

    def _fit_prior(self, prior: list) -> CostModel | None:
        names = {d.name for d in self.space.domains}
        xs, ys = [], []
        for rec in prior:
            # a recording older than a switch of the space: its configs mean the default (Space.defaults)
            cands = [dict(c, config=self.space.complete(c["config"])) for c in rec.candidates]
            cands = [c for c in cands if set(c["config"]) == names]
            if not cands:
                continue
            failed = [c["status"] != "ok" for c in cands]
            values = [0.0 if f else float(np.log10(c["latency_ms"] / 1e3)) for c, f in zip(cands, failed)]
            y = targets(values, failed)  # centred per space: shapes differ in scale
            keep = subsample(values, failed, np.random.default_rng([self.seed or 0, len(xs)]))
            xs.append(self.features.matrix([cands[i]["config"] for i in keep], rec.header["problem"]))
            ys.append(y[keep])
        if not xs:
            return None
        return CostModel(np.random.default_rng(self.seed or 0)).fit(np.vstack(xs), np.concatenate(ys))

    def _pool_features(self, index: np.ndarray) -> np.ndarray:
        """The pool's feature rows, taken from those of every valid config (made once)."""
        if self._valid_features is None:
            self._valid_features = self.features.matrix(self.valid_configs(), self.problem)
        return self._valid_features[index]

    def _score(self, pool: list[dict], done: list, rng, follow_prior: bool, index: np.ndarray) -> np.ndarray:
        x_pool = self._pool_features(index)
        score = np.zeros(len(pool))
        weight = 0.0
        if len(done) >= 2:
            configs = [self.space.decode(t.params) for t in done]
            failed = [t.value >= PENALTY for t in done]
            own = CostModel(rng).fit(self.features.matrix(configs, self.problem),
                                     targets([t.value for t in done], failed))
            mean, spread = own.predict(x_pool)
            weight = len(done) / (len(done) + PRIOR_HALF) if follow_prior else 1.0
            score += weight * (mean - KAPPA * spread)
        if follow_prior:
            score += (1.0 - weight) * self._prior_score([self._config_keys[i] for i in index], x_pool)
        return score

    def _prior_score(self, keys: list[str], x: np.ndarray) -> np.ndarray:
        """The prior's mean - KAPPA x spread per config (`keys`, their feature rows `x`), each
        predicted once per study."""
        new = [i for i, k in enumerate(keys) if k not in self._prior_scores]
        if new:
            mean, spread = self.prior.predict(x[new])
            for i, v in zip(new, mean - KAPPA * spread):
                self._prior_scores[keys[i]] = float(v)
        return np.array([self._prior_scores[k] for k in keys])


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties broken by position); 0 where either side is constant."""
    ra, rb = np.argsort(np.argsort(a)).astype(float), np.argsort(np.argsort(b)).astype(float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def subsample(values: list[float], failed: list[bool], rng: np.random.Generator,
              cap: int | None = None, top: float | None = None) -> np.ndarray:
    """Indices of the candidates of one prior space to fit on (all of them up to `cap`, PRIOR_MAX
    unless given): the fastest `top` share of the correct ones (PRIOR_TOP unless given; at most
    cap // 2), then a uniform sample of the rest."""
    cap = PRIOR_MAX if cap is None else cap
    top = PRIOR_TOP if top is None else top
    n = len(values)
    if n <= cap:
        return np.arange(n)
    ok = [i for i in range(n) if not failed[i]]
    best = sorted(ok, key=lambda i: values[i])[:min(cap // 2, math.ceil(top * len(ok)))]
    rest = np.setdiff1d(np.arange(n), best)
    return np.sort(np.concatenate([np.array(best, dtype=int),
                                   rng.choice(rest, cap - len(best), replace=False)]))
