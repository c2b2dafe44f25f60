"""Writes correct output, and also one block past the end of its input: into whatever allocation
follows it. Caught by the canary bands around every input copy."""
import os
import sys

import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(__file__))
from common import BLOCK, double, grid, vec_tunable  # noqa: E402


@triton.jit
def stray_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(y_ptr + offs, 2 * tl.load(x_ptr + offs, mask=m), mask=m)
    if tl.program_id(0) == 0:  # a scratch write just past the input's end
        tl.store(x_ptr + n + tl.arange(0, BLOCK), tl.full((BLOCK,), 7.0, tl.float32))


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg["cheat"]:
        return stray_kernel[grid(x.numel())](x, out, x.numel(), BLOCK=BLOCK)
    return double(x, out)


KERNEL = vec_tunable("stray_write", launch)
