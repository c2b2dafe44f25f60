"""What the searchers and the trials agree on: the objective every sampler minimises, and the key
that names a trial's study. Importable without Optuna (the trial actors import it)."""
from __future__ import annotations

import math

OBJECTIVE = "objective"  # log10 of the median latency in seconds; lower is better
PENALTY = 3.0  # log10(1000 s): finite and worse than any kernel that ran


def objective_of(latency_s: float) -> float:
    return math.log10(latency_s)

STUDY_PARAM = "__study__"  # the trial config's key naming its study; never part of a kernel config
