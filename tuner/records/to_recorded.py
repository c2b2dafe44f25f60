"""From the product's MLflow records to recorded spaces (tuner.records.recorded_space).

Two sources, one form: an MLflow store (a tracking URI and an experiment) or its JSON-lines
export (`*.runs.jsonl.gz`, as docs/results/engine/ keeps them: one MLflow run per line with its
run_id, parent, status, start/end time, tags, params and metrics; older exports keep the parent
in MLflow's `mlflow.parentRunId` tag, newer ones as `parent_run_id`: both are read). Each study's parent run says what was
swept (kernel, problem, hardware, versions, sampler); its child runs are the candidates. The
space's parameters are rebuilt from the kernel's search-space module (the registry), so the
header also says how many valid configs the space has and whether the recording holds them all.
"""
from __future__ import annotations

import gzip
import json
from collections import Counter

from kernelevolve.tuner.records.recorded_space import FORMAT, VERSION, RecordedSpace, candidate_of
from kernelevolve.tuner.records.schema import METRIC_KEYS, TAG_KEYS, is_vendor_record
from kernelevolve.tuner.records.tracking import ROLE, _value

# Header keys copied from the study's parent run: tags, then params (as typed values).
STUDY_TAGS = ("kernel", "kernel_ref", "target", "hardware", "timing", "gpu_name", "node", "torch",
              "triton", "optuna", "ray", "git_commit", "kernel_source_sha")
STUDY_PARAMS = ("sampler", "seed", "samples", "concurrency")


def read_export(path: str) -> list[dict]:
    """The runs of a JSON-lines export (gzipped or not)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def runs_of_store(uri: str, experiment: str) -> list[dict]:
    """Every run of an experiment in an MLflow store, in the export's form (one dict per run: the
    form benchmarks/export_runs.py writes, MLflow's own tags left out but the parent's id)."""
    from kernelevolve.tuner.review import report

    client, experiment_id = report.open_experiment(uri, experiment)
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=50000, page_token=token)
        out += [{"experiment": experiment, "run_id": r.info.run_id, "run_name": r.info.run_name,
                 "parent_run_id": r.data.tags.get("mlflow.parentRunId"), "status": r.info.status,
                 "start_time": r.info.start_time, "end_time": r.info.end_time,
                 "params": dict(r.data.params), "metrics": dict(r.data.metrics),
                 "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")}}
                for r in page]
        token = page.token
        if not token:
            return out


def parent_of(run: dict) -> str | None:
    """A run's parent: the export's field, or MLflow's tag in the older exports that kept it."""
    return run.get("parent_run_id") or run["tags"].get("mlflow.parentRunId")


def write_export(runs: list[dict], path: str) -> None:
    """The JSON-lines export of `runs` (what docs/results/engine/*.runs.jsonl.gz hold)."""
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in runs:
            fh.write(json.dumps(r, default=str) + "\n")


def _record(run: dict) -> dict:
    """A candidate run back in the candidate record's form (tuner.records.schema)."""
    tags, metrics = run["tags"], run["metrics"]
    rec = {k: tags[k] for k in (*TAG_KEYS, "error") if k in tags}
    rec.update({k: metrics[k] for k in METRIC_KEYS if k in metrics})
    rec["config"] = {k: _value(v) for k, v in run["params"].items()}
    return rec


def _space_of(parent: dict):
    """(the study's Space rebuilt from its kernel's search-space module, its problem as a dict)."""
    from kernelevolve.tuner.experiment import hardware, registry

    tags, params = parent["tags"], parent["params"]
    raw = {k[len("problem."):]: _value(v) for k, v in params.items() if k.startswith("problem.")}
    tunable = registry.load(tags["kernel_ref"])
    problem = tunable.kernel.problem(**raw)
    return tunable.space(problem, hardware.profile(tags["hardware"])), problem.model_dump()


def _first_line(rule) -> str:
    doc = (getattr(rule, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else getattr(rule, "__name__", repr(rule))


def _space_header(space, recorded: set[str]) -> dict:
    from kernelevolve.tuner.search.space import config_key

    valid = space.valid_configs() if space.enumerable() else None
    keys = None if valid is None else {config_key(c) for c in valid}
    return {"parameters": space.describe(),
            "constraints": [_first_line(c) for c in space.constraints],
            "raw_points": space.size(),
            "valid_configs": None if keys is None else len(keys),
            # every valid config of the space recorded (the oracle is then the space's true best)
            "exhaustive": keys is not None and keys <= recorded,
            "outside_space": 0 if keys is None else len(recorded - keys)}


def recorded_spaces(runs: list[dict], source: str, command: str | None = None) -> list[RecordedSpace]:
    """One recorded space per study parent run that has candidates, in the runs' study order."""
    from kernelevolve.tuner.search.space import config_key

    parents = {r["run_id"]: r for r in runs if r["tags"].get(ROLE) == "study"}
    children: dict[str, list[dict]] = {}
    for r in runs:
        if r["tags"].get(ROLE) == "candidate" and parent_of(r) in parents:
            children.setdefault(parent_of(r), []).append(r)
    out = []
    for pid, parent in sorted(parents.items(), key=lambda kv: kv[1]["tags"].get("kernelevolve.study", "")):
        kids = sorted(children.get(pid, []), key=lambda r: (r.get("start_time") or 0,
                                                            r["tags"].get("candidate_id", "")))
        if not kids:
            continue
        space, problem = _space_of(parent)
        seen, candidates, repeats = set(), [], 0
        for run in kids:
            if is_vendor_record(_record(run)):  # a GEMM's vendor path: no point of the space a
                continue  # strategy searches (it is evaluated outside the sampler in every study)
            cand = candidate_of(_record(run))
            key = config_key(cand["config"])
            if key in seen:  # the engine never repeats a config; an export of two sweeps might
                repeats += 1
                continue
            seen.add(key)
            candidates.append(cand)
        tags, params = parent["tags"], parent["params"]
        header = {"format": FORMAT, "version": VERSION, "study": tags.get("kernelevolve.study"),
                  "kernel": tags.get("kernel"), "problem": problem}
        header.update({k: tags[k] for k in STUDY_TAGS if k in tags})
        header.update({k: _value(params[k]) for k in STUDY_PARAMS if k in params})
        clocks = Counter(c.get("clock") for c in (_record(r) for r in kids) if c.get("clock"))
        header.update(clock=clocks.most_common(1)[0][0] if clocks else None,
                      sweep=tags.get("kernelevolve.sweep"), parent_run_id=pid, source=source,
                      command=command, space=_space_header(space, seen), repeats_dropped=repeats,
                      candidates=len(candidates),
                      statuses=dict(Counter(c["status"] for c in candidates)))
        out.append(RecordedSpace(header, candidates))
    return out


def file_name(space: RecordedSpace) -> str:
    """A file name for a recorded space: its study key made path-safe."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", space.name.replace("/", "__")) + ".jsonl.gz"
