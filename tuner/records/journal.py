"""The local journal: every candidate's record, appended to a JSON-lines file before anything else.

The journal is the driver's source of truth. MLflow is written from it (and re-written from it
by `kernelevolve sync` when a server was away), so a record exists once it is here, whatever
happens to the tracking server or the driver afterwards. Each record carries a `candidate_id`
that is stable across a resumed sweep; the tracker uses it to write each candidate exactly once.
"""
from __future__ import annotations

import json
import os
import threading
import time


class Journal:
    def __init__(self, path: str):
        self.path = path
        self._offset = 0  # how far read_new has read

    def extend(self, records: list[dict]) -> None:
        """Append `records` (a trial's candidates) with one write and one sync: the sweep's driver
        journals every trial on its one thread, and a sync per candidate was paid four times a trial."""
        now = time.time()
        text = "".join(json.dumps(dict(r, journal_ts=now), sort_keys=True, default=str) + "\n" for r in records)
        if not text:
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        # Flushed and synced before the caller goes on; a driver killed mid-write leaves at most a
        # cut last line, which the reader skips (its candidate runs again on resume).
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def records(self) -> list[dict]:
        """Every record in the file."""
        return self._read(0)[0]

    def read_new(self) -> list[dict]:
        """The records appended since the last call (whole lines only)."""
        out, self._offset = self._read(self._offset)
        return out

    def _read(self, offset: int) -> tuple[list[dict], int]:
        if not os.path.exists(self.path):
            return [], offset
        out = []
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # being written right now: read it next time
                offset += len(line)
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a kill mid-write: the candidate is re-run on resume
        return out, offset


def unique_by_candidate(records: list[dict]) -> list[dict]:
    """The first record of each candidate id (a resumed sweep may journal a candidate twice)."""
    seen, out = set(), []
    for rec in records:
        cid = rec.get("candidate_id")
        if cid is None or cid in seen:
            continue
        seen.add(cid)
        out.append(rec)
    return out


class SweepState:
    """Which sweep of an experiment is current, and each study's parent run and progress.

    `.kernelevolve/<experiment>/latest` names the current sweep; its folder holds `sweep.json`
    and one journal per study. Written atomically (write, then rename), so a kill leaves either
    the old state or the new one.
    """

    def __init__(self, root: str, sweep_id: str, data: dict | None = None):
        self.root, self.sweep_id = root, sweep_id
        self.data = data or {"sweep_id": sweep_id, "studies": {}}
        self.lock = threading.RLock()  # the driver's trial loop and its MLflow writer both update it

    @property
    def folder(self) -> str:
        return os.path.join(self.root, self.sweep_id)

    def journal(self, study_slug: str) -> Journal:
        return Journal(os.path.join(self.folder, study_slug + ".jsonl"))

    @classmethod
    def new(cls, root: str, sweep_id: str, experiment_path: str) -> "SweepState":
        state = cls(root, sweep_id)
        state.data["experiment_path"] = experiment_path
        state.save()
        _atomic_write(os.path.join(root, "latest"), sweep_id)
        return state

    @classmethod
    def latest(cls, root: str) -> "SweepState | None":
        try:
            with open(os.path.join(root, "latest"), encoding="utf-8") as fh:
                sweep_id = fh.read().strip()
            with open(os.path.join(root, sweep_id, "sweep.json"), encoding="utf-8") as fh:
                return cls(root, sweep_id, json.load(fh))
        except (OSError, json.JSONDecodeError):
            return None

    def study(self, key: str) -> dict:
        with self.lock:
            return self.data["studies"].setdefault(key, {})

    def update(self, key: str, **fields) -> None:
        with self.lock:
            self.study(key).update(fields)
            self.save()

    def save(self) -> None:
        with self.lock:
            text = json.dumps(self.data, indent=1, default=str)
            _atomic_write(os.path.join(self.folder, "sweep.json"), text)


def _atomic_write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
