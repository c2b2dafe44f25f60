"""The prior of a search: recorded spaces of the same kernel (other shapes, other GPU kinds) that the
learned sampler is fit on before the study's first proposal (tuner.search.learned_sampler).

One selection for every caller: a sweep's `search.prior` (tuner.execution.sweep), `kernelevolve
replay --prior` (tuner.search.commands, tuner.search.replay.with_prior) and the replay benchmark
(benchmarks/replay_compare.py). A recorded space of the same problem on the same hardware as the
search is never part of its prior: it would be the answer itself. Importable without Ray.
"""
from __future__ import annotations

import glob
import json
import os

from kernelevolve.tuner.records import recorded_space
from kernelevolve.tuner.records.recorded_space import RecordedSpace, RecordedSpaceError

SUFFIX = ".jsonl.gz"


def paths(path: str) -> list[str]:
    """The recorded spaces a path names: the file itself, or every *.jsonl.gz under a folder
    (sub-folders included), sorted."""
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "**", "*" + SUFFIX), recursive=True))
    return [path]


def load(path: str) -> list[RecordedSpace]:
    """Every recorded space a file or folder holds. RecordedSpaceError (one line) for a path that
    does not exist, a folder without recorded spaces, or a file that is not one."""
    if not os.path.exists(path):
        raise RecordedSpaceError(f"{path}: no such file or folder")
    found = paths(path)
    if not found:
        raise RecordedSpaceError(f"{path}: the folder holds no recorded spaces (*{SUFFIX})")
    return [recorded_space.read(p) for p in found]


def _same_problem(a: dict, b: dict) -> bool:
    """Problems as the recorded header keeps them (JSON): a study's own dump compared alike."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def prior_for(recorded: list[RecordedSpace], kernel: str, problem: dict, hardware: str, *,
              space=None, other_problems: bool = False) -> list[RecordedSpace]:
    """The recorded spaces a search of `kernel` at `problem` on `hardware` learns from first: those
    of the same kernel (as the recorded header names it), never one of the same problem on the same
    hardware (the same problem on another GPU kind stays: a transfer across GPU kinds).

    `space`: the space searched; a recording whose parameters are not its parameters (an older
    version of the kernel's space) is left out, since no candidate of it could be learned from,
    unless all it lacks are parameters with a default (Space.defaults: switches added since it
    was recorded, whose configs then mean the default).
    `other_problems`: also leave out the same problem on another GPU kind (the replay benchmark
    measures transfer across shapes)."""
    names = {d.name for d in space.domains} if space is not None else None
    defaulted = set(space.defaults) if space is not None else set()
    out = []
    for r in recorded:
        h = r.header
        if h["kernel"] != kernel:
            continue
        same = _same_problem(h["problem"], problem)
        if same and (other_problems or h["hardware"] == hardware):
            continue
        recorded_names = {p["name"] for p in h["space"]["parameters"]}
        if names is not None and not (recorded_names <= names and names - recorded_names <= defaulted):
            continue
        out.append(r)
    return out


def describe(prior: list[RecordedSpace]) -> list[dict]:
    """What a study's parent run records of its prior: each space's study, GPU, size and file."""
    return [{"space": r.name, "problem": r.header["problem"], "hardware": r.header["hardware"],
             "gpu_name": r.header.get("gpu_name"), "candidates": len(r.candidates),
             "sweep": r.header.get("sweep"), "path": r.path or None} for r in prior]
