"""Markers for tests that run kernels in the Triton interpreter on purpose.

`interpreter_runs`: skipped where the installed Triton's interpreter cannot run our kernels
(tuner.experiment.hardware.interpreter_problem: triton 3.6 under numpy >= 2.4, as on the GPU
machines' image). `cpu_interpreter_only`: also skipped on a GPU machine, for tests that turn
TRITON_INTERPRET on inside this process: a kernel module they import first would stay
interpreted for the GPU tests after them (Triton decides at decoration).
"""
import pytest
import torch

from kernelevolve.tuner.experiment.hardware import interpreter_problem

_PROBLEM = interpreter_problem()

interpreter_runs = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")
cpu_interpreter_only = pytest.mark.skipif(
    _PROBLEM is not None or torch.cuda.is_available(),
    reason=_PROBLEM or "an interpreter test in a process with a GPU would leave the kernels it imports "
                       "interpreted for the GPU tests after it (tests/conftest.py compiles them there)")
