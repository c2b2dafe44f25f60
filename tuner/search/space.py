"""Typed search-space domains, constraints as plain predicates, and the one adapter to Optuna.

A search-space module (search_spaces/<kernel>.py) builds a `Space` from these domains. The
sampler sees each domain in the form that suits it best: a power-of-two tile size is searched as
its exponent (an ordered integer, which TPE, GP, CMA-ES and QMC can exploit), a boolean or an
unordered choice as a categorical. `decode` turns a sampler's point back into the config the
kernel is launched with; that decoded config is what every record shows.

Constraints are module-level predicates `fn(config) -> str | None` (the reason a config is
rejected, or None). They run in the driver before a candidate is scheduled, so an impossible
config costs no compile and no GPU time; and they pickle by reference, which Ray Tune needs when
it checkpoints the searcher.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import optuna.distributions as od

Constraint = Callable[[dict], "str | None"]

# The largest space (raw points) whose valid configs are enumerated: by the searcher, to move a
# proposal to a valid config (tuner.search.constrained), and by the pool samplers, to choose among
# them (tuner.search.pool_sampler). Here, importable without Ray, so both read the one value.
ENUMERATE_MAX = 2_500_000  # raw points: Space.valid_configs walks them as a tree (GEMM spaces of 205k and
# 410k raw points: 0.2-0.9 s on a 2-core CI machine; with Hopper's EPILOGUE_SUBTILE and FLATTEN, 819k and
# 1.6M raw, 14k-22k valid: 1.0-1.5 s); the Hopper conv space (39M raw, 41 s) is searched by rejection.
# A larger space is still walked when its rules leave few points standing, for what the walk costs is
# the points they leave, not the raw count: up to ENUMERATE_SAMPLED_MAX raw points, when a seeded
# sample of SAMPLE_POINTS raw points puts its valid ones at ENUMERATE_VALID_MAX or fewer. The Hopper
# GEMM spaces with widened tiles (EXTRA_M, EXTRA_N) are 11M raw (22M with a staged operand) and
# 21k-40k valid: walked in 0.6-1.3 s on the same kind of machine, the rules pruning the widened tiles
# at the switches they exclude; with two persistent programs an SM (PROGRAMS_PER_SM) and every split
# count up to 8, 44M raw (88M staged) and 27k-90k valid: walked in 3-8 s each on the 2-core machine
# with a test run beside it. (At 25M, the limit before, none of the generated suite's 28 GEMM spaces
# was walked: each was searched by rejection, its sampler's invalid proposals wasted, not moved to
# the nearest valid config.) A space of that many raw points and loose rules is searched by
# rejection, as before: walked, it would hold millions of configs.
ENUMERATE_SAMPLED_MAX = 100_000_000
ENUMERATE_VALID_MAX = 100_000
SAMPLE_POINTS = 4096


_ENUMERATING = threading.Lock()


def bind_rule(fn, problem, hw) -> Constraint:
    """A constraint from a module-level rule fn(cfg, problem, hw): the problem and hardware bound,
    the rule's docstring kept (it is the reason `kernelevolve kernels` prints). A partial of a
    module-level function pickles by reference, as Ray Tune needs."""
    rule = partial(fn, problem=problem, hw=hw)
    rule.__doc__ = fn.__doc__
    return rule


def next_pow2(n: int, low: int = 1) -> int:
    """The smallest power of two >= n, and at least `low`: the extent a tile pads a size to."""
    return max(low, 1 << max(0, (n - 1).bit_length()))


@dataclass(frozen=True)
class Pow2:
    """A power of two in [low, high], searched by its exponent."""

    name: str
    low: int
    high: int

    def __post_init__(self):
        for v in (self.low, self.high):
            if v < 1 or v & (v - 1):
                raise ValueError(f"Pow2 {self.name}: bounds must be powers of two, got {v}")
        if self.low > self.high:
            raise ValueError(f"Pow2 {self.name}: low {self.low} > high {self.high}")

    def distribution(self):
        return od.IntDistribution(self.low.bit_length() - 1, self.high.bit_length() - 1)

    def decode(self, raw):
        return 1 << int(raw)

    def encode(self, value):
        return int(value).bit_length() - 1

    def values(self) -> list:
        return [1 << e for e in range(self.low.bit_length() - 1, self.high.bit_length())]


@dataclass(frozen=True)
class IntRange:
    """An integer in [low, high] (both included), searched as an ordered integer."""

    name: str
    low: int
    high: int

    def distribution(self):
        return od.IntDistribution(self.low, self.high)

    def decode(self, raw):
        return int(raw)

    def encode(self, value):
        return int(value)

    def values(self) -> list:
        return list(range(self.low, self.high + 1))


@dataclass(frozen=True)
class Choice:
    """One of a fixed list of values, unordered (a categorical for the sampler)."""

    name: str
    options: tuple

    def __init__(self, name: str, options: Sequence):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "options", tuple(options))
        if not self.options:
            raise ValueError(f"Choice {name}: no options")

    def distribution(self):
        return od.CategoricalDistribution(self.options)

    def decode(self, raw):
        return raw

    def encode(self, value):
        return value

    def values(self) -> list:
        return list(self.options)


def Bool(name: str) -> Choice:  # noqa: N802 - reads as a domain type in search-space modules
    return Choice(name, (False, True))


@dataclass(frozen=True)
class Const:
    """A fixed value: part of every config, never searched (e.g. num_warps on the interpreter)."""

    name: str
    value: Any

    def values(self) -> list:
        return [self.value]


Domain = Pow2 | IntRange | Choice | Const


@dataclass(frozen=True)
class Space:
    domains: tuple
    constraints: tuple = field(default_factory=tuple)
    notes: str = ""  # why the ranges are what they are, shown by `kernelevolve kernels`
    # functions config -> config: where a switch makes other values irrelevant (BLOCK_Q without
    # activation boxes), a sampler's point is mapped to its one canonical twin, which the
    # constraints accept, instead of being rejected: a sampler then spends its proposals on
    # distinct kernels (the Hopper conv space: 0.5% of raw points valid, most of the rest such twins)
    canonical: tuple = field(default_factory=tuple)
    # parameter -> the value a config without it means: switches a kernel's space gained after
    # configs of it were recorded, tabled or written into experiment files (the kernel launches
    # such a config with its own default; kernels/matmul.py SWITCH_DEFAULTS). Those configs stay
    # usable as start points, warm starts and priors: `complete` reads them as the kernel does.
    defaults: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in space: {names}")

    @property
    def searched(self) -> list:
        return [d for d in self.domains if not isinstance(d, Const)]

    def distributions(self) -> dict:
        """The Optuna form of the searched parameters (what OptunaSearch is given)."""
        return {d.name: d.distribution() for d in self.searched}

    def decode(self, raw: dict) -> dict:
        """A sampler's point -> the config the kernel is launched with (constants included, in its
        canonical form)."""
        cfg = {}
        for d in self.domains:
            cfg[d.name] = d.value if isinstance(d, Const) else d.decode(raw[d.name])
        return self.canonicalize(cfg)

    def complete(self, config: dict) -> dict:
        """config with the `defaults` of the parameters of this space it lacks (itself if none)."""
        names = {d.name for d in self.domains}
        missing = {k: v for k, v in self.defaults.items() if k in names and k not in config}
        return {**config, **missing} if missing else config

    def launched(self, config: dict) -> dict:
        """The config a start point makes the engine launch: completed with the defaults, through
        the sampler's encoding and back (constants set, in canonical form). Two points with one
        launched config are one candidate."""
        return self.decode(self.encode(self.complete(config)))

    def canonicalize(self, config: dict) -> dict:
        for fn in self.canonical:
            config = fn(config)
        return config

    def encode(self, config: dict) -> dict:
        """A launch config -> the sampler's point (for warm starts and enqueued trials)."""
        return {d.name: d.encode(config[d.name]) for d in self.searched}

    def violations(self, config: dict) -> list[str]:
        return [r for r in (c(config) for c in self.constraints) if r]

    def size(self) -> int:
        n = 1
        for d in self.searched:
            n *= len(d.values())
        return n

    def grid(self) -> dict:
        """Every searched parameter's values in sampler form, for Optuna's GridSampler."""
        return {d.name: [d.encode(v) for v in d.values()] for d in self.searched}

    def valid_configs(self) -> list[dict]:
        """Every config that passes the constraints, in the order of itertools.product (copies:
        the set is enumerated once per space and shared by its searcher, its pool sampler and the
        `auto` sampler's choice, whichever thread asks first)."""
        return [dict(c) for c in self._valid()]

    def valid_count(self) -> int:
        """How many configs pass the constraints (the set enumerated once, as valid_configs)."""
        return len(self._valid())

    def enumerable(self) -> bool:
        """Whether its valid configs are enumerated at all: ENUMERATE_MAX raw points at most, or up
        to ENUMERATE_SAMPLED_MAX when a sample of its raw points puts the valid ones at
        ENUMERATE_VALID_MAX or fewer; another space is searched by rejection."""
        raw = self.size()
        if raw <= ENUMERATE_MAX:
            return True
        if raw > ENUMERATE_SAMPLED_MAX:
            return False
        share = self.__dict__.get("_valid_share")
        if share is None:
            share = self._sampled_valid_share()
            object.__setattr__(self, "_valid_share", share)  # frozen: not a field
        return share * raw <= ENUMERATE_VALID_MAX

    def _sampled_valid_share(self) -> float:
        """The share of SAMPLE_POINTS raw points (seeded: the same answer in every process) that
        pass the constraints as they are, as the walk takes them."""
        import random

        rng = random.Random(0)
        domains = [(d.name, d.values()) for d in self.domains]
        ok = sum(not self.violations({n: rng.choice(v) for n, v in domains}) for _ in range(SAMPLE_POINTS))
        return ok / SAMPLE_POINTS

    def adopt_valid(self, configs: list[dict]) -> None:
        """The set enumerated elsewhere (tuner.search.valid_sets: a process forked from this one,
        walking this very space), kept as if walked here: later asks share it."""
        with _ENUMERATING:
            if self.__dict__.get("_valid_cache") is None:
                object.__setattr__(self, "_valid_cache", configs)  # frozen: not a field

    def _valid(self) -> list[dict]:
        cached = self.__dict__.get("_valid_cache")
        if cached is None:
            with _ENUMERATING:  # two threads asking at once: one walk, not two
                cached = self.__dict__.get("_valid_cache")
                if cached is None:
                    cached = self._enumerate()
                    object.__setattr__(self, "_valid_cache", cached)  # frozen: not a field
        return cached

    def __getstate__(self):
        # a pickled space (a searcher's checkpoint) leaves the enumerated set behind: it is rebuilt
        return {k: v for k, v in self.__dict__.items() if k != "_valid_cache"}

    def _enumerate(self) -> list[dict]:
        """Every config that passes the constraints, in the order of itertools.product.

        Evaluating every constraint on every raw config took 10-20 s for a 200k-config GEMM space
        (the sweep's samplers wait on this set to move proposals to valid configs). So the
        configs are walked as a tree, one parameter per level, and each constraint is asked as
        soon as the values it reads are set: a broken rule cuts the whole subtree, a rule that
        passes is not asked again below. A rule is a pure function of the values it reads, so
        its verdict is also remembered by those values (_RuleMemo)."""
        names = [d.name for d in self.domains]
        values = [d.values() for d in self.domains]
        rules = [_RuleMemo(c) for c in self.constraints]
        out: list[dict] = []
        cfg: dict = {}

        def walk(depth: int, undecided: list) -> None:
            if depth == len(names):
                out.append(dict(cfg))
                return
            name, pending = names[depth], frozenset(names[depth + 1:])
            for value in values[depth]:
                cfg[name] = value
                still = []
                for rule in undecided:
                    verdict = rule.partial(cfg, pending)
                    if verdict is _UNDECIDED:
                        still.append(rule)
                    elif verdict:
                        break
                else:
                    walk(depth + 1, still)
            del cfg[name]

        walk(0, rules)
        return out

    def describe(self) -> list[dict]:
        rows = []
        for d in self.domains:
            kind = type(d).__name__
            rows.append({"name": d.name, "kind": kind, "values": d.values()})
        return rows

    def to_json(self) -> str:
        return json.dumps({
            "parameters": self.describe(),
            "constraints": [getattr(c, "__doc__", None) or c.__name__ for c in self.constraints],
            "size": self.size(),
            "notes": self.notes,
        }, indent=2, default=str)


_ABSENT = object()
_UNDECIDED = object()


class _Incomplete(BaseException):
    """A rule read a parameter not set yet (a BaseException: a rule's `except Exception` must
    not swallow it)."""


class _Reads(dict):
    """A config that records which of its keys a constraint reads (every key, if it iterates);
    reading one of `pending` (parameters of the space not set yet) raises _Incomplete."""

    def __init__(self, cfg: dict, pending: frozenset = frozenset()):
        super().__init__(cfg)
        self.read: list = []
        self.all = False
        self.pending = pending

    def _note(self, key):
        if key in self.pending:
            raise _Incomplete
        self.read.append(key)

    def __getitem__(self, key):
        self._note(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._note(key)
        return dict.get(self, key, default)

    def __contains__(self, key):
        self._note(key)
        return dict.__contains__(self, key)

    def __iter__(self):
        self._whole()
        return dict.__iter__(self)

    def __len__(self):
        self._whole()
        return dict.__len__(self)

    def __eq__(self, other):
        self._whole()
        return dict.__eq__(self, other)

    __hash__ = None

    def _whole(self):
        if self.pending:
            raise _Incomplete
        self.all = True

    def keys(self):
        self._whole()
        return dict.keys(self)

    def items(self):
        self._whole()
        return dict.items(self)

    def values(self):
        self._whole()
        return dict.values(self)

    def copy(self):
        self._whole()
        return dict(dict.items(self))


class _RuleMemo:
    """A constraint's verdicts, remembered by the values of the keys it read.

    A constraint is a pure function of the config: a config that agrees with an earlier one on
    every key that earlier call read takes the same path through the rule and gets the same
    verdict, so the rule runs once per distinct path and values, not once per config."""

    def __init__(self, rule):
        self.rule = rule
        self.paths: dict[tuple, dict] = {}  # keys one call read -> {their values: verdict}

    def __call__(self, cfg: dict):
        return self.partial(cfg, frozenset())

    def partial(self, cfg: dict, pending: frozenset):
        """The verdict for every config that extends `cfg` (whose parameters in `pending` are not
        set yet), or _UNDECIDED when the rule reads one of those."""
        for keys, seen in self.paths.items():
            # a remembered path reads only keys that were set (or are not in the space at all)
            verdict = seen.get(tuple(cfg.get(k, _ABSENT) for k in keys), _ABSENT)
            if verdict is not _ABSENT:
                return verdict
        probe = _Reads(cfg, pending)
        try:
            verdict = self.rule(probe)
        except _Incomplete:
            return _UNDECIDED
        keys = tuple(cfg) if probe.all else tuple(dict.fromkeys(probe.read))
        self.paths.setdefault(keys, {})[tuple(cfg.get(k, _ABSENT) for k in keys)] = verdict
        return verdict


def config_key(config: dict) -> str:
    """A canonical string for a config: equal configs, equal keys (dedup, journals, caches)."""
    return json.dumps(config, sort_keys=True, default=str)
