"""Tells verified calls from timed ones by everything its output buffer shows, and works only on
the calls it takes for verified ones: a buffer that is NaN-poisoned (how the harness prepares a
checked output) and that it has not written before (a timing loop reuses its buffers). Every
other call returns at once, so its timed calls would be free.

Caught: every timed call writes a buffer poisoned again just before it, like a verified one, so
the first clause never lets it skip; a reused buffer it skips keeps its NaN, and a sample of the
timed calls, drawn after each call where the kernel cannot see it, is checked by the judge
("timed calls: timed call k of n: ... NaN"). Without the second clause it does the work on every
timed call: it is honest then, and so is its latency."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import double, vec_tunable  # noqa: E402

WRITTEN: set = set()


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg["cheat"]:
        looks_checked = bool(torch.isnan(out.reshape(-1)[0])) and out.data_ptr() not in WRITTEN
        if not looks_checked:
            return None
        WRITTEN.add(out.data_ptr())
    return double(x, out)


KERNEL = vec_tunable("skip_unpoisoned", launch)
