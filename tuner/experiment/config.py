"""Experiment files: YAML -> a frozen, validated `Experiment`, or one clear `ConfigError`.

Every error names the file, the field and what to do, and is raised before Ray starts. The
loader also resolves what a sweep needs to be reproducible: each kernel's canonical reference,
each problem validated by the kernel's own problem model, each target's hardware profile.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from kernelevolve.tuner.experiment import hardware, registry
from kernelevolve.tuner.measure import clocks
from kernelevolve.tuner.search.samplers import NONE, SAMPLERS
from kernelevolve.tuner.search.space import config_key

_STRICT = ConfigDict(extra="forbid", frozen=True)


class ConfigError(Exception):
    """A user error in an experiment file: printed as one message, exit code 2."""


# Bounds on the numbers an experiment may hold: beyond them a value is a typo (1e308 seconds, 1e23
# samples), and letting it through would fail much later, inside Ray or a kernel launch.
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # one candidate: a week
MAX_SAMPLES = 1_000_000
MAX_CONCURRENCY = 4096
MAX_SEED = 2**32 - 1  # numpy's and Optuna's seeds
MAX_PROBLEM_INT = 2**31 - 1  # a problem size (M, rows, batch, ...): a 32-bit index
MAX_TIMING_MS = 600_000.0
MAX_RESOURCE = 1_000_000.0


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with the same key twice (YAML keeps the last one
    silently: `samples: 12` then `samples: 200` would sweep 200)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _read_yaml(fh):
    return yaml.load(fh, Loader=_UniqueKeyLoader)  # a SafeLoader: a file cannot construct objects


class KernelEntry(BaseModel):
    model_config = _STRICT
    kernel: str = Field(min_length=1)
    problems: list[dict[str, Any]] = Field(min_length=1)
    # this kernel's configs evaluated first, before search.start_points (which every kernel of the
    # file must accept: in a file of several kernels, known-good configs belong here)
    start_points: list[dict[str, Any]] = []


class Target(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1)
    hardware: str | None = None  # a profile in tuner.experiment.hardware.PROFILES; defaults to `name`
    resources: dict[str, float] | None = None  # Ray resources one candidate takes

    @property
    def profile(self) -> hardware.Hardware:
        return hardware.profile(self.hardware or self.name)

    def ray_resources(self) -> dict[str, float]:
        if self.resources is not None:
            return dict(self.resources)
        return {"CPU": 1.0} if self.profile.interpreter else {"CPU": 1.0, "GPU": 1.0}


class Search(BaseModel):
    model_config = _STRICT
    # "auto": the learned sampler for a space of >= 2,000 valid configs, else TPE (tuner.search.samplers);
    # "none": each study evaluates its start points and nothing else
    sampler: str = "auto"
    # candidates evaluated per study; grid: the whole grid; none: the study's start points
    samples: PositiveInt | None = Field(default=None, le=MAX_SAMPLES)
    concurrency: PositiveInt = Field(default=1, le=MAX_CONCURRENCY)
    # Candidates of a study evaluated by one Ray Tune trial (at most `concurrency`); None: half the
    # concurrency, at most 8 (tuner.search.protocol.batch_size says why trials carry several)
    candidates_per_trial: PositiveInt | None = Field(default=None, le=MAX_CONCURRENCY)
    # The sampler hears results in the order it proposed them, each when the proposal
    # `concurrency` places later is made (tuner.search.constrained: ordered): the same file then
    # proposes the same candidates however many run at once and whatever order they end in.
    # false: each result is told as it arrives (a slow candidate never holds its study back).
    ordered: bool = True
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    timeout_s: float = Field(default=300.0, gt=0, le=MAX_TIMEOUT_S)  # one candidate's limit, compile included
    top_k: PositiveInt = Field(default=3, le=1000)  # re-timed together at the end of each study
    # constraint-rejected or duplicate proposals per candidate
    max_rejects: PositiveInt = Field(default=2000, le=10_000_000)
    retries: int = Field(default=1, ge=0, le=5)  # re-runs of a candidate whose worker process died
    start_points: list[dict[str, Any]] = []  # configs evaluated first, in order (warm start)
    # each kernel's own generic starting configs (registry.Tunable.start: shape-generic tiles, as
    # Triton's tutorial list), evaluated after start_points and before the sampler proposes
    kernel_starts: bool = True
    # A tuned-config table (`kernelevolve export`, relative to this file): its configs for the
    # nearest shapes of the same kernel, dtype and hardware that a study's space accepts are
    # evaluated first, after start_points (tuner/deploy/export.py: warm_start_points).
    warm_start: str | None = None
    # Recorded spaces (`kernelevolve dataset`: a *.jsonl.gz file or a folder of them, relative to
    # this file): the learned sampler of each study is fit first on those of the study's kernel at
    # other shapes or on other GPU kinds, never on its own problem and hardware (tuner/search/prior.py).
    # With a prior, "auto" searches with the learned sampler whatever the size of the space.
    prior: str | None = None


class Timing(BaseModel):
    model_config = _STRICT
    # GPU: the named clock (tuner/measure/clocks.py). "do_bench": events, L2 flushed by zeroing
    # (the timed kernel pays the write-back of ~50 MB of dirty lines); "clean": a read-only flush,
    # each call charged its own write-back, for short memory-bound kernels; "cudagraph": replays in
    # a CUDA graph, no host launch cost, for kernels of a few microseconds; "auto": cudagraph for a
    # study whose roofline time is under clocks.SHORT_KERNEL_US, else long_clock, fixed per study
    # before its search (clocks.choose_clock). The interpreter: wall.
    clock: Literal[clocks.TIMING_CLOCKS] = "do_bench"
    long_clock: Literal[clocks.LONG_CLOCKS] = "clean"  # auto's clock for the studies above the threshold
    warmup_ms: float = Field(default=25, gt=0, le=MAX_TIMING_MS)  # GPU: warm-up, excluded from the figures
    rep_ms: float = Field(default=100, gt=0, le=MAX_TIMING_MS)  # GPU: timed repetitions per candidate
    # GPU: the end-of-study re-timing of the top-k (interleaved with the peer): its own budget, so
    # a sweep can screen candidates with a short rep_ms and still time its finalists in full
    retime_rep_ms: float = Field(default=100, gt=0, le=MAX_TIMING_MS)
    wall_reps: PositiveInt = Field(default=3, le=10_000)  # interpreter: timed runs after one warm-up
    retime_rounds: PositiveInt = Field(default=5, le=10_000)  # interleaved rounds of the top-k and the peer

    @model_validator(mode="after")
    def _long_clock_with_auto(self):
        if self.long_clock != Timing.model_fields["long_clock"].default and self.clock != clocks.AUTO:
            raise ValueError(f"long_clock is the clock of `clock: auto`'s longer studies; with clock: "
                             f"{self.clock} it would not be used (set clock: auto, or leave long_clock out)")
        return self

    def bench_settings(self, clock: str) -> dict:
        """What a worker times a candidate with (tuner/measure/evaluate.py reads it), by the clock
        the study resolved (Study.clock; `kernelevolve reproduce`: the one its parent run logged)."""
        return {"clock": clock, "warmup_ms": self.warmup_ms, "rep_ms": self.rep_ms,
                "retime_rep_ms": self.retime_rep_ms, "wall_reps": self.wall_reps}


class Profiling(BaseModel):
    """Hardware counters of each study's finalists (tuner/profile: Nsight Compute), read after the
    study's end-of-study re-timing, in a separate pass: never part of what is timed. GPU targets."""
    model_config = _STRICT
    top_k: int = Field(default=0, ge=0, le=1000)  # 0: off; else the fastest re-timed finalists profiled
    calls: PositiveInt = Field(default=3, le=1000)  # launcher calls profiled per finalist
    timeout_s: float = Field(default=900.0, gt=0, le=MAX_TIMEOUT_S)  # ncu's limit per finalist
    # Feedback into the search (tuner/search/steering.py): every steer_every candidates of a study,
    # its best so far is profiled and the rules for its label propose the next configs. Off by default.
    steer: bool = False
    steer_every: PositiveInt = Field(default=16, le=MAX_SAMPLES)


class Tracking(BaseModel):
    model_config = _STRICT
    uri: str = "sqlite:///mlflow.db"


class RayOptions(BaseModel):
    model_config = _STRICT
    address: str | None = None  # None: a local Ray on this machine, no set-up


class Experiment(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    kernels: list[KernelEntry] = Field(min_length=1)
    targets: list[Target] = Field(min_length=1)
    search: Search = Search()
    timing: Timing = Timing()
    profile: Profiling = Profiling()
    tracking: Tracking = Tracking()
    ray: RayOptions = RayOptions()
    # Filled by load(): canonical kernel refs, in the order of `kernels`.
    kernel_refs: tuple[str, ...] = ()
    source_path: str = ""

    @model_validator(mode="after")
    def _search_budget(self):
        s = self.search
        if s.samples is not None and s.concurrency > s.samples:
            raise ValueError(f"search.concurrency ({s.concurrency}) exceeds search.samples ({s.samples}); "
                             "lower concurrency or raise samples")
        return self

    def studies(self):
        """One study per (kernel, problem, target), in file order."""
        for entry, ref in zip(self.kernels, self.kernel_refs):
            tunable = registry.load(ref)
            for raw in entry.problems:
                problem = tunable.kernel.problem(**raw)
                for target in self.targets:
                    yield Study(self, entry.kernel, ref, tunable, problem, target, entry.start_points)


class Study:
    """One (kernel, problem, target) of an experiment: what the driver sweeps as a unit."""

    def __init__(self, exp, kernel_name, ref, tunable, problem, target, kernel_start_points=()):
        self.experiment, self.kernel_name, self.ref = exp, kernel_name, ref
        self.tunable, self.problem, self.target = tunable, problem, target
        self.space = tunable.space(problem, target.profile)
        self.kernel_start_points = list(kernel_start_points)

    @functools.cached_property
    def clock(self) -> clocks.ClockChoice:
        """The clock this study is timed with, fixed before its search (`timing.clock: auto` is
        resolved here, from the study's roofline: the same file on the same target, the same clock)."""
        t = self.experiment.timing
        return clocks.choose_clock(t.clock, t.long_clock, self.tunable.kernel, self.problem, self.target.profile)

    def bench_settings(self) -> dict:
        """What every candidate, the finalists' re-timing and the peer of this study are timed with."""
        return self.experiment.timing.bench_settings(self.clock.clock)

    @property
    def problem_key(self) -> str:
        return "_".join(f"{k}{v}" if k != "dtype" else str(v)
                        for k, v in self.problem.model_dump().items())

    @property
    def key(self) -> str:
        return f"{self.kernel_name}/{self.problem_key}/{self.target.name}"

    @functools.cached_property
    def start_points(self) -> list[dict]:
        """The configs this study evaluates first (a warm start's come after them: the sweep
        chooses those, tuner.execution.studies)."""
        return start_points_of(self.space, self.tunable, self.problem, self.target.profile,
                               self.kernel_start_points, self.experiment.search)

    def budget(self) -> int:
        s = self.experiment.search
        if s.sampler == NONE:  # its start points and nothing else
            return len(self.start_points)
        if s.sampler == "grid":
            return s.samples or len(self.space.valid_configs())
        return s.samples or 32


def start_points_of(space, tunable, problem, hw, entry_points, search: Search) -> list[dict]:
    """A study's start points, in order: its kernel entry's, the search's, then with
    search.kernel_starts the kernel's own (registry.Tunable.start). Each is completed with the
    space's defaults (a point written before a switch existed means it off) and kept once per
    config it launches: two points that decode to one canonical config are one candidate, and
    the second would only come back to the searcher as a repeat."""
    given = [*entry_points, *search.start_points]
    if search.kernel_starts and tunable.start is not None:
        given += tunable.start(problem, hw)
    points, launched = [], set()
    for point in map(space.complete, given):
        key = config_key(space.launched(point))
        if key not in launched:
            launched.add(key)
            points.append(point)
    return points


def _where(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fail(path: str, field: str, msg: str, fix: str = "") -> ConfigError:
    return ConfigError(f"{path}: {field}: {msg}" + (f" ({fix})" if fix else ""))


def load(path: str) -> Experiment:
    """Read and validate an experiment file. Raises ConfigError with file, field and fix."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such experiment file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = _read_yaml(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with name, kernels, targets "
                          f"(got {type(data).__name__})")
    try:
        exp = Experiment(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise _fail(path, _where(err["loc"]), err["msg"] + more,
                    "allowed keys are those of the example experiments/quickstart.yaml"
                    if err["type"] == "extra_forbidden" else "") from None
    except TypeError as exc:  # e.g. a non-string key at the top level
        raise ConfigError(f"{path}: {exc}") from None
    return _resolve(exp, path)


def _checked_path(path: str, base: str, field: str, value: str, load, errors, hint: str) -> str:
    """A file the experiment names (relative to the experiment file), read once to check it: its
    absolute path, so that the sweep and the logged experiment YAML do not depend on the cwd; a
    file that `load` refuses is one clear error naming the field."""
    resolved = os.path.normpath(os.path.join(base, value))
    try:
        load(resolved)
    except errors as exc:
        raise _fail(path, field, str(exc), hint) from None
    return resolved


def _resolve(exp: Experiment, path: str) -> Experiment:
    base = os.path.dirname(os.path.abspath(path))
    s = exp.search
    if s.sampler not in SAMPLERS:
        raise _fail(path, "search.sampler", f"unknown sampler '{s.sampler}'",
                    "choose one of " + ", ".join(SAMPLERS))
    if s.sampler == NONE:  # each study's budget is its start points: nothing may add to or cut them
        only = "sampler none evaluates each study's start points and nothing else"
        if s.samples is not None:
            raise _fail(path, "search.samples", f"{only}: its budget is their number", "leave samples out")
        if s.warm_start is not None:
            raise _fail(path, "search.warm_start", f"{only}, as the file lists them (a warm start's "
                        "configs are chosen when the sweep starts)", "list them as start_points")
        if exp.profile.steer:
            raise _fail(path, "profile.steer", f"{only} (steering proposes configs of its own)",
                        "leave steer out")
    for i, t in enumerate(exp.targets):
        prof = t.hardware or t.name
        if prof not in hardware.PROFILES:
            raise _fail(path, f"targets[{i}]", f"unknown hardware '{prof}'",
                        "name one of " + ", ".join(hardware.PROFILES) + " as name or hardware")
        if t.resources is not None and any(v < 0 for v in t.resources.values()):
            raise _fail(path, f"targets[{i}].resources", "resource amounts must be >= 0")
        for k, v in (t.resources or {}).items():
            if not math.isfinite(v) or v > MAX_RESOURCE:
                raise _fail(path, f"targets[{i}].resources.{k}", f"{v:g} is out of range",
                            f"at most {MAX_RESOURCE:g}")
    names = [t.name for t in exp.targets]
    if len(set(names)) != len(names):
        raise _fail(path, "targets", f"target names repeat: {names}")
    if s.warm_start is not None:
        from kernelevolve.kernels.tuned import Table, TableError

        s = s.model_copy(update={"warm_start": _checked_path(
            path, base, "search.warm_start", s.warm_start, Table.from_file, TableError,
            "name a table written by `kernelevolve export EXPERIMENT -o tuned.json`")})
    if s.prior is not None:
        from kernelevolve.tuner.records.recorded_space import RecordedSpaceError
        from kernelevolve.tuner.search import prior as prior_mod
        from kernelevolve.tuner.search.samplers import PRIOR_AWARE

        if s.sampler not in PRIOR_AWARE:
            raise _fail(path, "search.prior", f"the {s.sampler} sampler learns nothing from recorded spaces",
                        "a prior is what the learned sampler is fit on first: set sampler: auto or "
                        "learned, or leave prior out")
        s = s.model_copy(update={"prior": _checked_path(
            path, base, "search.prior", s.prior, prior_mod.load, RecordedSpaceError,
            "name a recorded space written by `kernelevolve dataset`, or a folder of them")})
    exp = exp.model_copy(update={"search": s})
    refs = []
    for i, entry in enumerate(exp.kernels):
        try:
            ref = registry.resolve_ref(entry.kernel, base)
            tunable = registry.load(ref)
        except registry.KernelNotFound as exc:
            raise _fail(path, f"kernels[{i}].kernel", str(exc)) from None
        for j, raw in enumerate(entry.problems):
            try:
                problem = tunable.kernel.problem(**raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise _fail(path, f"kernels[{i}].problems[{j}].{_where(err['loc'])}", err["msg"],
                            f"a {entry.kernel} problem has fields "
                            + ", ".join(tunable.kernel.problem.model_fields)) from None
            except TypeError as exc:
                raise _fail(path, f"kernels[{i}].problems[{j}]", str(exc)) from None
            for k, v in problem.model_dump().items():
                where = f"kernels[{i}].problems[{j}].{k}"
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_PROBLEM_INT:
                    raise _fail(path, where, f"{v:.3g} is out of range",
                                f"a problem size is at most {MAX_PROBLEM_INT}")
                if isinstance(v, float) and not math.isfinite(v):
                    raise _fail(path, where, f"{v} is not a finite number")
            for t in exp.targets:
                sp = tunable.space(problem, t.profile)
                names = {d.name for d in sp.domains}
                points = [(f"kernels[{i}].start_points[{k}]", p) for k, p in enumerate(entry.start_points)]
                points += [(f"search.start_points[{k}]", p) for k, p in enumerate(s.start_points)]
                for where, point in points:
                    point = sp.complete(point)
                    if set(point) != names:
                        raise _fail(path, where, f"keys {sorted(point)} are not the parameters of "
                                    f"{entry.kernel}'s space", "expected " + ", ".join(sorted(names)))
                    if sp.violations(point):
                        raise _fail(path, where, "; ".join(sp.violations(point)))
                if s.sampler == NONE and not start_points_of(sp, tunable, problem, t.profile,
                                                             entry.start_points, s):
                    raise _fail(path, f"kernels[{i}].start_points", f"sampler none evaluates start "
                                f"points only, and {entry.kernel} {raw} on {t.name} has none",
                                "list the configs to evaluate in the kernel's start_points")
            if s.sampler == "grid":
                for t in exp.targets:
                    n = len(tunable.space(problem, t.profile).valid_configs())
                    if s.samples is not None and s.samples != n:
                        raise _fail(path, "search.samples",
                                    f"the grid sampler is exhaustive: {entry.kernel} {raw} on "
                                    f"{t.name} has {n} valid configs, samples is {s.samples}",
                                    f"set samples: {n} or leave it out")
        refs.append(ref)
    return exp.model_copy(update={"kernel_refs": tuple(refs), "source_path": os.path.abspath(path)})


def dump(exp: Experiment) -> str:
    """The resolved experiment as YAML (logged with every study so a sweep can be reproduced)."""
    data = exp.model_dump(exclude={"kernel_refs", "source_path"})
    data["resolved_kernels"] = list(exp.kernel_refs)
    return yaml.safe_dump(data, sort_keys=False)


def check_gpu_targets(exp, address: str | None) -> None:
    """A GPU target on a machine whose torch sees no GPU, with no cluster to join: the
    experiment file's error (file, targets[i]), before Ray starts. With an address the cluster's
    nodes may have GPUs: the sweep checks its resources then."""
    if address or exp.ray.address:
        return
    gpu_targets = [(i, t) for i, t in enumerate(exp.targets)
                   if not t.profile.interpreter and t.ray_resources().get("GPU", 0) > 0]
    if not gpu_targets:
        return
    import torch

    if torch.cuda.is_available():
        return
    i, t = gpu_targets[0]
    raise ConfigError(
        f"{exp.source_path}: targets[{i}]: '{t.name}' is a GPU target ({t.profile.name}: needs "
        f"GPU={t.ray_resources()['GPU']:g} per candidate) and torch sees no GPU on this machine (run it on a GPU machine, join a Ray cluster with GPUs with "
        "--address or ray.address, or use {name: cpu-interpreter})")
