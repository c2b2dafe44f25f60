"""Spaces and the constrained searcher, without Ray: what reaches a trial is valid and new; invalid
proposals are journaled; failures reach Optuna as a finite penalty; every sampler proposes."""
import math

import pytest

from kernelevolve.kernels.matmul import DEFAULT_CONFIG, MatmulProblem
from kernelevolve.search_spaces.gemm_resources import shared_memory_bytes
from kernelevolve.search_spaces.matmul import space
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.search.constrained import ConstrainedSearch
from kernelevolve.tuner.search.samplers import NONE, PENALTY, SAMPLERS
from kernelevolve.tuner.search.space import Choice, Const, IntRange, Pow2, Space, config_key


def test_pow2_is_searched_by_exponent():
    d = Pow2("B", 16, 256)
    assert d.values() == [16, 32, 64, 128, 256]
    dist = d.distribution()
    assert (dist.low, dist.high) == (4, 8)
    assert d.decode(d.encode(64)) == 64


def test_space_decode_adds_constants_and_rejects_duplicates():
    sp = Space((Pow2("A", 1, 4), IntRange("B", 2, 3), Choice("C", ["x", "y"]), Const("D", 7)))
    assert sp.decode({"A": 2, "B": 3, "C": "y"}) == {"A": 4, "B": 3, "C": "y", "D": 7}
    assert sp.size() == 3 * 2 * 2
    with pytest.raises(ValueError):
        Space((Pow2("A", 1, 4), IntRange("A", 1, 2)))


def _b_only_with_a(cfg):
    return "B varies only with A" if not cfg["A"] and cfg["B"] != 1 else None


def _b_canonical(cfg):
    return cfg if cfg["A"] else {**cfg, "B": 1}


def test_canonical_twins_are_decoded_not_rejected():
    sp = Space((Choice("A", (False, True)), Choice("B", (1, 2, 4))), constraints=(_b_only_with_a,),
               canonical=(_b_canonical,))
    assert sp.decode({"A": False, "B": 4}) == {"A": False, "B": 1}  # B means nothing without A
    assert sp.decode({"A": True, "B": 4}) == {"A": True, "B": 4}
    assert all(not sp.violations(sp.decode({"A": a, "B": b})) for a in (False, True) for b in (1, 2, 4))
    assert sp.violations({"A": False, "B": 4})  # a config given as is still meets the rule
    gemm = space(MatmulProblem(M=64, N=64, K=64), profile("h100"))
    raw = gemm.encode(dict(DEFAULT_CONFIG, SPLIT_K=1, SPLIT_K_REDUCE="two_pass", TMA=False, WARP_SPECIALIZE=False))
    assert gemm.decode(raw)["SPLIT_K_REDUCE"] == "atomic"


def test_h100_constraints_reject_what_cannot_fit():
    p = MatmulProblem(M=4096, N=4096, K=4096, dtype="bfloat16")
    sp = space(p, profile("h100"))
    big = {"BLOCK_M": 256, "BLOCK_N": 256, "BLOCK_K": 128, "GROUP_M": 8, "SPLIT_K": 1,
           "num_warps": 8, "num_stages": 5}
    reasons = " ".join(sp.violations(big))
    assert "shared memory" in reasons and "registers" in reasons
    good = dict(big, BLOCK_N=128, BLOCK_K=64, num_stages=3)
    assert sp.violations(good) == []
    assert shared_memory_bytes(good, "bfloat16") == 3 * (256 + 128) * 64 * 2
    assert any("SPLIT_K" in r for r in sp.violations(dict(good, SPLIT_K=2)))  # 128 tiles per wave..
    assert any("Hopper" in r for r in sp.violations(dict(good, BLOCK_M=32)))


def test_split_k_allowed_when_tiles_are_few():
    p = MatmulProblem(M=64, N=64, K=8192, dtype="bfloat16")
    sp = space(p, profile("h100"))
    cfg = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "GROUP_M": 1, "SPLIT_K": 8,
           "num_warps": 4, "num_stages": 3}
    assert sp.violations(cfg) == []


def _drive(searcher, n, value_of):
    """Play Ray Tune's part: ask n trials, complete each with value_of(config)."""
    seen = []
    for i in range(n):
        cfg = searcher.suggest(f"t{i}")
        if cfg == "FINISHED":
            break
        seen.append(cfg)
        searcher.on_trial_complete(f"t{i}", value_of(cfg))
    return seen


@pytest.mark.parametrize("sampler", sorted(set(SAMPLERS) - {NONE}))  # "none" proposes nothing
@pytest.mark.parametrize("enumerated", [True, False])
def test_every_sampler_proposes_valid_unique_configs(sampler, enumerated):
    p = MatmulProblem(M=100, N=72, K=130, dtype="float16")
    sp = space(p, profile("cpu-interpreter"))
    s = ConstrainedSearch(sp, sampler, seed=1, study_key="k")
    if not enumerated:
        s.valid = None  # a space too large to enumerate: rejection
    seen = _drive(s, 10, lambda c: {"objective": -c["BLOCK_M"] / 100})
    assert len(seen) == 10
    assert len({config_key(c) for c in seen}) == 10, "a config reached a trial twice"
    assert all(sp.violations(c) == [] for c in seen)
    counts = s.proposals()
    if enumerated:  # nothing wasted: every proposal became a candidate (moved where invalid)
        assert counts["rejected"] == 0 and counts["duplicates"] == 0
        assert counts["proposals"] == 10 and counts["valid_configs"] == len(sp.valid_configs())
    else:  # rejections are counted by rule, never journaled
        assert sum(counts["rejected_by"].values()) >= counts["rejected"]


@pytest.mark.parametrize("enumerated", [True, False])
def test_sampler_none_evaluates_the_start_points_and_proposes_nothing(enumerated):
    sp = space(MatmulProblem(M=100, N=72, K=130, dtype="float16"), profile("cpu-interpreter"))
    starts = sp.valid_configs()[:3]
    s = ConstrainedSearch(sp, NONE, seed=1, study_key="k", start_points=starts)
    if not enumerated:
        s.valid = None
    assert _drive(s, 3, lambda c: {"objective": 0.1}) == starts
    assert s.proposals()["proposals"] == 3 and s.proposals()["projected"] == 0
    with pytest.raises(RuntimeError, match="proposes nothing"):  # never a config nobody listed
        s.suggest("t3")
    # a resumed study enqueues its start points again: the evaluated ones are passed over
    again = ConstrainedSearch(sp, NONE, seed=1, study_key="k", start_points=starts)
    again.replay([{"config": c, "status": "ok", "objective": 0.1} for c in starts[:2]])
    assert again.suggest("r0") == starts[2] and again.proposals()["projected"] == 0


def test_invalid_proposals_are_moved_to_the_nearest_valid_config():
    sp = Space((Pow2("A", 1, 8), Choice("C", (0, 1))),
               constraints=(lambda c: "A=8 needs C=0" if c["A"] == 8 and c["C"] == 1 else None,))
    s = ConstrainedSearch(sp, "random", 0, "k")
    near = s.valid.nearest_free({"A": 8, "C": 1})
    assert not sp.violations(near) and (near["A"], near["C"]) in ((8, 0), (4, 1))


def test_share_of_wasted_proposals_does_not_grow_with_concurrency():
    """With every proposal in flight before any result (the worst case for constant liar), an
    enumerable space still turns each proposal into a distinct valid candidate."""
    sp = space(MatmulProblem(M=256, N=512, K=256, dtype="float16"), profile("h100"))
    for concurrency in (1, 16):
        s = ConstrainedSearch(sp, "tpe", 0, "k")
        ids, made = [], 0
        while made < 32:
            batch = [f"t{made + i}" for i in range(concurrency)]
            cfgs = [s.suggest(t) for t in batch]
            assert all(isinstance(c, dict) and not sp.violations(c) for c in cfgs)
            for t in batch:
                s.on_trial_complete(t, {"objective": 0.1})
            made += concurrency
        counts = s.proposals()
        assert counts["rejected"] == 0 and counts["duplicates"] == 0 and counts["proposals"] == 32


def test_failures_reach_optuna_as_finite_penalty(tmp_path):
    sp = space(MatmulProblem(M=100, N=72, K=130), profile("cpu-interpreter"))
    s = ConstrainedSearch(sp, "tpe", 0, "k")
    s.suggest("a")
    s.on_trial_complete("a", {"objective": float("nan")})
    s.suggest("b")
    s.on_trial_complete("b", None, error=True)
    told = [v for _, state, v in s.history() if state == "COMPLETE"]
    assert told[-2:] == [PENALTY, PENALTY] and all(math.isfinite(v) for v in told)


def test_grid_is_exhaustive_then_finishes(tmp_path):
    sp = Space((Pow2("A", 1, 4), Choice("C", (0, 1))),
               constraints=(lambda c: "no" if c["A"] == 2 and c["C"] == 1 else None,))
    s = ConstrainedSearch(sp, "grid", 0, "k", max_rejects=50)
    seen = _drive(s, 20, lambda c: {"objective": 1.0})
    assert sorted(config_key(c) for c in seen) == sorted(config_key(c) for c in sp.valid_configs())
    assert len(seen) == 5 and s.exhausted  # every valid config evaluated: the space says so


def test_searcher_state_survives_save_and_restore(tmp_path):
    sp = space(MatmulProblem(M=100, N=72, K=130), profile("cpu-interpreter"))
    s = ConstrainedSearch(sp, "tpe", 3, "k")
    _drive(s, 6, lambda c: {"objective": 0.5})
    path = str(tmp_path / "ckpt.pkl")
    s.save(path)
    fresh = ConstrainedSearch(sp, "tpe", 99, "k")
    fresh.restore(path)
    assert fresh.history() == s.history() and fresh.seen == s.seen
    assert fresh.suggest("t100") == s.suggest("t100")
