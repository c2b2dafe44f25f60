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

import itertools
import json
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import optuna.distributions as od

Constraint = Callable[[dict], "str | None"]

# The largest space (raw points) whose valid configs are enumerated: by the searcher, to move a
# proposal to a valid config (tuner.search.constrained), and by the pool samplers, to choose among
# them (tuner.search.pool_sampler). Here, importable without Ray, so both read the one value.
ENUMERATE_MAX = 250_000  # raw points: the GEMM space (205k, ~3.5% valid) enumerates in ~1 s on the H100 host;
# the odd-K GEMM space (410k, with STAGE_A) took long enough to delay a sweep's start and is searched by rejection


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
        """Every config that passes the constraints (for exhaustive use on small spaces)."""
        names = [d.name for d in self.domains]
        out = []
        for combo in itertools.product(*(d.values() for d in self.domains)):
            cfg = dict(zip(names, combo))
            if not self.violations(cfg):
                out.append(cfg)
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


def config_key(config: dict) -> str:
    """A canonical string for a config: equal configs, equal keys (dedup, journals, caches)."""
    return json.dumps(config, sort_keys=True, default=str)
