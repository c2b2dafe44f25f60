"""The process Nsight Compute profiles: `python -m kernelevolve.tuner.profile.target REQUESTS.json REPLIES.json`.

It runs `profile` requests, in order, through the sweep's own evaluation processes (a
CandidateWorker: the evaluator, which loads, verifies and launches each candidate exactly as in
the sweep, and the judge beside it, which decides the verification) and writes one reply per
request. REQUESTS.json holds a list of requests (one dict: a single request, answered by a single
reply). ncu follows the evaluator child (`--target-processes all`); only its launches between
cudaProfilerStart and Stop are profiled.

Several requests in one process: torch, Triton, CUDA and ncu's own set-up are paid once, and the
study's input sets and references once (the evaluator caches them per study). A request that
fails (invalid, incorrect, timed out, its evaluator dead) has its own reply; the worker replaces
a dead or unusable evaluator and the next request goes on. The replies are rewritten after each
request, so those done before a kill of the whole process are still read.

Why files, not the evaluation processes' stdin/stdout channel: ncu starts this process and may
print to the same stdout, which would corrupt a pickled channel.
"""
from __future__ import annotations

import json
import os
import sys
import time


def _write(path: str, replies) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(replies, fh, default=str)
    os.replace(tmp, path)  # a reader never sees half a file


def main(argv: list[str]) -> int:
    request_path, reply_path = argv
    with open(request_path, encoding="utf-8") as fh:
        given = json.load(fh)
    requests = given if isinstance(given, list) else [given]
    from kernelevolve.tuner.execution.worker import CandidateWorker

    worker = CandidateWorker()
    replies = []
    try:
        for request in requests:
            t0 = time.monotonic()
            reply = worker.request(request, timeout_s=float(request.get("timeout_s") or 600))
            reply.pop("worker_unusable", None)  # the worker has replaced such an evaluator already
            reply["served_s"] = time.monotonic() - t0  # the first one includes the evaluator's start-up
            replies.append(reply)
            _write(reply_path, replies if isinstance(given, list) else reply)
    finally:
        worker.close()
    return 0 if all(r.get("status") == "ok" for r in replies) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
