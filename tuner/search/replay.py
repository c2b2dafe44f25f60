"""Replay: a sampler searches a recorded space on the CPU, each candidate answered from the recording.

The search is the sweep's own: a ConstrainedSearch (tuner.search.constrained) over the study's
space with the sampler the registry builds, asked and told exactly as Ray Tune asks and tells it
in a sweep (suggest, then on_trial_complete with the objective or a failure), `concurrency`
candidates in flight, the oldest answered first. Only the evaluation is replaced: a candidate's
result is its record in the recorded space (tuner.records.recorded_space). No Ray runtime, no GPU.

Which configs the search may propose (`space_mode`):
  recorded  the recorded configs only (the space's parameters, with one constraint: "recorded").
            On a partial recording this searches the recorded sample, not the kernel's space.
  kernel    the kernel's own space (its search-space module, constraints included); a valid config
            the recording lacks is answered as a failed candidate (status "not_recorded") and
            counted, so a partial recording shows how often a search left it.

What it measures, per seed: candidates until the first one within `tolerance` of the oracle (the
fastest correct latency recorded), and the regret curve (best so far / oracle - 1, per candidate).
"""
from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import optuna
from ray.tune.search import Searcher

from kernelevolve.tuner.records.recorded_space import RecordedSpace
from kernelevolve.tuner.search.constrained import ConstrainedSearch, ValidSet
from kernelevolve.tuner.search.protocol import OBJECTIVE, objective_of
from kernelevolve.tuner.search.space import ENUMERATE_MAX, Choice, Const, IntRange, Pow2, Space, config_key

optuna.logging.set_verbosity(optuna.logging.ERROR)  # CMA-ES warns on every categorical, every trial

TOLERANCE = 0.02  # "within 2% of the oracle"
NOT_RECORDED = "not_recorded"
SPACE_MODES = ("recorded", "kernel")


class ReplayError(Exception):
    """A replay that cannot run as asked (an unknown sampler, nothing correct recorded): exit 2."""


class Recorded:
    """The constraint of a recorded space: a config is valid where it was recorded. A class, not a
    closure: Ray Tune pickles searchers, and the rule's docstring names it in rejection counts."""

    def __init__(self, keys):
        self.keys = frozenset(keys)
        self.__doc__ = "recorded: the config is one the recording holds"

    def __call__(self, config: dict) -> str | None:
        return None if config_key(config) in self.keys else "not recorded"


@dataclass(frozen=True)
class RecordedConfigs(Space):
    """The space of a recording: the recorded parameters, valid where recorded. Its valid configs
    are listed from the recording, not found by enumerating the product of the domains (a GEMM's
    is 205k points: seconds for every sampler that asks)."""

    recorded: tuple = field(default=(), compare=False)

    def valid_configs(self) -> list[dict]:
        return [dict(c) for c in self.recorded]

    def valid_count(self) -> int:
        return len(self.recorded)


def domain_of(param: dict):
    """A domain from the header's description of it (Space.describe)."""
    kind, name, values = param["kind"], param["name"], param["values"]
    if kind == "Pow2":
        return Pow2(name, min(values), max(values))
    if kind == "IntRange":
        return IntRange(name, min(values), max(values))
    if kind == "Const":
        return Const(name, values[0])
    return Choice(name, values)


def space_of(recorded: RecordedSpace, mode: str = "recorded") -> tuple[Space, list[dict]]:
    """(the space a replay searches, its valid configs)."""
    if mode == "kernel":
        from kernelevolve.tuner.experiment import hardware, registry

        h = recorded.header
        tunable = registry.load(h["kernel_ref"])
        space = tunable.space(tunable.kernel.problem(**h["problem"]), hardware.profile(h["hardware"]))
        if not space.enumerable():
            raise ReplayError(f"{recorded.name}: the kernel's space has {space.size()} raw points, too "
                              f"many to enumerate (over {ENUMERATE_MAX}); replay it with --space recorded")
        return space, space.valid_configs()
    configs = [c["config"] for c in recorded.candidates]
    domains = tuple(domain_of(p) for p in recorded.header["space"]["parameters"])
    space = RecordedConfigs(domains, constraints=(Recorded(config_key(c) for c in configs),),
                            recorded=tuple(configs))
    return space, configs


@dataclass
class SeedRun:
    """One replayed search: the latency of each candidate in the order they were answered
    (None: failed, or not recorded), and what else happened."""

    seed: int
    latencies: list = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    proposals: dict = field(default_factory=dict)

    def regret(self, oracle_ms: float) -> np.ndarray:
        """Best so far / oracle - 1 after each candidate (inf until a correct one)."""
        best, out = math.inf, []
        for ms in self.latencies:
            if ms is not None:
                best = min(best, ms)
            out.append(best / oracle_ms - 1.0)
        return np.array(out)

    def hit(self, oracle_ms: float, tolerance: float = TOLERANCE) -> int | None:
        """Candidates until the first within `tolerance` of the oracle (None: not within the run)."""
        for i, ms in enumerate(self.latencies, start=1):
            if ms is not None and ms <= oracle_ms * (1.0 + tolerance):
                return i
        return None


def answer(candidate: dict | None) -> tuple[dict | None, float | None, str]:
    """(what the searcher is told, the latency, the status) of a recorded candidate: the objective
    of a correct one; None for a failure or a config absent from the recording, which the
    searcher tells its sampler as the failure penalty (as it does for a crashed trial)."""
    if candidate is None:
        return None, None, NOT_RECORDED
    if candidate["status"] == "ok":
        ms = candidate["latency_ms"]
        return {OBJECTIVE: objective_of(ms / 1e3)}, ms, "ok"
    return None, None, candidate["status"]


def run_seed(recorded: RecordedSpace, sampler, seed: int, *, budget: int, space: Space,
             valid: list[dict], concurrency: int = 1) -> SeedRun:
    """One search of `budget` candidates at most (fewer when the space is exhausted). `sampler`: a
    registry name, or a function (space, seed) -> an Optuna sampler, as the registry's (with_prior)."""
    # keyed as the space reads them: a recording older than a switch of the kernel's space holds
    # configs that mean its default (Space.defaults; identity for the recorded space itself)
    by_key = {config_key(space.complete(c["config"])): c for c in recorded.candidates}
    inner = sampler if isinstance(sampler, str) else sampler(space, seed)
    search = ConstrainedSearch(space, inner, seed, recorded.name, valid=ValidSet(space, valid))
    run, in_flight, asked = SeedRun(seed), deque(), 0
    while True:
        while asked < budget and len(in_flight) < concurrency:
            trial_id = f"replay{asked}"
            cfg = search.suggest(trial_id)
            if cfg is None or cfg == Searcher.FINISHED:  # None: ask again when one ends
                break
            in_flight.append((trial_id, cfg))
            asked += 1
        if not in_flight:
            break
        trial_id, cfg = in_flight.popleft()
        told, ms, status = answer(by_key.get(config_key(cfg)))
        search.on_trial_complete(trial_id, told)
        run.latencies.append(ms)
        run.statuses[status] += 1
    run.proposals = search.proposals()
    return run


class with_prior:  # noqa: N801 - used as a sampler factory, like the registry's lambdas
    """The learned sampler fit first on other recorded spaces of the kernel, as a sweep's prior is
    chosen (tuner.search.prior.prior_for): of the same kernel, and never the space searched: a
    prior space of the same problem and hardware is dropped, whatever the caller passed (the same
    problem on another GPU kind stays: that is a transfer across GPU kinds)."""

    name = "learned+prior"

    def __init__(self, recorded: RecordedSpace, prior: list[RecordedSpace]):
        from kernelevolve.tuner.search.prior import prior_for

        h = recorded.header
        self.problem = h["problem"]
        self.prior = prior_for(prior, h["kernel"], self.problem, h["hardware"])

    def __call__(self, space: Space, seed: int):
        from kernelevolve.tuner.search.learned_sampler import LearnedSampler

        return LearnedSampler(space, seed, prior=self.prior, problem=self.problem)


def summarize(runs: list[SeedRun], oracle_ms: float, n_valid: int, budget: int,
              tolerance: float = TOLERANCE) -> dict:
    """Candidates-to-within-tolerance over seeds (median, p90; a seed that never got there counts
    as budget + 1, and `reached` says how many did), and the regret curve's median and p90."""
    hits = [r.hit(oracle_ms, tolerance) for r in runs]
    counted = np.array([h if h is not None else budget + 1 for h in hits], dtype=float)
    length = max(len(r.latencies) for r in runs)
    curves = np.full((len(runs), length), np.nan)
    for i, r in enumerate(runs):
        reg = r.regret(oracle_ms)
        curves[i, :len(reg)] = reg
        curves[i, len(reg):] = reg[-1] if len(reg) else np.inf  # exhausted early: it stays there
    med, p90 = float(np.median(counted)), float(np.percentile(counted, 90))
    with np.errstate(invalid="ignore"):  # inf - inf between two seeds with nothing correct yet: nan
        median_curve, p90_curve = np.median(curves, axis=0), np.percentile(curves, 90, axis=0)
    statuses = Counter()
    for r in runs:
        statuses.update(r.statuses)
    return {
        "seeds": len(runs), "budget": budget, "valid_configs": n_valid, "oracle_ms": oracle_ms,
        "tolerance": tolerance, "hits": hits, "reached": sum(h is not None for h in hits),
        "median": med, "p90": p90,
        "median_pct": 100.0 * med / n_valid, "p90_pct": 100.0 * p90 / n_valid,
        "statuses": dict(statuses), "not_recorded": statuses.get(NOT_RECORDED, 0),
        "regret_median": [_finite(v) for v in median_curve],
        "regret_p90": [_finite(v) for v in p90_curve],
    }


def _finite(v: float) -> float | None:
    # JSON has no inf or nan: null is "none correct yet"; 1e-5 of the oracle is far below its noise
    return round(float(v), 5) if math.isfinite(v) else None


def replay(recorded: RecordedSpace, sampler, seeds: int, *, budget: int | None = None,
           space_mode: str = "recorded", concurrency: int = 1, tolerance: float = TOLERANCE,
           first_seed: int = 0) -> dict:
    """Every seed's search of one recorded space with one sampler, summarized."""
    oracle = recorded.oracle_ms()
    if oracle is None:
        raise ReplayError(f"{recorded.name}: no correct candidate is recorded, so there is no oracle")
    space, valid = space_of(recorded, space_mode)
    budget = min(budget or len(valid), len(valid))
    runs = [run_seed(recorded, sampler, s, budget=budget, space=space, valid=valid,
                     concurrency=concurrency) for s in range(first_seed, first_seed + seeds)]
    out = summarize(runs, oracle, len(valid), budget, tolerance)
    # how many recorded configs a search may stop at: with k of n, random search without
    # repeats needs (n + 1) / (k + 1) candidates on average
    near = sum(c["latency_ms"] <= oracle * (1 + tolerance) for c in recorded.ok())
    out.update(space=recorded.name, space_mode=space_mode, concurrency=concurrency, within_tolerance=near,
               sampler=sampler if isinstance(sampler, str) else getattr(sampler, "name", "custom"),
               exhaustive=bool(recorded.header["space"].get("exhaustive")),
               kernel_valid_configs=recorded.header["space"].get("valid_configs"))
    return out
