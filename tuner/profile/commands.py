"""`kernelevolve profile RUN_ID`: one logged candidate under Nsight Compute, from the command line.

Here, beside tuner.profile.candidate, which does the work; tuner/cli.py parses the command line
and dispatches. Nothing heavy is imported at the top: `kernelevolve --help` imports this module.
"""
from __future__ import annotations

import json

from kernelevolve.tuner.experiment.lookup import DEFAULT_URI


def cmd_profile(args) -> int:
    from kernelevolve.tuner.profile import candidate

    res = candidate.profile(args.run_id, args.uri or DEFAULT_URI, calls=args.calls,
                            timeout_s=args.timeout, trust_code=args.trust_code)
    print(json.dumps(res, indent=2, default=str) if args.json else candidate.format_result(res))
    return 0
