"""The `prepare` request of an evaluation process: a study's first-time costs, paid before its first candidate.

Why: measured on an H100 (an 8-study sweep), a GPU lane sat idle for seconds once warm, and then
the first candidate of each study paid, on the lane and so on the sweep's critical path, for
loading the kernel module, making the study's seeded input sets and their float64 references, and
timing the torch peer: 3.7 s for the first GEMM 4096^3 candidate, 0.5-0.8 s for the others, one
study after another. The sweep sends each lane every GPU study's prepare request right after its
warm-up (tuner/execution/lanes.py `prepare`), so that work fills the idle seconds instead.

No candidate code runs here, and nothing is judged: the sets are made through the evaluator's own
`_set`, as an `evaluate` request makes them. The judge fingerprints each set as it is made where the
request asks for the judge (`start_judge`: the parent, tuner/execution/worker.py, starts it before
it forwards the request), as a lane's prepare does: a set prepared for a study and fingerprinted
only at the study's first judged request could be changed unseen by a candidate of another study
run in the process before it (tests/attacks/poison_other_study.py), and the judge would then take
the changed reference for the study's own. Without it, the first judged request that uses a set
registers it (tuner/measure/handover.py `note`).
"""
from __future__ import annotations

import time

from kernelevolve.tuner.measure.launch_failures import short_error
from kernelevolve.tuner.measure.input_sets import INPUT_SETS


def prepare_request(ev, req: dict) -> dict:
    """The study's INPUT_SETS input sets with their references, then each with one element moved
    (what an evaluate request's third verified launch uses), and on a GPU the peer's baseline.
    Stops making sets where the next would not fit the input cache's budget: a prepared set that
    evicts one of a study prepared before it (the cache drops the least recently used first) only
    moves the cost from one first candidate to another."""
    t0 = time.perf_counter()
    try:
        tunable, problem, _, study = ev._load(req)
    except Exception as exc:  # a record, not a raise, and not the evaluator's generic one: that
        # replaces a GPU process after any error, and a lane's (its CUDA context, the studies
        # prepared before this one) is worth keeping over a study that fails to load
        return {"status": "runtime_error", "error": short_error(exc), **ev._tags()}
    spec = tunable.kernel
    made = {"sets": 0, "moved": 0}
    for index in [*range(INPUT_SETS), *(f"{i}~moved" for i in range(INPUT_SETS))]:
        # a set's bytes taken as the study's first set's (its size is known once made: the first
        # is made while the cache has any room left)
        if (study, index) not in ev.inputs.entries and ev.inputs.room() < max(1, ev.inputs.nbytes((study, 0))):
            break
        inputs, ref = ev._set(spec, problem, study, index)
        if req.get("start_judge"):
            ev.handover.register(study, index, inputs, ref)
        made["moved" if isinstance(index, str) else "sets"] += 1
    if not ev.interpreter:  # the interpreter's candidates are not compared with the peer
        with ev._lock():  # timed like a candidate: under the device lock, nothing else on the GPU
            ev._baseline_ms(spec, problem, study, req.get("bench", {}))
    return {"status": "ok", "prepare_s": time.perf_counter() - t0, **made, **ev._tags()}
