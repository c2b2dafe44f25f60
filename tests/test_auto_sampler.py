"""The default sampler, "auto": the learned sampler on a space of at least AUTO_LEARNED_MIN valid
configs, TPE on a smaller one; chosen from the space's one enumeration of its valid configs, and
recorded on the study's parent run."""
import glob
from types import SimpleNamespace

import optuna
import pytest
from optuna.samplers import TPESampler

from kernelevolve.tuner.experiment.config import Search
from kernelevolve.tuner.records import recorded_space
from kernelevolve.tuner.records.tracking import _resolved
from kernelevolve.tuner.search import samplers
from kernelevolve.tuner.search.constrained import ConstrainedSearch
from kernelevolve.tuner.search.learned_sampler import LearnedSampler
from kernelevolve.tuner.search.replay import space_of
from kernelevolve.tuner.search.samplers import AUTO_LEARNED_MIN, AutoSampler, auto_choice, make_sampler
from kernelevolve.tuner.search.space import ENUMERATE_MAX, IntRange, Pow2, Space, config_key

H100 = "benchmarks/data/recorded/h100"


def _fits(cfg):
    """BLOCK_M * BLOCK_N at most 2**14"""
    return "too big" if cfg["BLOCK_M"] * cfg["BLOCK_N"] > 2 ** 14 else None


def space_of_size(stages: int) -> Space:
    """A tile space whose valid configs are 26 tile pairs x 5 warps x `stages`."""
    return Space((Pow2("BLOCK_M", 16, 512), Pow2("BLOCK_N", 16, 512), Pow2("WARPS", 1, 16),
                  IntRange("STAGES", 1, stages)), constraints=(_fits,))


SMALL, LARGE = space_of_size(2), space_of_size(16)


def test_the_spaces_straddle_the_threshold():
    assert SMALL.valid_count() < AUTO_LEARNED_MIN <= LARGE.valid_count()
    assert LARGE.valid_count() == len(LARGE.valid_configs())


def test_auto_is_tpe_on_a_small_space_and_learned_on_a_large_one():
    assert auto_choice(SMALL) == "tpe" and auto_choice(LARGE) == "learned"
    for space, kind in ((SMALL, TPESampler), (LARGE, LearnedSampler)):
        sampler = make_sampler("auto", space, 0)
        assert sampler.chosen is None  # chosen at the first proposal, not when built
        study = optuna.create_study(sampler=sampler)
        trial = study.ask(fixed_distributions=space.distributions())
        assert isinstance(sampler.inner, kind) and sampler.chosen == auto_choice(space)
        if kind is LearnedSampler:  # (TPE proposes raw points: the searcher moves them)
            assert not space.violations(space.decode(trial.params))


def test_a_space_of_fewer_raw_points_than_the_threshold_is_not_enumerated():
    def never(cfg):
        raise AssertionError("enumerated")
    tiny = Space((Pow2("BLOCK", 16, 256), IntRange("STAGES", 1, 4)), constraints=(never,))
    assert auto_choice(tiny) == "tpe"


def test_a_space_too_large_to_enumerate_stays_on_tpe():
    huge = Space(tuple(IntRange(f"P{i}", 1, 16) for i in range(7)))  # 16^7 = 268M raw points
    assert huge.size() > ENUMERATE_MAX and auto_choice(huge) == "tpe"


@pytest.mark.parametrize("name, expected", [("matmul__M4096_N4096_K4096", "learned"),
                                            ("embedding_bag_fwd", "learned"),
                                            ("softmax__rows8192_cols4096", "tpe"),
                                            ("attention__batch4_heads16_seq_len4096_head_dim128_causalTrue", "tpe")])
def test_auto_on_the_recorded_spaces_follows_the_replays(name, expected):
    """The 2,000-config GEMM and embedding-bag samples (where learned needed 2.8x fewer candidates
    than TPE) get the learned sampler; the whole small spaces (30-666 configs, TPE's) get TPE."""
    [path] = glob.glob(f"{H100}/{name}*.jsonl.gz")
    space, _ = space_of(recorded_space.read(path))
    assert auto_choice(space) == expected


def test_auto_through_the_searcher_shares_the_enumeration():
    space = space_of_size(16)
    s = ConstrainedSearch(space, "auto", 3, "k")
    seen = set()
    for i in range(8):
        cfg = s.suggest(f"t{i}")
        seen.add(config_key(cfg))
        s.on_trial_complete(f"t{i}", {"objective": float(-4 + 0.01 * i)})
    assert len(seen) == 8 and s.inner._ot_study.sampler.chosen == "learned"
    # the searcher's valid set, the pool sampler's and the count are one enumeration
    assert space.__dict__["_valid_cache"] is space._valid()


def test_the_default_sampler_is_auto():
    assert Search().sampler == "auto" and "auto" in samplers.SAMPLERS
    assert "auto" not in samplers.DISTINCT  # a replay of every sampler does not run it twice


def test_the_parent_run_records_what_auto_chose():
    assert _resolved("auto", SimpleNamespace(space=LARGE)) == "learned"
    assert _resolved("auto", SimpleNamespace(space=SMALL)) == "tpe"
    assert _resolved("random", SimpleNamespace(space=LARGE)) == "random"


def test_auto_sampler_pickles_after_choosing(tmp_path):
    import pickle

    sampler = AutoSampler(SMALL, 0)
    optuna.create_study(sampler=sampler).ask(fixed_distributions=SMALL.distributions())
    again = pickle.loads(pickle.dumps(sampler))
    assert again.chosen == "tpe" and "_valid_cache" not in again.space.__dict__


def test_a_sweep_that_names_no_sampler_searches_with_auto_and_says_which(tmp_path):
    """A real sweep (Ray Tune, the interpreter, MLflow) of an experiment that names no sampler: the
    parent run records `auto` and the sampler it chose (the interaction's interpreter space is
    small: TPE)."""
    from mlflow.tracking import MlflowClient

    from tests import tiny_sweep

    exp, _ = tiny_sweep.run_in(str(tmp_path), tiny_sweep.EXP.replace("sampler: tpe, ", ""))
    assert exp.search.sampler == "auto"
    evaluated = [r for r in tiny_sweep.journal(str(tmp_path), exp.name) if r["status"] != "invalid"]
    assert len(evaluated) == 5 and all(r["status"] == "ok" for r in evaluated)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    [parent] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                                  "tags.`kernelevolve.role` = 'study'")
    assert (parent.data.params["sampler"], parent.data.params["sampler_resolved"]) == ("auto", "tpe")
