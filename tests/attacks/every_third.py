"""Wrong on every third call (a race that loses a third of the time, made deterministic). Caught:
three verified calls before timing cover every residue of the call count."""
import os
import sys

import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(__file__))
from common import BLOCK, double, grid, vec_tunable  # noqa: E402

CALLS = {"n": 0}


@triton.jit
def off_by_one_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(y_ptr + offs, 2 * tl.load(x_ptr + offs, mask=m) + 1, mask=m)


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg["cheat"]:
        CALLS["n"] += 1
        if CALLS["n"] % 3 == 0:
            return off_by_one_kernel[grid(x.numel())](x, out, x.numel(), BLOCK=BLOCK)
    return double(x, out)


KERNEL = vec_tunable("every_third", launch)
