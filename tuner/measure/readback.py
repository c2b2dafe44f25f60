"""One read back per message: the judge's checks prepared on the device, read back together.

Why: the judge (tuner/measure/judge.py) checks every candidate's evidence, and on an H100 host its
time went to the host, not the GPU: ~10-20 us per torch operation and a wait for the device at
every value read back. A check is prepared as `Pending` (its statistics and flags as 1-D device
tensors, and how to interpret their values); a message's checks are read back in one transfer per
device (`read_parts`), so the host queues the next check while the device runs the last.
"""
from __future__ import annotations

import torch


class Pending:
    """A check's device work (`parts`: 1-D tensors, read back with every other check's of the
    message) and `finish(values)`: its result from their values, one list per part."""

    def __init__(self, parts: list, finish):
        self.parts, self.finish = [p.reshape(-1) for p in parts], finish


def read_parts(parts: list) -> list:
    """The values of every part (a tensor of any shape, flattened), one transfer per device:
    [[float, ...] per part]."""
    if not parts:
        return []
    by_device: dict = {}
    for i, p in enumerate(parts):
        by_device.setdefault(p.device, []).append(i)
    out: list = [None] * len(parts)
    for device, idx in by_device.items():
        flat = torch.cat([parts[i].reshape(-1).to(torch.float64) for i in idx]).tolist()
        at = 0
        for i in idx:
            n = parts[i].numel()
            out[i], at = flat[at:at + n], at + n
    return out


def split(values: list, counts: list) -> list:
    """values (one list per part) grouped per check: counts[k] parts each."""
    out, at = [], 0
    for n in counts:
        out.append(values[at:at + n])
        at += n
    return out
