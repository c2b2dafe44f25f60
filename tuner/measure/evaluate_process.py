"""The evaluation process: `python -m kernelevolve.tuner.measure.evaluate_process`, started by
tuner.execution.worker.CandidateWorker (forked by the node's fork server where there is one). It
reads requests from stdin and answers each on its own copy of stdout, with an Evaluator
(tuner/measure/evaluate.py: what each request does, and the four steps of a candidate); whatever
kernels print goes to stderr, never into the channel. A reply that says the process is unusable
(a CUDA error that can leave the context broken) ends it: its owner starts another.
"""
from __future__ import annotations

import os
import sys
import time

from kernelevolve.tuner.measure.evaluate import Evaluator


def _profiled(handle, req: dict) -> dict:
    """handle(req), under cProfile when KERNELEVOLVE_EVAL_PROFILE names a folder (a diagnosis of
    where a request's host time goes: evaluator-<pid>-<n>-<op>.txt there, the top functions by
    cumulative time; never in a timed sweep's normal run)."""
    folder = os.environ.get("KERNELEVOLVE_EVAL_PROFILE")
    if not folder:
        return handle(req)
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    reply = prof.runcall(handle, req)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(40)
    _profiled.n = getattr(_profiled, "n", 0) + 1
    with open(os.path.join(folder, f"evaluator-{os.getpid()}-{_profiled.n}-{req.get('op')}.txt"), "w") as fh:
        fh.write(text.getvalue())
    return reply


def serve() -> None:
    serving = time.time()
    from kernelevolve.tuner.execution.spawner import child_times
    from kernelevolve.tuner.execution.worker import recv, send

    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever kernels print goes to stderr, never into the channel
    proto_in = sys.stdin.buffer
    niceness = int(os.environ.get("KERNELEVOLVE_NICE") or 0)
    if niceness > 0:  # a compiling process yields to the GPU lane (tuner/execution/study_plan.py COMPILE_NICE)
        os.nice(niceness)
    evaluator = Evaluator()
    if os.environ.get("KERNELEVOLVE_DESCRIBE_AT_START") == "1":
        # every process described its device as it started before compile slots stopped doing
        # so; kept for benchmarks/startup_probe.py's comparison of the two
        evaluator.info
    evaluator.progress = lambda what: send(proto_out, {"progress": what})
    send(proto_out, {"ready": True, "pid": os.getpid(), "ready_at": time.time(), "serving_at": serving,
                     **child_times()})
    while True:
        try:
            req = recv(proto_in)
        except EOFError:
            return
        if req.get("op") == "exit":
            return
        reply = _profiled(evaluator.handle, req)
        send(proto_out, reply)
        if reply.get("worker_unusable"):
            return


if __name__ == "__main__":
    serve()
