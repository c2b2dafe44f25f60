"""Computes only when its output buffer looks poisoned (NaN: how the harness prepares verified
calls); otherwise it returns at once, so the timed calls, whose output nobody checks, are free.
NOT caught by this checkout: it needs the outputs of the timed calls checked (or the timed
calls made indistinguishable from verified ones), which the evaluator rewrite provides
(tests/test_attacks.py marks it xfail)."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import double, vec_tunable  # noqa: E402


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg["cheat"] and not bool(torch.isnan(out.reshape(-1)[0])):
        return None
    return double(x, out)


KERNEL = vec_tunable("skip_unpoisoned", launch)
