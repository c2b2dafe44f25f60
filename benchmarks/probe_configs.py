"""Verify and time an explicit list of configs of a kernel beside its library peer, through the product's engine.

For questions a search answers badly ("does switch X help on this layer at all?"). The plan is
swept as ONE experiment of `kernelevolve run`'s engine (benchmarks/engine.py): each item a kernel
entry with its configs as start points, `search.sampler: none` (nothing evaluated but them) and
`top_k` covering them all, so each is verified in an isolated worker and re-timed interleaved
with the kernel's peer on the study's clock (a built-in GEMM's vendor config too, as in every
GEMM study). Each row names its candidate's MLflow child run and its study's parent run; a config
the kernel's space refuses is a row `invalid` with the reason (the engine never runs it).

  python benchmarks/probe_configs.py --plan plan.json --out DIR [--clock auto] [--target h100]
      [--tracking-uri URI]
plan.json: [{"kernel": "conv2d", "label": "...", "problem": {...}, "configs": [{...}, ...]}, ...]
Writes DIR/probe.json (every row), the sweep's exp.yaml and, by default, its MLflow store
DIR/mlflow.db, and prints one line per config.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import engine  # noqa: E402

ITEM_KEYS = {"kernel", "label", "problem", "configs"}
CONCURRENCY = 8  # configs of a study in flight (compiling ahead of the GPU's lane), as the suites


class PlanError(Exception):
    """A plan that cannot be probed: one line, exit code 2."""


@dataclass
class Probe:
    """A plan as the engine sweeps it."""

    experiment: dict  # the experiment (the schema of experiments/*.yaml)
    swept: list[int]  # the plan item of each of its kernel entries (one study each), in order
    # per config of the plan, in its order: label, item, config as written, and either `launched`
    # (the config the engine launches for it: the space's complete, canonical form) or `error`
    # (why the kernel's space refuses it)
    configs: list[dict]


def read_plan(path: str) -> list[dict]:
    """The plan file's items, each checked for shape (the kernel and its problem are checked by build)."""
    try:
        plan = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan ({exc.strerror})") from None
    except ValueError as exc:
        raise PlanError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(plan, list) or not plan:
        raise PlanError(f"{path}: a plan is a non-empty list of items "
                        '{"kernel", "label", "problem", "configs"}')
    for i, item in enumerate(plan):
        if not isinstance(item, dict) or not {"kernel", "problem", "configs"} <= set(item) <= ITEM_KEYS:
            raise PlanError(f"{path}: item {i} must have kernel, problem and configs (and may have a label)")
        configs = item["configs"]
        if not isinstance(item["problem"], dict) or not isinstance(configs, list) or not configs \
                or not all(isinstance(c, dict) for c in configs):
            raise PlanError(f"{path}: item {i}: problem is an object and configs a non-empty list of objects")
    return plan


def refusal(space, config: dict) -> str | None:
    """Why the kernel's space refuses a config, None where it accepts it: parameters other than the
    space's, a value outside its domain (the engine would launch another, or fail to encode it),
    a broken constraint (the loader refuses such a start point, stopping the whole experiment)."""
    point = space.complete(config)
    names = {d.name for d in space.domains}
    if set(point) != names:
        return f"keys {sorted(point)} are not the parameters of the space ({', '.join(sorted(names))})"
    outside = [f"{d.name}={point[d.name]!r}" for d in space.domains if point[d.name] not in d.values()]
    if outside:
        return "outside the space: " + ", ".join(outside)
    return "; ".join(space.violations(point)) or None


def build(plan: list[dict], target: dict, clock: str = "auto", name: str = "probe",
          concurrency: int = CONCURRENCY) -> Probe:
    """The experiment of a plan (nothing runs): one kernel entry per item with a config its space
    accepts, those configs its start points (each once), sampler none, no kernel starts, top_k
    every candidate of the largest study (its configs and the vendor configs the engine adds for
    a built-in GEMM), the clock `clock`. Raises PlanError for an unknown kernel, a problem the
    kernel refuses, or two items of one kernel and problem (they would be one study)."""
    from kernelevolve.tuner.experiment import hardware, registry
    from kernelevolve.tuner.measure.vendor import vendor_configs_of
    from kernelevolve.tuner.search.space import config_key

    hw = hardware.profile(target["name"])
    entries, swept, configs, studies, top_k = [], [], [], {}, 1
    for i, item in enumerate(plan):
        label = item.get("label") or item["kernel"]
        try:
            ref = registry.resolve_ref(item["kernel"])
            tunable = registry.load(ref)
            problem = tunable.kernel.problem(**item["problem"])
        except (registry.KernelNotFound, ValueError, TypeError) as exc:  # pydantic's errors are ValueErrors
            raise PlanError(f"plan item {i} ({label}): {' '.join(str(exc).split())}") from None
        study = (item["kernel"], problem.model_dump_json())
        if study in studies:
            raise PlanError(f"plan item {i} ({label}): the kernel and problem of item {studies[study]} "
                            "(one study each): put their configs in one item")
        studies[study] = i
        space = tunable.space(problem, hw)
        points, launched = [], set()
        for config in item["configs"]:
            row = {"label": label, "item": i, "config": config}
            why = refusal(space, config)
            if why:
                row["error"] = why
            else:
                row["launched"] = space.launched(config)
                if config_key(row["launched"]) not in launched:  # a repeated config: one candidate, two rows
                    launched.add(config_key(row["launched"]))
                    points.append(space.complete(config))
            configs.append(row)
        if points:
            entries.append({"kernel": item["kernel"], "problems": [dict(item["problem"])], "start_points": points})
            swept.append(i)
            top_k = max(top_k, len(points) + len(vendor_configs_of(ref, problem.model_dump())))
    data = {"name": name, "kernels": entries, "targets": [target],
            "search": {"sampler": "none", "kernel_starts": False, "concurrency": concurrency, "top_k": top_k},
            "timing": {"clock": clock}}
    return Probe(data, swept, configs)


def run(probe: Probe, out: str, uri: str | None = None, log=print) -> dict:
    """Sweep the probe's experiment from the folder `out` (its exp.yaml and engine state, and
    without `uri` its MLflow store, go there) and read every row back: {"studies", "rows"}."""
    sw = engine.sweep(probe.experiment, log=log, folder=out, uri=uri) if probe.swept else None
    return results(probe, sw)


def results(probe: Probe, sw: engine.Sweep | None) -> dict:
    """Each study's peer and parent run, and one row per plan config, from the sweep's summaries
    and the candidates' MLflow child runs."""
    studies = {i: _study(sw, i, summary) for i, summary in zip(probe.swept, sw.summaries)} if sw else {}
    return {"experiment": sw.name if sw else None, "tracking_uri": sw.uri if sw else None,
            "studies": [{k: v for k, v in s.items() if k not in ("by_config", "retimed")} for s in studies.values()],
            "rows": [_row(planned, studies.get(planned["item"])) for planned in probe.configs]}


def _study(sw: engine.Sweep, item: int, summary: dict) -> dict:
    from mlflow.tracking import MlflowClient

    from kernelevolve.tuner.records.tracking import candidate_runs
    from kernelevolve.tuner.search.space import config_key

    parent = summary.get("parent_run_id")
    runs = []
    if parent:
        client = MlflowClient(sw.uri)
        runs = candidate_runs(client, client.get_experiment_by_name(sw.name).experiment_id, parent)
    retime = summary.get("retime") or {}
    retimed = {config_key(r["config"]): r for r in retime.get("rows") or []} if retime.get("status") == "ok" else {}
    by_config = {config_key(rec["config"]): (run_id, rec) for run_id, rec in runs}
    peer_ms = retime.get("baseline_ms")
    vendor = [dict(_measured(rec, retimed.get(config_key(rec["config"])), peer_ms), config=rec["config"], run_id=run_id)
              for run_id, rec in runs if rec.get("impl") == "vendor"]
    return {"item": item, "study": summary["study"], "parent_run_id": parent, "clock": summary.get("clock"),
            "clock_rule": summary.get("clock_rule"), "peer_ms": peer_ms,
            "retime": retime.get("status") or retime.get("error"), "counts": summary.get("counts"),
            "proposals": summary.get("proposals"), "error": summary.get("error"), "vendor": vendor,
            "by_config": by_config, "retimed": retimed}


def _measured(rec: dict, retimed: dict | None, peer_ms: float | None) -> dict:
    """A candidate's status and latency: its row of the interleaved re-timing where it has one
    (beside the peer of the same rounds, `peer_ms`), else its own measurement (beside the peer its
    worker timed)."""
    out = {"status": rec.get("status"), "error": rec.get("error"), "clock": rec.get("clock"),
           "sweep_latency_ms": rec.get("latency_ms")}
    if retimed is not None:
        out.update(status=retimed.get("status", "ok"), error=retimed.get("error") or out["error"],
                   latency_ms=retimed.get("latency_ms"), peer_ms=peer_ms,
                   measured_by="retime_interleaved")
    elif rec.get("status") == "ok":
        out.update(latency_ms=rec.get("latency_ms"), peer_ms=rec.get("baseline_ms"), measured_by="sweep")
    if out.get("latency_ms") and out.get("peer_ms"):
        out["vs_peer"] = out["peer_ms"] / out["latency_ms"]
    return out


def _row(planned: dict, study: dict | None) -> dict:
    from kernelevolve.tuner.search.space import config_key

    row = {"label": planned["label"], "item": planned["item"], "config": planned["config"], "status": "invalid",
           "latency_ms": None, "peer_ms": None, "vs_peer": None, "clock": None, "run_id": None,
           "parent_run_id": study["parent_run_id"] if study else None}
    if "error" in planned:
        return dict(row, error=f"refused by the space: {planned['error']}")
    if planned["launched"] != planned["config"]:
        row["launched_config"] = planned["launched"]
    key = config_key(planned["launched"])
    run_id, rec = (study or {}).get("by_config", {}).get(key, (None, None))
    if rec is None:
        return dict(row, status="missing", error=(study or {}).get("error") or "not among the study's candidates")
    return {**row, **_measured(rec, study["retimed"].get(key), study["peer_ms"]), "run_id": run_id}


def main(argv=None) -> int:
    from kernelevolve.tuner.experiment import hardware
    from kernelevolve.tuner.measure.clocks import TIMING_CLOCKS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--clock", default="auto", choices=TIMING_CLOCKS,
                    help="the experiment's timing.clock (default auto: chosen per study from its roofline)")
    ap.add_argument("--target", choices=[n for n, h in hardware.PROFILES.items() if not h.interpreter],
                    help="the hardware profile (default: this machine's GPU, h100 or h200)")
    ap.add_argument("--tracking-uri", help="the MLflow tracking URI (default sqlite:///OUT/mlflow.db)")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("probe_configs: needs a CUDA GPU (torch sees none on this machine)", file=sys.stderr)
        return 2
    from kernelevolve.tuner.execution.sweep import Interrupted, TargetUnavailable
    from kernelevolve.tuner.experiment.config import ConfigError
    from kernelevolve.tuner.records.tracking import TrackingUnavailable, resolve_uri

    name = "probe-" + re.sub(r"[^A-Za-z0-9._-]+", "_", Path(args.plan).stem)
    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"probe_configs: cannot make {out} ({exc.strerror})", file=sys.stderr)
        return 2
    try:
        probe = build(read_plan(args.plan), engine.target(args.target), args.clock, name)
        # relative to where the command runs, not to OUT, where the sweep runs
        found = run(probe, str(out), resolve_uri(args.tracking_uri) if args.tracking_uri else None)
    except (PlanError, ConfigError, TrackingUnavailable, TargetUnavailable) as exc:
        print(f"probe_configs: {exc}", file=sys.stderr)
        return 2
    except Interrupted as stop:  # the candidates that ended are in the MLflow store
        print(f"probe_configs: {stop}", file=sys.stderr)
        return 128 + stop.signum
    report(found)
    import triton

    meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "wall_s": time.perf_counter() - t0, "plan": args.plan, "target": probe.experiment["targets"][0]["name"],
            "clock": args.clock, "experiment": found["experiment"], "tracking_uri": found["tracking_uri"]}
    (out / "probe.json").write_text(json.dumps({"meta": meta, **found}, indent=1, default=str))
    return 0


def report(found: dict) -> None:
    """One line per study (its peer and parent run), one per config under it."""
    studies = {s["item"]: s for s in found["studies"]}
    shown = None
    for row in found["rows"]:
        study = studies.get(row["item"])
        if row["item"] != shown:
            shown = row["item"]
            peer = f"{study['peer_ms'] * 1e3:.1f} us" if study and study.get("peer_ms") else "-"
            print(f"{row['label']}: peer {peer}"
                  + (f" ({study['clock']}; parent run {study['parent_run_id']})" if study else ""), flush=True)
            for v in (study or {}).get("vendor", []):
                print(f"  vendor {_what(v)}  {v['config']}", flush=True)
        print(f"  {_what(row)}  {row['config']}", flush=True)


def _what(row: dict) -> str:
    if row.get("latency_ms") is None or row.get("status") != "ok":
        return f"{row['status']}: {(row.get('error') or '')[:120]}"
    vs = f"{row['vs_peer']:.2f}x" if row.get("vs_peer") else "  -  "
    return f"{row['latency_ms'] * 1e3:8.1f} us  {vs}  run {row['run_id']}"


if __name__ == "__main__":
    sys.exit(main())
