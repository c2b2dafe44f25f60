"""A space's valid configs, enumerated as a tree with each constraint asked as soon as the values
it reads are set (tuner.search.space.Space.valid_configs), are exactly the configs that pass every
constraint when each raw config is checked whole, in the same order."""
import itertools

import pytest

from kernelevolve.tuner.experiment import hardware, registry
from kernelevolve.tuner.search.space import Choice, IntRange, Pow2, Space


def brute_force(space):
    names = [d.name for d in space.domains]
    configs = (dict(zip(names, combo)) for combo in itertools.product(*(d.values() for d in space.domains)))
    return [c for c in configs if not space.violations(c)]


def example_problem(spec):
    return spec.problem(**{k: (1024 if f.is_required() else f.default) for k, f in spec.problem.model_fields.items()})


@pytest.mark.parametrize("target", ["h100", "cpu-interpreter"])
@pytest.mark.parametrize("name", sorted(registry.BUILTIN))
def test_every_builtin_space_enumerates_as_checked_whole(name, target):
    tunable = registry.load(registry.BUILTIN[name])
    try:
        problem = example_problem(tunable.kernel)
    except Exception:  # noqa: BLE001 - a kernel whose problem needs more than sizes of 1024
        pytest.skip(f"{name}: no example problem from defaults")
    space = tunable.space(problem, hardware.profile(target))
    if space.size() > 60_000:
        pytest.skip(f"{name} on {target}: {space.size()} raw configs, too many to check one by one in CI")
    assert space.valid_configs() == brute_force(space)


def test_rules_that_read_in_every_way():
    """Rules that read by [], get (of a parameter the space lacks, too), `in`, iteration, and
    that catch Exception around a read of a parameter not set yet."""
    def shared(cfg):
        """tiles and stages fit"""
        return cfg["A"] * cfg["B"] * cfg["stages"] > 2048 and "too big"

    def switch(cfg):
        """C only with small A"""
        return cfg.get("C") == "on" and cfg["A"] > 16 and "C with big A"

    def absent(cfg):
        """a switch this space does not search"""
        return cfg.get("NOT_SEARCHED", 0) != 0 and "never"

    def whole(cfg):
        """reads the whole config"""
        return sum(v for k, v in cfg.items() if isinstance(v, int)) % 7 == 0 and "sum % 7"

    def careless(cfg):
        """catches everything"""
        try:
            return cfg["stages"] == 3 and cfg["B"] == 8 and "3 stages of B=8"
        except Exception:  # noqa: BLE001 - what a careless plug-in writes
            return False

    def member(cfg):
        """`in` reads"""
        return "C" in cfg and cfg["C"] == "off" and cfg["B"] == 64 and "off at 64"

    space = Space(domains=(Pow2("A", 4, 64), Pow2("B", 8, 128), Choice("C", ["on", "off"]), IntRange("stages", 1, 4)),
                  constraints=(shared, switch, absent, whole, careless, member))
    fast = space.valid_configs()
    assert fast == brute_force(space)
    assert 0 < len(fast) < space.size()


_SUM_CALLS = []


def _sum_at_most_40(cfg):
    """A + B at most 40"""
    _SUM_CALLS.append(1)
    return "too big" if cfg["A"] + cfg["B"] > 40 else None


def test_the_valid_set_is_enumerated_once_and_shared():
    """The searcher, the pool sampler and the `auto` sampler's count read one enumeration; each
    caller gets its own copies; a pickled space leaves the set behind."""
    import pickle

    calls = _SUM_CALLS
    calls.clear()
    space = Space((IntRange("A", 1, 30), IntRange("B", 1, 30)), constraints=(_sum_at_most_40,))
    first = space.valid_configs()
    asked = len(calls)
    assert space.valid_count() == len(first) == len(brute_force(space)) and len(calls) == asked + 30 * 30
    again = space.valid_configs()
    first[0]["A"] = 99
    assert again[0]["A"] == 1 and space.valid_configs()[0]["A"] == 1  # copies
    assert len(calls) == asked + 900  # the brute force above, not a second walk
    assert "_valid_cache" not in pickle.loads(pickle.dumps(space)).__dict__


def test_sets_enumerated_in_forked_processes_are_the_walk_here():
    """The sweep's valid sets come from processes forked from the driver (tuner.search.valid_sets):
    spaces whose rules are lambdas (which do not pickle) arrive with the same configs, in the same
    order, and the same encoding and keys as a walk in this process; a rule that raises comes back
    as that study's error, the other studies' sets unharmed; a space too large to enumerate is
    handed back unwalked; an adopted set is what later asks of the space read."""
    import numpy as np

    from kernelevolve.tuner.search.constrained import ValidSet
    from kernelevolve.tuner.search.space import ENUMERATE_MAX
    from kernelevolve.tuner.search.valid_sets import Enumerations

    def boom(cfg):
        """raises"""
        raise RuntimeError("a broken rule")

    spaces = {
        "lambdas": Space((Pow2("A", 4, 64), Pow2("B", 8, 128), Choice("C", ["on", "off"])),
                         constraints=(lambda c: c["A"] * c["B"] > 1024 and "too big",)),
        "ranges": Space((IntRange("A", 1, 30), IntRange("B", 1, 30)), constraints=(_sum_at_most_40,)),
        "broken": Space((IntRange("A", 1, 3),), constraints=(boom,)),
        "huge": Space(tuple(IntRange(f"D{i}", 1, 40) for i in range(5))),
    }
    assert spaces["huge"].size() > ENUMERATE_MAX
    _SUM_CALLS.clear()
    enum = Enumerations(spaces, workers=2)
    try:
        got = {key: (parts, error) for key, parts, error in enum.as_arrived(list(spaces))}
    finally:
        enum.close()
    assert set(got) == set(spaces)
    assert not _SUM_CALLS  # the walks ran in the children
    for key in ("lambdas", "ranges"):
        (configs, vectors, keys), error = got[key]
        assert error is None and configs == spaces[key].valid_configs()
        assert np.array_equal(vectors, ValidSet.vectors_of(spaces[key], configs))
        assert keys == ValidSet.keys_of(configs)
    assert got["huge"] == (None, None)
    assert isinstance(got["broken"][1], RuntimeError) and got["broken"][0] is None
    # adopted, the set is the space's: not walked again here
    fresh = Space((IntRange("A", 1, 30), IntRange("B", 1, 30)), constraints=(_sum_at_most_40,))
    _SUM_CALLS.clear()
    fresh.adopt_valid(got["ranges"][0][0])
    assert fresh.valid_count() == len(got["ranges"][0][0]) and not _SUM_CALLS
    # not forked (the sweep's caller had started Ray here): every key back unwalked, in order
    unforked = Enumerations(spaces, fork=False)
    assert list(unforked.as_arrived(list(spaces))) == [(k, None, None) for k in spaces]
    unforked.close()


def _first_two_small(cfg):
    """P0, P1 and P2 at most 2"""
    return any(cfg.get(f"P{i}", 1) > 2 for i in range(3)) and "too large"


def test_a_larger_space_is_walked_only_when_its_rules_leave_few_points():
    """Past ENUMERATE_MAX raw points, a space is walked when a seeded sample puts its valid points
    at ENUMERATE_VALID_MAX or fewer (a Hopper GEMM space with widened tiles: 11M raw, ~35k valid),
    and searched by rejection when its rules are loose: walked, it would hold millions of configs."""
    from kernelevolve.tuner.search.space import ENUMERATE_MAX, ENUMERATE_SAMPLED_MAX

    loose = Space(tuple(IntRange(f"P{i}", 1, 16) for i in range(6)))  # 16.8M raw, all valid
    strict = Space(tuple(IntRange(f"P{i}", 1, 16) for i in range(6)), constraints=(_first_two_small,))
    assert ENUMERATE_MAX < loose.size() <= ENUMERATE_SAMPLED_MAX
    assert not loose.enumerable()
    assert strict.enumerable()  # 8 x 16^3 = 32,768 raw points pass: 0.2% of 16.8M
    assert len(strict.valid_configs()) == 8 * 16 ** 3
    assert Space(tuple(IntRange(f"P{i}", 1, 16) for i in range(7)), constraints=(_first_two_small,)).size() \
        > ENUMERATE_SAMPLED_MAX
