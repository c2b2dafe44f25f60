"""The process Nsight Compute profiles: `python -m kernelevolve.tuner.profile.target REQUEST.json REPLY.json`.

It runs one `profile` request through the sweep's own evaluator (tuner.measure.evaluate.Evaluator:
the candidate is loaded, verified and launched exactly as in the sweep) and writes the reply.
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
    from kernelevolve.tuner.measure.evaluate import Evaluator

    reply = Evaluator().handle(request)
    reply.pop("worker_unusable", None)  # this process ends here anyway
    with open(reply_path, "w", encoding="utf-8") as fh:
        json.dump(reply, fh, default=str)
    return 0 if reply.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
