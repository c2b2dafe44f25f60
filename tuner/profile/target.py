"""The process Nsight Compute profiles: `python -m kernelevolve.tuner.profile.target REQUEST.json REPLY.json`.

It runs one `profile` request through the sweep's own evaluation processes (a CandidateWorker: the
evaluator, which loads, verifies and launches the candidate exactly as in the sweep, and the judge
beside it, which decides the verification) and writes the reply. ncu follows the evaluator child
(`--target-processes all`); only its launches between cudaProfilerStart and Stop are profiled.
Why files, not the evaluation processes' stdin/stdout channel: ncu starts this process and may
print to the same stdout, which would corrupt a pickled channel.
"""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    request_path, reply_path = argv
    with open(request_path, encoding="utf-8") as fh:
        request = json.load(fh)
    from kernelevolve.tuner.execution.worker import CandidateWorker

    worker = CandidateWorker()
    try:
        reply = worker.request(request, timeout_s=float(request.get("timeout_s") or 600))
    finally:
        worker.close()
    reply.pop("worker_unusable", None)  # this process ends here anyway
    with open(reply_path, "w", encoding="utf-8") as fh:
        json.dump(reply, fh, default=str)
    return 0 if reply.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
