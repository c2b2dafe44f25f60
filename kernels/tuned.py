"""Tuned configs at run time: the public entry points (matmul, bmm, dot_interaction, embedding_bag)
ask this module for a config when the caller gives none.

The table is what `kernelevolve export EXPERIMENT -o tuned.json` writes (schema 1):
    {"schema": 1, "entries": [{"kernel", "problem", "shape_bucket", "dtype", "hardware",
                               "device_match", "interpreter", "gpu_name", "triton", "config",
                               "latency_ms", "impl", "triton_config", "triton_latency_ms",
                               "run_id", ...}, ...]}
An entry's `config` is what is dispatched: the fastest correct candidate of its study. For the
GEMM family that may be the vendor library's path, {"IMPL": "vendor"} (impl "vendor": torch.mm /
torch.addmm, timed in the same harness as the Triton candidates, kernels/gemm_vendor.py), and the
entry points then run it; `triton_config` is the fastest Triton config beside it.
It is found through `load_table(path)` (explicit, wins) or the environment variable
KERNELEVOLVE_TUNED (a path, read once per path and modification time). No table: defaults.

Lookup, for one call: the entries of the same kernel and dtype that were tuned on this kind of
device, the nearest shape bucket first (each dimension rounded up to a power of two, distance in
powers of two). A config is only ever taken from an entry whose `device_match` substrings are in
this device's name (e.g. "H100" in "NVIDIA H100 80GB HBM3"); an entry without them, or one tuned
on another GPU kind, never applies: tile and pipeline choices that fit one chip's shared memory
can fail or crawl on another. Interpreter entries apply only under TRITON_INTERPRET=1. Nothing
matching: the caller's safe default. This module imports nothing from the tuner (kernels never do).
"""
from __future__ import annotations

import functools
import json
import math
import os
import threading
import warnings
from typing import Callable

import torch

ENV_VAR = "KERNELEVOLVE_TUNED"
SCHEMA = 1
INTERPRETER = "interpreter"  # the device label of the Triton interpreter on the CPU
_CACHE_MAX = 4096  # lookups remembered per table (shapes vary, e.g. with the batch)


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def is_dim(value) -> bool:
    """Problem fields that are sizes (bucketed), as opposed to dtype, mode, flags."""
    return isinstance(value, int) and not isinstance(value, bool)


def shape_bucket(problem: dict) -> dict:
    """Each size of a problem rounded up to a power of two: configs are shared within a bucket."""
    return {k: next_pow2(v) for k, v in problem.items() if is_dim(v) and v > 0}


def bucket_distance(a: dict, b: dict) -> float:
    """Sum over the sizes of |log2 a - log2 b|; inf when the two name different sizes."""
    if set(a) != set(b):
        return math.inf
    return float(sum(abs(math.log2(a[k]) - math.log2(b[k])) for k in a))


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


class TableError(ValueError):
    """A file that is not a tuned-config table of a schema this code reads."""


class Table:
    def __init__(self, data: dict, source: str = ""):
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise TableError(f"{source or 'table'}: not a tuned-config table of schema {SCHEMA} "
                             f"(schema {found!r}); write one with `kernelevolve export`")
        entries = data.get("entries")
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("config"), dict) and isinstance(e.get("kernel"), str)
                and isinstance(e.get("problem"), dict) for e in entries):
            raise TableError(f"{source or 'table'}: 'entries' must be a list of objects with "
                             "kernel, problem and config")
        self.data, self.source, self.entries = data, source, entries
        self._cache: dict = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str) -> "Table":
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TableError(f"{path}: cannot read a tuned-config table ({type(exc).__name__}: {exc})") from None
        return cls(data, source=path)

    def ranked(self, kernel: str, dims: dict, dtype: str, applies: Callable[[dict], bool],
               extras: dict | None = None) -> list[dict]:
        """Entries of `kernel` and `dtype` that `applies` accepts and that name the same sizes,
        nearest first. Ties: the exact problem, then fewer differing non-size fields (e.g. the
        activation), then the faster entry."""
        want = shape_bucket(dims)
        found = []
        for e in self.entries:
            if e["kernel"] != kernel or e.get("dtype") != dtype or not applies(e):
                continue
            sizes = {k: v for k, v in e["problem"].items() if is_dim(v)}
            dist = bucket_distance(shape_bucket(sizes), want)
            if set(sizes) != set(dims) or math.isinf(dist):
                continue
            exact = 0 if sizes == dict(dims) else 1
            differ = sum(1 for k, v in (extras or {}).items() if e["problem"].get(k) != v)
            latency = e.get("latency_ms")
            found.append(((dist, exact, differ, latency if isinstance(latency, (int, float)) else math.inf), e))
        found.sort(key=lambda pair: pair[0])
        return [e for _, e in found]

    def lookup(self, kernel: str, dims: dict, dtype: str, device_label: str | None,
               extras: dict | None = None) -> dict | None:
        """The nearest entry's config for this device kind, or None (cached per query)."""
        key = (kernel, tuple(sorted(dims.items())), dtype, device_label,
               tuple(sorted((extras or {}).items())))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        best = self.ranked(kernel, dims, dtype, lambda e: entry_applies(e, device_label), extras)
        cfg = dict(best[0]["config"]) if best else None
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = cfg
        return cfg


def entry_applies(entry: dict, device_label: str | None) -> bool:
    """Whether an entry was tuned on this kind of device (see the module docstring)."""
    if device_label is None:
        return False
    if entry.get("interpreter"):
        return device_label == INTERPRETER
    if device_label == INTERPRETER:
        return False
    match = entry.get("device_match")
    return isinstance(match, list) and any(isinstance(m, str) and m and m in device_label for m in match)


@functools.lru_cache(maxsize=None)
def _gpu_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def device_label(device: torch.device) -> str | None:
    """The name table entries are matched against: the GPU's name, INTERPRETER for the Triton
    interpreter on the CPU, None where no kernel of ours runs."""
    if device.type == "cuda":
        return _gpu_name(device.index if device.index is not None else torch.cuda.current_device())
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return INTERPRETER
    return None


_explicit: Table | None = None
_from_env: dict = {}  # (path, mtime) -> Table
_env_warned: set = set()


resolved: dict = {}  # call signature -> config: the operators (kernels/ops) look here on every launch


def load_table(path: str) -> Table:
    """Use this table from now on in this process (over KERNELEVOLVE_TUNED). Raises TableError."""
    global _explicit
    _explicit = Table.from_file(path)
    resolved.clear()
    return _explicit


def clear_table() -> None:
    """Forget a table given by load_table (KERNELEVOLVE_TUNED applies again, if set)."""
    global _explicit
    _explicit = None
    resolved.clear()


def active_table() -> Table | None:
    if _explicit is not None:
        return _explicit
    path = os.environ.get(ENV_VAR)
    if not path:
        return None
    try:
        key = (path, os.path.getmtime(path))
        if key not in _from_env:
            _from_env.clear()
            resolved.clear()
            _from_env[key] = Table.from_file(path)
        return _from_env[key]
    except (OSError, TableError) as exc:
        # An entry point must not fail because of a tuning file: say so once, run the default.
        if path not in _env_warned:
            _env_warned.add(path)
            warnings.warn(f"{ENV_VAR}={path}: {exc}; using default configs", RuntimeWarning, stacklevel=3)
        return None


def config_for(kernel: str, dims: dict, dtype, device: torch.device, default: dict,
               usable: Callable[[dict], bool] | None = None, extras: dict | None = None) -> dict:
    """The tuned config for this call, or `default`: what an entry point launches with when its
    caller gives no config. `usable` rejects a tuned config these very tensors cannot take (e.g.
    TMA on a misaligned view); `extras` are non-size problem fields preferred equal on ties."""
    table = active_table()
    if table is None:
        return default
    cfg = table.lookup(kernel, dims, dtype_name(dtype), device_label(device), extras)
    if cfg is None or (usable is not None and not usable(cfg)):
        return default
    return cfg


def resolve_config(key: tuple, resolve: Callable[[], dict]) -> dict:
    """Remember `resolve()` (config_for of one call) under call signature `key`, which must hold
    everything the answer depends on (the op, its sizes, dtype, device, and whatever a `usable`
    check reads). The registered operators (kernels/ops) look `resolved[key]` up on every launch
    and come here on a miss only, so a launch costs one dictionary lookup. load_table and
    clear_table forget `resolved`; a KERNELEVOLVE_TUNED file changed on disk is seen by
    signatures resolved after the change (clear_table() re-resolves the others)."""
    if len(resolved) >= _CACHE_MAX:
        resolved.clear()
    cfg = resolved[key] = resolve()
    return cfg
