"""A GEMM that launches a Triton kernel of its own (a copy of one element of its output, so the
launch count sees one) and computes its result with torch.mm: it would be recorded, dispatched and
reported as a Triton kernel as fast as cuBLAS. `cheat` = "timed" does so only after its first three
calls (the verified ones). Caught by the launch watch's dispatch mode, which names the library
operators a call runs (tuner/measure/launch_watch.py, LIBRARY_CALL): in the verified launches, and
in the watched timed calls (every one on the interpreter, a random quarter of the eager ones and
every captured one on a GPU)."""
import dataclasses
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import copy_kernel  # noqa: E402

from kernelevolve.kernels import matmul  # noqa: E402
from kernelevolve.tuner.experiment.registry import Tunable  # noqa: E402
from kernelevolve.tuner.search.space import Choice, Const, Space  # noqa: E402

class SmallGemm(matmul.MatmulProblem):
    """A GEMM small enough for the interpreter, by default (every attack runs with problem {})."""

    M: int = 48
    N: int = 40
    K: int = 32
    dtype: str = "float32"


HONEST = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1, "SPLIT_K": 1,
          "SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "num_warps": 4, "num_stages": 1}
_calls = [0]


def launch(inputs, out, cfg):
    a, b = inputs
    cheat = cfg["cheat"]
    if cheat == "timed":  # its first three cheating calls in this process are honest
        _calls[0] += 1
    if cheat is True or (cheat == "timed" and _calls[0] > 3):
        torch.mm(a, b, out=out)
        return copy_kernel[(1,)](out, out, 1, BLOCK=16)  # one element onto itself: a Triton launch
    return matmul.launch(inputs, out, HONEST)


SPEC = dataclasses.replace(matmul.SPEC, name="library_call", description="attack: library_call",
                           problem=SmallGemm, launch=launch, vendor_configs=None)
KERNEL = Tunable(SPEC, lambda problem, hw: Space((Choice("cheat", (False, True, "timed")),
                                                  Const("BLOCK", 128))))
