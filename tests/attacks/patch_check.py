"""Writes a wrong output, and from inside its launch replaces the harness's check function
(tuner.measure.verify.check, in the evaluating process) with one that passes everything. Caught:
the evaluator holds the check functions it imported before any candidate ran, and its seal
reports the replacement (the worker process is then replaced, so no later candidate meets it)."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import BLOCK, copy_kernel, double, grid, vec_tunable  # noqa: E402


def launch(inputs, out, cfg):
    (x,) = inputs
    if not cfg["cheat"]:
        return double(x, out)
    verify = sys.modules["kernelevolve.tuner.measure.verify"]
    verify.check = lambda out, ref, tol=None: verify.Check(True, 0.0, 0.0)
    return copy_kernel[grid(x.numel())](x, out, x.numel(), BLOCK=BLOCK)  # y = x: wrong


KERNEL = vec_tunable("patch_check", launch)
