"""What the searchers and the trials agree on: the objective every sampler minimises, and the key
that names a trial's study. Importable without Optuna (the trial actors import it)."""
from __future__ import annotations

import math

OBJECTIVE = "objective"  # log10 of the median latency in seconds; lower is better
PENALTY = 3.0  # log10(1000 s): finite and worse than any kernel that ran


def objective_of(latency_s: float) -> float:
    return math.log10(latency_s)

STUDY_PARAM = "__study__"  # the trial config's key naming its study; never part of a kernel config

# Several candidates of one study per Ray Tune trial: Tune creates, starts and collects each trial
# on its one driver thread (~50 ms a trial on a 16-core H100 node, ~0.15 s on 2 cores), which held
# a whole sweep at 16-19 candidates a second however many GPUs it had. A trial's config carries its
# candidates (BATCH_PARAM) and its result their replies (BATCH_RESULT), each as one JSON string so
# that Tune sees flat values; every candidate keeps its own id, record and MLflow child run.
BATCH_PARAM = "__batch__"
BATCH_RESULT = "batch"
BATCH_MAX = 8  # candidates per trial at most: a study's feedback waits for a whole batch


def candidate_id(trial_id: str, index: int) -> str:
    """The id of a trial's index-th candidate: stable across a resume, like the trial's."""
    return f"{trial_id}-{index}"


def batch_size(concurrency: int, requested: int | None = None) -> int:
    """Candidates per trial of a study: `requested` (search.candidates_per_trial) if given, else half
    its concurrency (at most BATCH_MAX), so that a study keeps at least two trials in flight and its
    sampler hears of one batch while the other runs. Never more than the concurrency."""
    if requested:
        return max(1, min(requested, concurrency))
    return max(1, min(BATCH_MAX, concurrency // 2))


def encode_batch(items: list[dict]) -> str:
    import json

    return json.dumps(items, sort_keys=True, default=str)


def decode_batch(text) -> list[dict]:
    import json

    return json.loads(text) if isinstance(text, str) else list(text or [])


def replies_of(result: dict | None, n: int) -> list[dict]:
    """Each candidate's reply in a trial's result; a result without them (the trial's actor died,
    or it never reported) is every candidate's."""
    result = dict(result or {})
    replies = decode_batch(result.pop(BATCH_RESULT, None))
    if len(replies) == n:
        return replies
    return [dict(result) for _ in range(n)]
