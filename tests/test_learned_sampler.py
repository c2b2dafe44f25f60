"""The pool samplers (uniform, learned) follow Optuna's sampler contract: values only within the
distributions asked for, a first proposal with no data, the same proposals for the same seed, no
config proposed twice; and the cost model learns what it is shown."""
import numpy as np
import optuna
import pytest

from kernelevolve.tuner.records import recorded_space
from kernelevolve.tuner.search.cost_model import CostModel, Featurizer, targets
from kernelevolve.tuner.search.learned_sampler import LearnedSampler
from kernelevolve.tuner.search.pool_sampler import UniformSampler
from kernelevolve.tuner.search.protocol import PENALTY
from kernelevolve.tuner.search.space import Choice, IntRange, Pow2, Space, config_key

from tests.test_replay import CI_SPACE


def _too_big(cfg):
    """BLOCK * WARPS at most 1024"""
    return "too big" if cfg["BLOCK"] * cfg["WARPS"] > 1024 else None


SPACE = Space((Pow2("BLOCK", 16, 512), Pow2("WARPS", 1, 16), IntRange("STAGES", 1, 3),
               Choice("LOAD", ("default", "cg", "evict_first"))), constraints=(_too_big,))


def latency(cfg) -> float:
    """A smooth landscape with one best config: BLOCK 128, 4 warps, 2 stages, cg loads."""
    return (np.log2(cfg["BLOCK"] / 128) ** 2 + 0.5 * np.log2(cfg["WARPS"] / 4) ** 2
            + 0.3 * (cfg["STAGES"] - 2) ** 2 + (0.0 if cfg["LOAD"] == "cg" else 0.4) + 1.0)


def _study(sampler, n, objective=None, fail=lambda cfg: False):
    study = optuna.create_study(sampler=sampler)
    dists = SPACE.distributions()
    proposed = []
    for _ in range(n):
        trial = study.ask(fixed_distributions=dists)
        cfg = SPACE.decode(trial.params)
        proposed.append((trial.params, cfg))
        value = PENALTY if fail(cfg) else float(np.log10((objective or latency)(cfg) * 1e-4))
        study.tell(trial, value)
    return study, proposed


@pytest.mark.parametrize("make", [UniformSampler, LearnedSampler])
def test_proposals_are_within_the_distributions_from_the_first(make):
    _, proposed = _study(make(SPACE, seed=0), 12)
    dists = SPACE.distributions()
    for params, cfg in proposed:
        for name, value in params.items():
            assert dists[name]._contains(dists[name].to_internal_repr(value))
        assert not SPACE.violations(cfg)  # a pool sampler proposes valid configs only


def test_the_valid_configs_features_made_once_rank_as_features_made_per_pool(monkeypatch):
    """The sampler keeps every valid config's features and takes the pool's rows from them; a
    sampler that makes them per pool, as before, proposes the very same configs."""
    cached = [p for p, _ in _study(LearnedSampler(SPACE, seed=3), 16)[1]]
    per_pool = LearnedSampler(SPACE, seed=3)
    monkeypatch.setattr(per_pool, "_pool_features", lambda index: per_pool.features.matrix(
        [per_pool.valid_configs()[i] for i in index], per_pool.problem))
    assert [p for p, _ in _study(per_pool, 16)[1]] == cached
    assert per_pool._valid_features is None  # it never made them
    sampler = LearnedSampler(SPACE, seed=3)
    index = np.array([5, 0, 17])
    pool = [sampler.valid_configs()[i] for i in index]
    assert np.array_equal(sampler._pool_features(index), sampler.features.matrix(pool))


@pytest.mark.parametrize("make", [UniformSampler, LearnedSampler])
def test_the_same_seed_proposes_the_same_configs(make):
    a = [p for p, _ in _study(make(SPACE, seed=7), 10)[1]]
    b = [p for p, _ in _study(make(SPACE, seed=7), 10)[1]]
    c = [p for p, _ in _study(make(SPACE, seed=8), 10)[1]]
    assert a == b and a != c


@pytest.mark.parametrize("make", [UniformSampler, LearnedSampler])
def test_no_config_twice_until_the_pool_is_empty(make):
    n = len(SPACE.valid_configs())
    _, proposed = _study(make(SPACE, seed=1), n)
    assert len({config_key(cfg) for _, cfg in proposed}) == n


def test_running_trials_are_not_proposed_again():
    sampler = LearnedSampler(SPACE, seed=0)
    study = optuna.create_study(sampler=sampler)
    running = [study.ask(fixed_distributions=SPACE.distributions()) for _ in range(6)]
    assert len({config_key(SPACE.decode(t.params)) for t in running}) == 6


def test_failures_are_learned_without_breaking_the_model():
    study, proposed = _study(LearnedSampler(SPACE, seed=0), 20, fail=lambda cfg: cfg["STAGES"] == 3)
    later = [cfg for _, cfg in proposed[10:]]
    assert sum(cfg["STAGES"] == 3 for cfg in later) <= 3  # it learned to stay away


def test_the_learned_sampler_finds_the_best_of_a_smooth_space_early():
    n = len(SPACE.valid_configs())
    best = min(SPACE.valid_configs(), key=latency)
    found = []
    for seed in range(5):
        _, proposed = _study(LearnedSampler(SPACE, seed=seed), n)
        found.append(next(i for i, (_, cfg) in enumerate(proposed, 1) if cfg == best))
    assert np.median(found) <= 0.25 * n, found


def test_a_prior_ranks_from_the_first_proposal():
    ci = recorded_space.read(CI_SPACE)
    from kernelevolve.tuner.search.replay import space_of

    space, _ = space_of(ci)
    other_problem = dict(ci.header["problem"], seq_len=2048)
    prior_space = recorded_space.RecordedSpace(dict(ci.header, problem=other_problem), ci.candidates)
    sampler = LearnedSampler(space, seed=0, prior=[prior_space], problem=ci.header["problem"])
    study = optuna.create_study(sampler=sampler)
    first = space.decode(study.ask(fixed_distributions=space.distributions()).params)
    ranked = sorted(ci.ok(), key=lambda c: c["latency_ms"])
    # fit on the same latencies at another size, its first pick is in the recorded faster half
    assert config_key(first) in {config_key(c["config"]) for c in ranked[:len(ranked) // 2]}


def _recorded(problem, n, seed=0):
    """A recorded space of SPACE's configs (repeated to n candidates), every tenth one failed."""
    rng = np.random.default_rng(seed)
    configs = SPACE.valid_configs()
    cands = [{"config": configs[i % len(configs)], "status": "runtime_error" if i % 10 == 9 else "ok",
              "latency_ms": float(latency(configs[i % len(configs)]) * (1 + 0.1 * rng.random()))}
             for i in range(n)]
    return recorded_space.RecordedSpace({"problem": problem}, cands)


def test_a_large_prior_is_subsampled_to_the_cap_keeping_the_fastest():
    from kernelevolve.tuner.search import learned_sampler

    big, small = _recorded({"rows": 4096}, 2000), _recorded({"rows": 512}, 120)
    sampler = LearnedSampler(SPACE, seed=0, prior=[big, small], problem={"rows": 1024})
    # each prior space gives at most PRIOR_MAX points: the large one its cap, the small one all
    assert len(sampler.prior.y) == learned_sampler.PRIOR_MAX + 120

    values = [float(np.log10(c["latency_ms"])) for c in big.candidates]
    failed = [c["status"] != "ok" for c in big.candidates]
    keep = learned_sampler.subsample(values, failed, np.random.default_rng(0))
    assert len(keep) == learned_sampler.PRIOR_MAX == len(set(keep.tolist()))
    ok = sorted((v, i) for i, (v, f) in enumerate(zip(values, failed)) if not f)
    fastest = {i for _, i in ok[:int(learned_sampler.PRIOR_TOP * len(ok))]}
    assert fastest <= set(keep.tolist())  # the fastest tenth is always kept
    assert 0 < sum(failed[i] for i in keep) < len(keep) // 4  # failures stay, about in proportion
    same = learned_sampler.subsample(values, failed, np.random.default_rng(0))
    assert same.tolist() == keep.tolist()  # seeded
    assert learned_sampler.subsample(values[:100], failed[:100], np.random.default_rng(0)).tolist() == list(range(100))


def test_the_prior_predicts_each_config_once():
    sampler = LearnedSampler(SPACE, seed=0, prior=[_recorded({"rows": 4096}, 600)], problem={"rows": 1024})
    calls = []
    predict = sampler.prior.predict
    sampler.prior.predict = lambda x: calls.append(len(x)) or predict(x)
    _study(sampler, 15)
    assert sum(calls) == len(SPACE.valid_configs())  # every valid config predicted once, not once a proposal


def test_features_are_by_value_so_shapes_share_them():
    f = Featurizer(SPACE.describe(), problems=[{"rows": 1024, "dtype": "bfloat16"}])
    v = f.vector({"BLOCK": 64, "WARPS": 2, "STAGES": 3, "LOAD": "cg"}, {"rows": 1023, "dtype": "bfloat16"})
    assert v == [6.0, 1.0, 3.0, 0.0, 1.0, 0.0, 10.0]  # log2 tiles, stages as is, one-hot, log2(rows+1)


def test_cost_model_fits_and_ranks():
    configs = SPACE.valid_configs()
    f = Featurizer(SPACE.describe())
    x = f.matrix(configs)
    y = targets([float(np.log10(latency(c))) for c in configs], [False] * len(configs))
    model = CostModel(np.random.default_rng(0)).fit(x, y)
    mean, spread = model.predict(x)
    assert np.corrcoef(mean, y)[0, 1] > 0.9 and np.all(spread >= 0)


@pytest.mark.parametrize("sampler", ["uniform", "learned"])
def test_through_the_searcher_a_pool_sampler_exhausts_the_space_then_finishes(sampler):
    """As a recording sweep runs it (samples above the space's size): every valid config once,
    then the searcher says the space is exhausted."""
    from kernelevolve.tuner.search.constrained import ConstrainedSearch

    small = Space((Pow2("A", 1, 4), Choice("C", (0, 1))),
                  constraints=(lambda c: "no" if c["A"] == 2 and c["C"] == 1 else None,))
    search = ConstrainedSearch(small, sampler, 0, "k", max_rejects=50)
    seen = []
    for i in range(20):
        cfg = search.suggest(f"t{i}")
        if cfg == "FINISHED":
            break
        seen.append(config_key(cfg))
        search.on_trial_complete(f"t{i}", {"objective": -1.0 - i / 100})
    assert sorted(seen) == sorted(config_key(c) for c in small.valid_configs()) and search.exhausted
    assert search.proposals()["projected"] == 0  # no proposal needed moving: all valid and new


def test_a_searcher_with_the_learned_sampler_survives_a_checkpoint(tmp_path):
    """Ray Tune pickles searchers at checkpoints: the sampler, its pool and its prior go along."""
    from kernelevolve.tuner.search.constrained import ConstrainedSearch

    search = ConstrainedSearch(SPACE, "learned", 3, "k")
    for i in range(6):
        cfg = search.suggest(f"t{i}")
        search.on_trial_complete(f"t{i}", {"objective": float(np.log10(latency(cfg) * 1e-4))})
    path = str(tmp_path / "ckpt.pkl")
    search.save(path)
    fresh = ConstrainedSearch(SPACE, "learned", 99, "k")
    fresh.restore(path)
    assert fresh.history() == search.history()
    assert fresh.suggest("t100") == search.suggest("t100")


def _inverted(problem, n):
    """A prior that has it backwards: the recorded latencies rank SPACE's configs worst-first."""
    rec = _recorded(problem, n)
    for c in rec.candidates:
        c["latency_ms"] = float(10.0 / c["latency_ms"])
    return rec


def test_a_prior_that_ranks_the_study_backwards_is_dropped_and_the_search_recovers():
    sampler = LearnedSampler(SPACE, seed=0, prior=[_inverted({"rows": 4096}, 600)], problem={"rows": 1024})
    study, proposed = _study(sampler, 20)
    done = sampler.completed(study)
    assert not sampler.trusts_prior(done)  # its ranking of the measured results is the wrong way round
    assert min(latency(cfg) for _, cfg in proposed[:3]) > 2.0  # it was followed first: the prior's favourites are the worst configs
    # the random draws (every EXPLORE_EVERY-th) gave the contrast; the study's own model found the
    # neighbourhood of the best (latency 1.0) within 20 candidates
    assert min(latency(cfg) for _, cfg in proposed) < 1.6


def test_a_prior_that_ranks_the_study_right_is_kept():
    sampler = LearnedSampler(SPACE, seed=0, prior=[_recorded({"rows": 4096}, 600)], problem={"rows": 1024})
    study, _ = _study(sampler, 12)
    assert sampler.trusts_prior(sampler.completed(study))
