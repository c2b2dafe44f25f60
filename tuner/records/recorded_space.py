"""A recorded space: every measured candidate of one (kernel, problem, GPU) study, in one small file.

What a replay answers candidates from (tuner.search.replay) and what a cost model learns from
(tuner.search.cost_model). One gzipped JSON-lines file per space:

  line 1   the header: what was recorded and how (kernel, problem, hardware, GPU, versions, the
           sweep that recorded it, the space's parameters, whether the recording is exhaustive)
  line 2+  one candidate each: its config (as launched), status, latency and compiled metadata
           (registers, spills, shared memory); fields a candidate lacks are left out, not nulled

Every measured value comes from a candidate record of the product (tuner.records.schema):
`kernelevolve dataset` converts an MLflow store, or its JSON-lines export, into these files
(tuner.records.to_recorded). Nothing here is estimated.
"""
from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass, field

from kernelevolve.tuner.records.schema import STATUSES

FORMAT = "kernelevolve.recorded_space"
VERSION = 1
# The candidate fields a recorded space keeps (a subset of tuner.records.schema.FIELDS): what a
# replay answers with and what a cost model may learn from. Timestamps, hosts and ids are left out.
CANDIDATE_FIELDS = ("status", "latency_ms", "latency_p20_ms", "latency_p80_ms", "objective",
                    "n_regs", "n_spills", "shared_bytes", "compile_s", "error")
ERROR_CHARS = 160  # a failure's reason, cut: enough to tell an out-of-resources from a crash
# What the header must name (the rest, e.g. versions, is kept when the source has it).
HEADER_REQUIRED = ("format", "version", "kernel", "problem", "hardware", "space", "candidates")


class RecordedSpaceError(Exception):
    """A file that is not a readable recorded space: a user error (one line, exit 2)."""


@dataclass
class RecordedSpace:
    header: dict
    candidates: list[dict] = field(default_factory=list)
    path: str = field(default="", compare=False)  # the file it was read from ("": built in memory)

    @property
    def name(self) -> str:
        return self.header.get("study") or f"{self.header['kernel']}/{self.header['hardware']}"

    def ok(self) -> list[dict]:
        return [c for c in self.candidates if c["status"] == "ok" and _finite(c.get("latency_ms"))]

    def oracle_ms(self) -> float | None:
        """The fastest correct latency recorded: what a search is measured against."""
        ok = self.ok()
        return min(c["latency_ms"] for c in ok) if ok else None

    def by_key(self) -> dict[str, dict]:
        from kernelevolve.tuner.search.space import config_key

        return {config_key(c["config"]): c for c in self.candidates}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def candidate_of(record: dict) -> dict:
    """A recorded-space candidate from a candidate record (journal or MLflow form)."""
    out = {"config": dict(record["config"])}
    for k in CANDIDATE_FIELDS:
        v = record.get(k)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        if k == "error":
            v = " ".join(str(v).split())[:ERROR_CHARS]
        elif k in ("n_regs", "n_spills", "shared_bytes") and float(v).is_integer():
            v = int(v)  # MLflow keeps every metric as a float
        out[k] = v
    return out


def write(space: RecordedSpace, path: str) -> None:
    check(space.header, space.candidates, path)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as fh:
        fh.write(json.dumps(space.header, sort_keys=False, default=str) + "\n")
        for c in space.candidates:
            fh.write(json.dumps(c, sort_keys=False, separators=(",", ":"), default=str) + "\n")


def read(path: str) -> RecordedSpace:
    """A recorded space from its file; RecordedSpaceError (one line) for anything else."""
    if not os.path.isfile(path):
        raise RecordedSpaceError(f"{path}: no such recorded space")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise RecordedSpaceError(f"{path}: not a gzipped JSON-lines recorded space "
                                 f"({type(exc).__name__}: {str(exc)[:120]})") from None
    if not lines or not isinstance(lines[0], dict) or lines[0].get("format") != FORMAT:
        raise RecordedSpaceError(f"{path}: its first line is not a {FORMAT} header "
                                 "(make one with `kernelevolve dataset`)")
    header, candidates = lines[0], lines[1:]
    check(header, candidates, path)
    return RecordedSpace(header, candidates, os.path.abspath(path))


def check(header: dict, candidates: list, path: str) -> None:
    missing = [k for k in HEADER_REQUIRED if k not in header]
    if missing:
        raise RecordedSpaceError(f"{path}: the header lacks {', '.join(missing)}")
    if header["version"] != VERSION:
        raise RecordedSpaceError(f"{path}: format version {header['version']}, this code reads {VERSION}")
    params = header["space"].get("parameters") if isinstance(header["space"], dict) else None
    if not params:
        raise RecordedSpaceError(f"{path}: the header's space has no parameters")
    names = {p["name"] for p in params}
    for i, c in enumerate(candidates, start=2):
        if not isinstance(c, dict) or not isinstance(c.get("config"), dict):
            raise RecordedSpaceError(f"{path}: line {i}: a candidate needs a config object")
        if c.get("status") not in STATUSES:
            raise RecordedSpaceError(f"{path}: line {i}: status {c.get('status')!r} is not one of "
                                     f"{', '.join(STATUSES)}")
        if set(c["config"]) != names:
            raise RecordedSpaceError(f"{path}: line {i}: config keys {sorted(c['config'])} are not "
                                     f"the header's parameters {sorted(names)}")
        if c["status"] == "ok" and not _finite(c.get("latency_ms")):
            raise RecordedSpaceError(f"{path}: line {i}: an ok candidate without a finite latency_ms")
    if len(candidates) != header["candidates"]:
        raise RecordedSpaceError(f"{path}: the header says {header['candidates']} candidates, "
                                 f"the file has {len(candidates)}")
