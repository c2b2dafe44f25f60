"""Hands its launch to a thread of its own and returns at once, after its first three calls (the
verified ones): the timed call ends before its kernel is even launched, so the clock would time an
empty call, while the output, written a moment later, checks out. (The next call waits for the
last thread first, so no two of its launches overlap.) Caught by the launch watch, which counts a
Triton launch from any thread but the caller's as stray (tuner/measure/launch_watch.py STRAY_LAUNCH): on
the interpreter every timed call is watched, on a GPU a random quarter of them."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from common import double, vec_tunable  # noqa: E402

CALLS = {"n": 0}
_last: list = []


def launch(inputs, out, cfg):
    (x,) = inputs
    while _last:
        _last.pop().join()
    if cfg["cheat"]:
        CALLS["n"] += 1
        if CALLS["n"] > 3:
            t = threading.Thread(target=double, args=(x, out), daemon=True)
            t.start()
            _last.append(t)
            return None
    return double(x, out)


KERNEL = vec_tunable("deferred_launch", launch)
