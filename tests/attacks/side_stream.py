"""Sends its kernel to a stream of its own and returns without waiting for it: the clocks' events
on the caller's stream (do_bench, clean) would time an empty call, and under a CUDA graph capture
the launch would run eagerly, outside the graph, while its output, written a moment later, still
checks out. `cheat` = "timed" does so only after its first three calls (the verified ones), so
only the timed calls' watched launches can catch it. GPU only (the interpreter has no streams):
caught by the launch hook's stream check (tuner/measure/launch_watch.py, STRAY_LAUNCH), in the verified
launches and in a random quarter of the timed calls and every captured one
(tuner/measure/timed_outputs.py)."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import BLOCK, double, vec_tunable  # noqa: E402

from kernelevolve.tuner.experiment.registry import Tunable  # noqa: E402
from kernelevolve.tuner.search.space import Choice, Const, Space  # noqa: E402

_side: dict = {}
_calls = [0]


def launch(inputs, out, cfg):
    (x,) = inputs
    cheat = cfg["cheat"]
    if cheat == "timed":  # its first three cheating calls in this process are honest
        _calls[0] += 1
    if cheat == "always" or (cheat == "timed" and _calls[0] > 3):
        side = _side.setdefault(x.device, torch.cuda.Stream(device=x.device))
        if not torch.cuda.is_current_stream_capturing():  # (a wait on a capturing stream would join
            side.wait_stream(torch.cuda.current_stream())  # the capture, and fail it unjoined)
        with torch.cuda.stream(side):
            return double(x, out)
    return double(x, out)


# its switch has two ways to cheat: on every call, or on the timed calls only
KERNEL = Tunable(vec_tunable("side_stream", launch).kernel,
                 lambda problem, hw: Space((Choice("cheat", (False, "always", "timed")), Const("BLOCK", BLOCK))))
