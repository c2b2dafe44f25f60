"""`kernelevolve replay`: registered samplers search recorded spaces on the CPU; a table of how
many candidates each took to come near the best, and optionally the results as JSON and a plot.

Here, beside tuner.search.replay and the sampler registry it checks names against; tuner/cli.py
parses the command line and dispatches. Nothing heavy is imported at the top: `kernelevolve --help`
imports this module.
"""
from __future__ import annotations

import json

from kernelevolve.tuner.review.text import _note, _table, _width
from kernelevolve.tuner.user_errors import UserError, check_writable


def _sampler_names(given: list[str]) -> list[str]:
    from kernelevolve.tuner.search.samplers import DISTINCT, NONE, SAMPLERS

    names = [n.strip() for g in given for n in g.split(",") if n.strip()]
    if "all" in names:  # not "auto": on each space it is one of tpe and learned
        return list(DISTINCT)
    known = [n for n in SAMPLERS if n != NONE]  # "none" proposes nothing: there is no search to replay
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown sampler '{unknown[0]}': known are {', '.join(known)} (or all)")
    return names


def cmd_replay(args) -> int:
    from kernelevolve.tuner.records import recorded_space
    from kernelevolve.tuner.review import replay_view
    from kernelevolve.tuner.search import replay
    from kernelevolve.tuner.search.prior import prior_for

    names = _sampler_names(args.sampler)
    if args.seeds < 1 or (args.budget is not None and args.budget < 1) or args.concurrency < 1:
        raise UserError("--seeds, --budget and --concurrency take positive integers")
    if not 0 <= args.within < 1:
        raise UserError(f"--within {args.within}: a fraction of the oracle, e.g. 0.02 for 2%")
    for path in (args.json, args.plot):
        if path:
            check_writable(path)
    if args.prior and "learned" not in names:
        raise UserError("--prior is what the learned sampler is fit on first: add --sampler learned")
    spaces = [recorded_space.read(p) for p in args.dataset]
    priors = [recorded_space.read(p) for p in args.prior]
    results = []
    for sp in spaces:
        h = sp.header
        own = prior_for(priors, h["kernel"], h["problem"], h["hardware"])  # as a sweep's prior
        for name in names:
            sampler, label = name, name
            if name == "learned" and own:
                sampler, label = replay.with_prior(sp, own), replay.with_prior.name
            results.append(replay.replay(sp, sampler, args.seeds, budget=args.budget, space_mode=args.space,
                                         concurrency=args.concurrency, tolerance=args.within))
            results[-1]["sampler"] = label
    rows = [replay_view.row(r) for r in results]
    print(_table(rows, list(replay_view.COLUMNS), _width(args.wide)))
    for r in results:
        print(replay_view.regret_line(r))
    print(_note(replay_view.NOTE.format(pct=100 * args.within), _width(args.wide)))
    missing = sum(r["not_recorded"] for r in results)
    if missing:
        print(f"\n{missing} candidates were configs the recording lacks: each counted as a failed candidate")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
        print(f"results -> {args.json}")
    if args.plot:
        replay_view.plot(results, args.plot)
        print(f"regret curves -> {args.plot}")
    return 0
