"""Several candidates in one ncu run: which profiled launch is whose.

Each request of a run gets an NVTX range of its own (`nvtx`, pushed around its profiled launches
by tuner.profile.launches); ncu started with `--nvtx` writes each launch's NVTX range stack in a
column of the raw page (tuner.profile.parse keeps it as KernelLaunch.range). A launch belongs to
the request whose tag its ranges name. Launch order alone would not do: a candidate's launcher
may issue several kernels per call (split-K's zero fill and reduction), and a candidate that
failed its verification issues none.

Without the column (an ncu that records no NVTX), launches are attributed only where that is
unambiguous: when exactly one request reached its profiled launches. Otherwise `split` says it
cannot, and the caller profiles those candidates one per run.
"""
from __future__ import annotations

import csv
import io
import re

from kernelevolve.tuner.profile.parse import KernelLaunch

TAG = "kernelevolve_profile_{}"  # no ':' (the raw page separates an NVTX range's fields with it)
_TAG_RE = re.compile(r"kernelevolve_profile_(\d+)\b")


def tagged(requests: list[dict]) -> list[dict]:
    """The requests, each naming its own NVTX range (its index in the run)."""
    return [dict(r, nvtx=TAG.format(i)) for i, r in enumerate(requests)]


def owner(launch: KernelLaunch) -> int | None:
    """The index of the request whose NVTX range the launch ran in (the innermost of ours)."""
    found = _TAG_RE.findall(launch.range)
    return int(found[-1]) if found else None


def split(launches: list[KernelLaunch], replies: list[dict]) -> list[list[KernelLaunch]] | None:
    """Each request's launches, in the run's order; None where they cannot be told apart (no
    launch names a range, and more than one request ran its profiled launches)."""
    out: list[list[KernelLaunch]] = [[] for _ in replies]
    if any(owner(l) is not None for l in launches):
        for launch in launches:
            i = owner(launch)
            if i is not None and i < len(out):
                out[i].append(launch)
        return out
    ran = [i for i, r in enumerate(replies) if r.get("status") == "ok"]
    if len(ran) > 1:
        return None
    if ran:
        out[ran[0]] = list(launches)
    return out


def rows_of(csv_text: str, launches: list[KernelLaunch]) -> str:
    """The raw page with only these launches' rows (header and units row kept): one candidate's
    part of a run's page, as its own profile.csv."""
    ids = {l.id for l in launches}
    lines = [line for line in csv_text.splitlines() if line.strip() and not line.lstrip().startswith("==")]
    rows = list(csv.reader(lines))
    head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
    if head is None:
        return ""
    id_col = rows[head].index("ID") if "ID" in rows[head] else None
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for n, row in enumerate(rows[head:]):
        keep = n == 0 or id_col is None or id_col >= len(row) or not row[id_col].strip() or row[id_col] in ids
        if keep:
            writer.writerow(row)
    return out.getvalue()
