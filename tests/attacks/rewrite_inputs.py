"""Zeroes its input and its output: a reference computed from the inputs after the launch would be
zero too, and agree. Caught: the reference is computed from a pristine copy, and the inputs must
be bitwise unchanged after the launch."""
import os
import sys

import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(__file__))
from common import BLOCK, double, grid, vec_tunable  # noqa: E402


@triton.jit
def zero_both_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(x_ptr + offs, tl.zeros((BLOCK,), tl.float32), mask=m)
    tl.store(y_ptr + offs, tl.zeros((BLOCK,), tl.float32), mask=m)


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg["cheat"]:
        return zero_both_kernel[grid(x.numel())](x, out, x.numel(), BLOCK=BLOCK)
    return double(x, out)


KERNEL = vec_tunable("rewrite_inputs", launch)
