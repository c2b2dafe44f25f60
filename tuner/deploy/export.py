"""From a sweep to production: the tuned-config table, its @triton.autotune form, and warm starts.

`kernelevolve export EXPERIMENT -o tuned.json` reads the newest parent run of each study from
MLflow (its `best.*` params and `best_latency_ms`, i.e. the re-timed winner, verified correct) and
writes one versioned table (kernels/tuned.py reads it; the format is described there). Each entry
says what it was tuned on: the hardware profile, the substrings that identify that GPU kind
(`device_match`, from tuner.experiment.hardware: the one place they are defined), the GPU's name and the
Triton and torch versions. `--triton-configs` writes the same winners as Python lists of
`triton.Config`, for users of @triton.autotune.

An entry's config is what is dispatched: for a GEMM study, the vendor library's path
({"IMPL": "vendor"}, `impl: vendor`) where that was the fastest correct candidate. Each entry also
carries the fastest Triton config (`triton_config`, `triton_latency_ms`), which `--triton-configs`
and warm starts use instead (a vendor path is no triton.Config and no point of a search space).

A new sweep warm-starts from a table with `search: {warm_start: tuned.json}`: the configs of the
same kernel, dtype and hardware profile, nearest shapes first, that the new study's space accepts
(its parameters, their values, its constraints) are evaluated first (tuner.execution.sweep).
"""
from __future__ import annotations

import json
import math
import re
import time

from kernelevolve.kernels.tuned import SCHEMA, Table, shape_bucket
from kernelevolve.tuner.experiment import hardware, registry
from kernelevolve.tuner.records.tracking import _value

# Triton launch options: arguments of triton.Config; every other config key is a constexpr.
LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg")
WARM_START_MAX = 8  # configs a warm start enqueues at most (and never more than half the budget)


class NothingToExport(Exception):
    """The experiment has no study with a correct best config: a user error (exit 2)."""


def _kernel_name(tags: dict) -> str:
    """The registry name for built-in kernels (what entry points look up), whatever the YAML
    called them; a user's own kernel keeps the name its experiment gave it."""
    ref = registry.current_ref(tags.get("kernel_ref", ""))
    by_ref = {v: k for k, v in registry.BUILTIN.items()}
    return by_ref.get(ref, tags.get("kernel", ref))


def entry_of(run) -> dict | None:
    """One table entry from a study's parent run, or None when it has no best config."""
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    config = {k[len("best."):]: _value(v) for k, v in params.items() if k.startswith("best.")}
    if not config:
        return None
    # `config` is what is dispatched: the fastest correct candidate, a GEMM's vendor path
    # ({"IMPL": "vendor"}) where that won; the fastest Triton config is kept beside it
    impl = tags.get("best_impl") or "triton"
    triton = {k[len("best_triton."):]: _value(v) for k, v in params.items() if k.startswith("best_triton.")}
    triton_ms = metrics.get("best_triton_latency_ms")
    problem = {k[len("problem."):]: _value(v) for k, v in params.items() if k.startswith("problem.")}
    hw_name = tags.get("hardware", "")
    hw = hardware.PROFILES.get(hw_name)
    latency = metrics.get("best_latency_ms")
    return {
        "kernel": _kernel_name(tags), "problem": problem, "shape_bucket": shape_bucket(problem),
        "dtype": problem.get("dtype"), "hardware": hw_name,
        # no profile, no device_match: such an entry never applies on a GPU (kernels/tuned.py)
        "device_match": list(hw.device_match) if hw else [],
        "interpreter": bool(hw and hw.interpreter), "timing": tags.get("timing", ""),
        "gpu_name": tags.get("gpu_name", ""), "triton": tags.get("triton", ""),
        "torch": tags.get("torch", ""), "config": config,
        "latency_ms": latency if isinstance(latency, float) and math.isfinite(latency) else None,
        "impl": impl,
        "triton_config": triton or (config if impl == "triton" else None),
        "triton_latency_ms": triton_ms if isinstance(triton_ms, float) and math.isfinite(triton_ms) else (
            latency if impl == "triton" and isinstance(latency, float) and math.isfinite(latency) else None),
        "run_id": run.info.run_id, "study": tags.get("kernelevolve.study", ""),
        "kernel_source_sha": tags.get("kernel_source_sha", ""),
    }


def build_table(uri: str, experiment: str) -> dict:
    """The table of an experiment's newest studies (raises report.UnknownExperiment, or
    NothingToExport when no study has a correct best config)."""
    from kernelevolve.tuner.review import report

    client, experiment_id = report.open_experiment(uri, experiment)
    runs = report.study_runs(client, experiment_id)
    entries = [e for e in (entry_of(r) for r in runs.values()) if e is not None]
    if not entries:
        raise NothingToExport(f"experiment '{experiment}' has no study with a correct best config "
                              f"({len(runs)} studies in the store)")
    entries.sort(key=lambda e: (e["kernel"], e["hardware"], str(e["dtype"]),
                                json.dumps(e["problem"], sort_keys=True)))
    table = {"schema": SCHEMA, "experiment": experiment,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "entries": entries}
    Table(table)  # what we write, kernels/tuned.py must read
    return table


def _identifier(*parts) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "_", "_".join(str(p) for p in parts if p)).strip("_").upper()
    return name if name[:1].isalpha() else "CONFIGS_" + name


def _literal(value) -> str:
    """A Python literal for a config value: data whatever the store held (repr of the plain types;
    anything else becomes its string, itself a repr'd literal)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(str(value))


def _text(value) -> str:
    """Text from the store for a comment or the docstring: one line, ASCII, quotes escaped (so
    neither a newline nor a closing triple quote can end the comment or the docstring)."""
    return json.dumps(str(value), ensure_ascii=True)[1:-1]


def triton_configs_source(table: dict) -> str:
    """Python source: one list of triton.Config per (kernel, hardware, dtype), fastest first."""
    groups: dict[str, list[dict]] = {}
    for e in table["entries"]:
        groups.setdefault(_identifier(e["kernel"], e["hardware"], e["dtype"]), []).append(e)
    # Every value from the store is written as a literal (_literal) or escaped text (_text): the
    # file is imported by its users, and a tag or param must never become code in it.
    lines = [f'"""Tuned configs of experiment "{_text(table.get("experiment", ""))}", written by '
             f'`kernelevolve export` ({_text(table.get("created", ""))}).',
             "",
             "One list per kernel, hardware and dtype, fastest first, for @triton.autotune(configs=...).",
             "Keys other than the launch options are the constexprs of kernelevolve's templates",
             '(kernels/<kernel>.py); a kernel of your own takes those it declares."""',
             "import triton", ""]
    for name, entries in sorted(groups.items()):
        # Triton configs only: where the vendor library won, its entry's fastest Triton config
        entries = [{**e, "config": triton_config_of(e), "latency_ms": e.get("triton_latency_ms")}
                   if e.get("impl") == "vendor" else e for e in entries]
        entries = sorted((e for e in entries if e["config"]),
                         key=lambda e: e["latency_ms"] if e["latency_ms"] is not None else math.inf)
        lines.append(f"{name} = [")
        seen = set()
        for e in entries:
            cfg = e["config"]
            key = json.dumps(cfg, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            consts = {k: v for k, v in cfg.items() if k not in LAUNCH_OPTIONS}
            opts = "".join(f", {k}={_literal(cfg[k])}" for k in LAUNCH_OPTIONS if k in cfg)
            shape = " ".join(f"{k}={v}" for k, v in e["problem"].items())
            ms = f"{e['latency_ms']:.4g} ms" if isinstance(e["latency_ms"], (int, float)) else "no latency"
            lines.append(f"    triton.Config({_literal(consts)}{opts}),  # " + _text(
                f"{shape}: {ms} on {e['gpu_name'] or e['hardware']} (run {str(e['run_id'])[:12]})"))
        lines += ["]", ""]
    return "\n".join(lines)


def triton_config_of(entry: dict) -> dict | None:
    """An entry's fastest Triton config: its own config unless the vendor library won there."""
    if entry.get("impl", "triton") != "vendor":
        return entry.get("config")
    return entry.get("triton_config") or None


def write(table: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(table, fh, indent=1, sort_keys=False)
        fh.write("\n")


# -- warm start -------------------------------------------------------------------------------
def fits(space, config: dict) -> list[str]:
    """Why a config from a table is not a point of `space` (empty when it is one): the same
    parameters, each value one its domain offers, no constraint broken."""
    names = {d.name for d in space.domains}
    config = space.complete(config)  # a table written before the space gained a switch
    if set(config) != names:
        return [f"parameters {sorted(config)} are not the space's {sorted(names)}"]
    bad = [f"{d.name}={config[d.name]!r} is not among {d.values()}" for d in space.domains
           if config[d.name] not in d.values()]
    return bad or space.violations(config)


def warm_start_points(path: str, study, limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """(configs to evaluate first, the table entries they came from with why others were left
    out) for one study: same kernel, dtype and hardware profile, nearest shape bucket first."""
    table = Table.from_file(path)
    problem = study.problem.model_dump()
    dims = {k: v for k, v in problem.items() if isinstance(v, int) and not isinstance(v, bool)}
    extras = {k: v for k, v in problem.items() if k not in dims}
    hw = study.target.profile.name
    entries = table.ranked(_kernel_name({"kernel_ref": study.ref, "kernel": study.kernel_name}),
                           dims, problem.get("dtype"), lambda e: e.get("hardware") == hw, extras)
    budget = study.budget()
    limit = limit if limit is not None else max(1, min(WARM_START_MAX, budget // 2))
    points, notes, seen = [], [], set()
    for e in entries:
        # a study evaluates its vendor path anyway: what warms its sampler is a Triton config
        config = study.space.complete(triton_config_of(e) or {})
        why = fits(study.space, config)
        key = json.dumps(config, sort_keys=True)
        used = not why and key not in seen and len(points) < limit
        if used:
            points.append(dict(config))
            seen.add(key)
        notes.append({"problem": e["problem"], "run_id": e.get("run_id"), "config": e["config"],
                      "used": used, "why_not": "; ".join(why) if why else
                      ("" if used else "duplicate or over the limit")})
    return points, notes
