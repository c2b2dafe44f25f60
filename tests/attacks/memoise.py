"""Memoises on a small fingerprint of its input (its size and first four values): a repeated input
costs one copy. Caught by the third verification set, the first set with one element moved
(elsewhere than the fingerprint), whose stale replay is wrong there."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import BLOCK, copy_kernel, double, grid, vec_tunable  # noqa: E402

CACHE: dict = {}


def launch(inputs, out, cfg):
    (x,) = inputs
    if not cfg["cheat"]:
        return double(x, out)
    key = (x.numel(), tuple(float(v) for v in x[:4]))
    if key in CACHE:  # a Triton copy of the remembered result: a launch, no work
        return copy_kernel[grid(x.numel())](CACHE[key], out, x.numel(), BLOCK=BLOCK)
    handle = double(x, out)
    CACHE[key] = out.clone()
    return handle


KERNEL = vec_tunable("memoise", launch)
