"""Computes its own output right, and from inside its launch halves the cached references of every
other study in its process, leaving its own study's alone: its own checks and audit pass, and the
other studies' candidates would be compared with wrong references (a kernel computing x instead of
2x would pass).

Caught where the other study's sets were registered with the judge before this candidate ran: a
lane prepares every study ahead of its candidates (tuner/measure/prepare.py) and registers each
set as it is made, so the judge sees the changed reference at that study's next check."""
import gc
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import double, vec_tunable  # noqa: E402


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg["cheat"]:
        for obj in gc.get_objects():
            if type(obj).__name__ == "InputSets":
                for (study, _), entry in obj.entries.items():
                    if os.path.basename(__file__) not in study[0] and entry[1] is not None:
                        entry[1].mul_(0.5)
    return double(x, out)


KERNEL = vec_tunable("poison_other_study", launch)
