"""The sampler registry: Optuna's samplers by name (and "auto", the default: the learned sampler with
the study's prior where it has one, else the learned sampler or TPE by the size of the space;
"none": no proposals, the study's start points only), and the objective every sampler minimises.

Importable without Ray (the experiment loader and the CLI check a sampler's name with it)."""
from __future__ import annotations

import warnings

import optuna

from kernelevolve.tuner.search.learned_sampler import LearnedSampler
from kernelevolve.tuner.search.pool_sampler import UniformSampler
from kernelevolve.tuner.search.space import ENUMERATE_MAX, Space

from kernelevolve.tuner.search.protocol import OBJECTIVE, PENALTY, objective_of  # noqa: F401 - re-exported

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)


# "auto" (the default) builds the learned sampler for a space of at least AUTO_LEARNED_MIN valid
# configs, and TPE for a smaller one. Replayed on spaces recorded on the H100
# (docs/benchmarks.md): on seven whole spaces of 30-666 valid configs the learned sampler needed
# 1.23x TPE's candidates to come within 2% of the best; on five spaces of 7,168-16,172 valid
# configs, searched through 2,000-config samples of each, it needed 2.8x fewer. 2,000 is the
# smallest pool on which it was measured to win; nothing between 666 and 2,000 was measured, and
# below it TPE is the measured choice. A space too large to enumerate (over ENUMERATE_MAX raw
# points, the Hopper conv) stays on TPE: there the learned sampler only chooses among a random
# sample of its valid configs, which no replay has measured.
AUTO_LEARNED_MIN = 2_000
# With a prior (recorded spaces of the same kernel: tuner.search.prior), "auto" builds the learned
# sampler fit on it, whatever the size of the space: replayed on the H100 recordings, the learned
# sampler with a prior (and its trust check, tuner.search.learned_sampler) needed 2.7x fewer
# candidates than TPE on the five small whole spaces that had one (30-666 configs) and 5.4x fewer
# on the 2,000-config samples (docs/benchmarks.md).
WITH_PRIOR = "learned+prior"  # what "auto" (or "learned") resolves to where a prior is used
PRIOR_AWARE = ("learned", "auto")  # the samplers that use a prior; any other searches without it


def auto_choice(space: Space, prior: list | None = None) -> str:
    """The sampler "auto" builds for this space: "learned+prior" where the study has a non-empty
    prior, else "learned" or "tpe" by its size. The valid configs are counted from the space's one
    enumeration (Space.valid_count), which its searcher and the learned sampler's pool share; a
    space of fewer raw points than the threshold is not enumerated."""
    if prior:
        return WITH_PRIOR
    raw = space.size()
    if raw < AUTO_LEARNED_MIN or raw > ENUMERATE_MAX:
        return "tpe"
    return "learned" if space.valid_count() >= AUTO_LEARNED_MIN else "tpe"


class AutoSampler(optuna.samplers.BaseSampler):
    """The learned sampler (with the study's prior where it has one) or TPE, as auto_choice says,
    chosen at the study's first proposal (not when the searcher is built: a sweep enumerates its
    studies' valid sets in a thread meanwhile). Every call goes to the sampler chosen; `chosen`
    names it."""

    def __init__(self, space: Space, seed: int | None = None, *, prior: list | None = None,
                 problem: dict | None = None):
        self.space = space
        self.seed = seed
        self.prior = list(prior or [])
        self.problem = problem
        self.chosen: str | None = None
        self._inner = None

    @property
    def inner(self):
        if self._inner is None:
            self.chosen = auto_choice(self.space, self.prior)
            if self.chosen == WITH_PRIOR:
                self._inner = LearnedSampler(self.space, self.seed, prior=self.prior, problem=self.problem)
            else:
                self._inner = SAMPLERS[self.chosen](self.space, self.seed)
            self.prior = []  # fit into the learned sampler: the recordings need not travel with it
        return self._inner

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self.inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self):
        self.inner.reseed_rng()


# "none": the study evaluates its start points and nothing else (its budget is their number:
# Study.budget), for a given list of configs to be verified and timed by the engine
# (benchmarks/probe_configs.py).
NONE = "none"


class NoProposals(optuna.samplers.BaseSampler):
    """The sampler of "none". Every trial of its study is an enqueued start point, whose values
    Optuna takes from the queue without asking the sampler; asked for a value all the same, the
    study would evaluate a config nobody listed, so it raises instead of proposing one."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        raise RuntimeError(f"sampler '{NONE}' proposes nothing, but its study asked for a value of "
                           f"{param_name} after its start points")


def _grid(space: Space, seed: int):
    return optuna.samplers.GridSampler(space.grid(), seed=seed)


SAMPLERS = {
    "tpe": lambda space, seed: optuna.samplers.TPESampler(seed=seed),
    "gp": lambda space, seed: optuna.samplers.GPSampler(seed=seed),
    "cmaes": lambda space, seed: optuna.samplers.CmaEsSampler(seed=seed),
    "random": lambda space, seed: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda space, seed: optuna.samplers.QMCSampler(seed=seed),
    "grid": _grid,
    "nsga2": lambda space, seed: optuna.samplers.NSGAIISampler(seed=seed),
    # valid untried configs only (tuner.search.pool_sampler): uniformly at random, or as a cost
    # model ranks them (tuner.search.learned_sampler)
    "uniform": lambda space, seed: UniformSampler(space, seed),
    "learned": lambda space, seed, prior=None, problem=None: LearnedSampler(
        space, seed, prior=prior or None, problem=problem),
    # the default: "learned" with the study's prior where it has one; without, "learned" for a
    # space of at least AUTO_LEARNED_MIN valid configs, else "tpe"
    "auto": lambda space, seed, prior=None, problem=None: AutoSampler(space, seed, prior=prior, problem=problem),
    NONE: lambda space, seed: NoProposals(),
}
# what a replay of "every sampler" runs: "auto" is one of two of them on each space, and "none"
# searches nothing
DISTINCT = [n for n in SAMPLERS if n not in ("auto", NONE)]


def make_sampler(name: str, space: Space, seed: int, prior: list | None = None,
                 problem: dict | None = None):
    """The named sampler for a study's space. `prior`: recorded spaces of the study's kernel
    (tuner.search.prior.prior_for), `problem`: the study's problem; only the samplers of
    PRIOR_AWARE use them, the others search as they would without."""
    if name in PRIOR_AWARE:
        return SAMPLERS[name](space, seed, prior=prior, problem=problem)
    return SAMPLERS[name](space, seed)


def resolved(name: str, space: Space, prior: list | None = None) -> str:
    """The sampler that searches a study: "auto" names the one it builds (auto_choice), "learned"
    with a non-empty prior is "learned+prior", any other is itself."""
    if name == "auto":
        return auto_choice(space, prior)
    if name == "learned" and prior:
        return WITH_PRIOR
    return name

