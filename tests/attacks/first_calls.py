"""Works on its first three calls (what a harness that verifies before timing sees), then returns
without doing anything: the timed calls are free. Caught by the check after timing."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import double, vec_tunable  # noqa: E402

CALLS = {"n": 0}


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg["cheat"]:
        CALLS["n"] += 1
        if CALLS["n"] > 3:
            return None
    return double(x, out)


KERNEL = vec_tunable("first_calls", launch)
