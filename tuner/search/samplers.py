"""The sampler registry: Optuna's samplers by name, and the objective every sampler minimises.

Importable without Ray (the experiment loader and the CLI check a sampler's name with it)."""
from __future__ import annotations

import warnings

import optuna

from kernelevolve.tuner.search.space import Space

from kernelevolve.tuner.search.protocol import OBJECTIVE, PENALTY, objective_of  # noqa: F401 - re-exported

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)


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
}


def make_sampler(name: str, space: Space, seed: int):
    return SAMPLERS[name](space, seed)

