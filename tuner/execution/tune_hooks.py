"""What the sweep hands to Ray Tune besides its searcher: the callback that journals each finished
trial, the stopper that ends a run on a stop signal, one fix of Tune's per-trial cost and one of
its start."""
from __future__ import annotations

import contextlib
import os

from ray import tune

# Live hooks of this driver process, by sweep id. Ray Tune pickles its callbacks with the
# experiment state; the callback holds only the id, so whatever the hook reaches (the plans, an
# MLflow client, a progress display) need not be picklable.
_ON_RESULT: dict = {}


class RecordCallback(tune.Callback):
    """Journal each finished trial and hand it to its study (driver side, in order)."""

    def __init__(self, sweep_id: str):
        self.sweep_id = sweep_id

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = dict(trial.last_result or {})
        if "status" not in result:  # ended without a report: should not happen, never lost
            result = {"status": "runtime_error", "error": "trial ended without reporting a result"}
        _ON_RESULT[self.sweep_id](trial, result)

    def on_trial_error(self, iteration, trials, trial, **info):
        text = "trial actor failed"
        path = getattr(trial, "error_file", None)
        if path and os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()[-4000:]
        _ON_RESULT[self.sweep_id](trial, {"status": "runtime_error", "error": text})


class StopOnSignal(tune.Stopper):
    """Ends the Tune run at its next step once a stop signal arrived (in-flight candidates are
    not journaled and run again on resume)."""

    def __init__(self):
        self.signum = 0
        self.failed = False  # set when the sweep cannot go on (a target's GPU is not what it names)

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return bool(self.signum) or self.failed


@contextlib.contextmanager
def trainable_looked_up_once():
    """Ray Tune (2.60) reads its trainable from Ray's GCS key-value store and unpickles it again for
    every trial it creates (Trial.__init__ and create_placement_group_factory call
    validate_trainable and get_trainable_cls: several GCS reads and a cloudpickle load a trial).
    Profiled on a 16-core H100 node with 16 trials in flight, that cost 0.2-0.5 s per trial and took
    most of the sweep's trial loop. The trainable cannot change during one fit, so while our fit
    runs the registry answers trainable lookups from what it read the first time."""
    from ray.tune import registry as tune_registry

    reg = getattr(tune_registry, "_global_registry", None)
    category = getattr(tune_registry, "TRAINABLE_CLASS", None)
    if reg is None or category is None or not hasattr(reg, "get") or not hasattr(reg, "contains"):
        yield  # another Ray: uncached, as Ray does it
        return
    cache: dict = {}
    get, contains = reg.get, reg.contains

    def cached_get(cat, key):
        if cat != category:
            return get(cat, key)
        if (cat, key) not in cache:
            cache[(cat, key)] = get(cat, key)
        return cache[(cat, key)]

    def cached_contains(cat, key):
        return (cat, key) in cache or contains(cat, key)
    reg.get, reg.contains = cached_get, cached_contains
    try:
        yield
    finally:
        del reg.get, reg.contains  # the instance attributes go; the class's methods answer again


@contextlib.contextmanager
def callbacks_not_tagged():
    """Ray Tune (2.60) tags its usage telemetry with the kinds of callbacks a run was given
    (ray.air._internal.usage.tag_callbacks), and to tell them apart it imports the Comet, MLflow,
    Weights & Biases and Aim integrations, MLflow itself among them, before the run's first
    trial. Driver stack samples on a 2 x H200 node: ~2.7 s of the 8 s between the Tuner's start and
    its first trial actor, in the driver, which has no other use for MLflow (the sweep's writes
    are in processes of their own: tuner.records.remote_tracker). While our fit starts, the tag
    is not recorded; nothing else of Tune's reads it."""
    try:
        from ray.air._internal import usage
    except ImportError:  # another Ray: as Ray does it
        yield
        return
    tag = getattr(usage, "tag_callbacks", None)
    if tag is None:
        yield
        return
    usage.tag_callbacks = lambda callbacks: False
    try:
        yield
    finally:
        usage.tag_callbacks = tag
