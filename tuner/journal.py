"""The local journal: every candidate's record, appended to a JSON-lines file before anything else.

The journal is the driver's source of truth. MLflow is written from it (and re-written from it
by `kernelevolve sync` when a server was away), so a record exists once it is here, whatever
happens to the tracking server or the driver afterwards. Each record carries a `candidate_id`
that is stable across a resumed sweep; the tracker uses it to write each candidate exactly once.
"""
from __future__ import annotations

import json
import os
import time


class Journal:
    def __init__(self, path: str):
        self.path = path

    def append(self, record: dict) -> None:
        record = dict(record, journal_ts=time.time())
        line = json.dumps(record, sort_keys=True, default=str)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        # One write of one line, flushed and synced: a killed driver leaves whole lines behind.
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def records(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a kill mid-write: the candidate is re-run on resume
        return out
