"""Computes its output with torch (a library call) and launches no Triton kernel: it would be timed
as if it were the candidate. Caught by counting Triton launches during the verified call."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import double, vec_tunable  # noqa: E402


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg["cheat"]:
        out.copy_(2 * x)
        return None
    return double(x, out)


KERNEL = vec_tunable("torch_copy", launch)
