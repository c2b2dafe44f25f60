"""Defeats the in-process harness itself: on its first (correct) call it replaces the hand-over of
the verified launches to the judge (every check "passes" without reaching it) and the seal that
would notice, then does no work.

Caught: the verdict is not the evaluation process's to give. The judge, a process no candidate
code runs in, saw one verified input set of three before the timed calls (the harness was
bypassed) and the timed calls' outputs unwritten: `incorrect`, and both processes are replaced,
so the patched method never judges another candidate."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import double, vec_tunable  # noqa: E402


def launch(inputs, out, cfg):
    (x,) = inputs
    if not cfg["cheat"]:
        return double(x, out)
    # the evaluator runs as `python -m kernelevolve.tuner.measure.evaluate`: its module is __main__
    evaluate = next(m for m in (sys.modules.get("__main__"), sys.modules.get("kernelevolve.tuner.measure.evaluate"))
                    if m is not None and hasattr(m, "Evaluator"))
    seal = sys.modules["kernelevolve.tuner.measure.seal"]
    if not getattr(launch, "armed", False):
        launch.armed = True
        verify = sys.modules["kernelevolve.tuner.measure.verify"]
        handover = sys.modules["kernelevolve.tuner.measure.handover"]
        handover.Handover.submit_all = lambda self, evidence: [verify.Check(True, 0.0, 0.0) for _ in evidence]
        evaluate.Evaluator._run_checked = lambda self, *a, **k: (None, verify.Check(True, 0.0, 0.0))
        seal.HarnessSeal.broken = lambda self: ""
        return double(x, out)  # this call is checked as usual, and is right
    return None  # every later call: nothing


KERNEL = vec_tunable("patch_harness", launch)
