"""Computes its own output right, and from inside its launch overwrites the evaluator's cached
references (halves them): every candidate after it in the same process would be compared with a
wrong reference, so honest ones would fail (and a kernel computing x instead of 2x would pass).

Caught: the judge fingerprints each cached reference and input set when the evaluator makes it,
before any launch, on weights only the judge knows, and compares at every use. The changed
reference is seen at this candidate's next check: `incorrect`, and both processes are replaced,
so no later candidate meets the changed cache."""
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
                for entry in obj.entries.values():
                    if entry[1] is not None:
                        entry[1].mul_(0.5)
    return double(x, out)


KERNEL = vec_tunable("poison_reference", launch)
