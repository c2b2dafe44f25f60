"""`kernelevolve export` and `kernelevolve reproduce`: a sweep's results on their way out — the
tuned-config table (and its triton.Config lists), and one logged candidate run again here.

The bodies live here, beside tuner.deploy.export and tuner.deploy.reproduce; tuner/cli.py parses
the command line and dispatches. Nothing heavy is imported at the top: `kernelevolve --help`
imports this module.
"""
from __future__ import annotations

import json

from kernelevolve.tuner.experiment.lookup import DEFAULT_URI, experiment_name
from kernelevolve.tuner.user_errors import UserError, check_writable


def cmd_reproduce(args) -> int:
    from kernelevolve.tuner.deploy import reproduce

    try:
        res = reproduce.reproduce(args.run_id, args.uri or DEFAULT_URI, seed=args.seed,
                                  trust_code=args.trust_code)
    except reproduce.ReproduceError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(res, indent=2, default=str) if args.json else reproduce.format_result(res))
    return 0 if res["reproduced"] else 1


def cmd_export(args) -> int:
    from kernelevolve.tuner.deploy import export

    check_writable(args.output)
    if args.triton_configs and args.triton_configs != "-":
        check_writable(args.triton_configs)
    name, uri = experiment_name(args.experiment)
    try:
        table = export.build_table(args.uri or uri, name)
    except export.NothingToExport as exc:
        raise UserError(str(exc)) from None
    export.write(table, args.output)
    print(f"{len(table['entries'])} tuned configs of {name} -> {args.output} (schema {table['schema']}); "
          f"use it with KERNELEVOLVE_TUNED={args.output} or kernelevolve.kernels.tuned.load_table()")
    if args.triton_configs:
        source = export.triton_configs_source(table)
        if args.triton_configs == "-":
            print(source)
        else:
            with open(args.triton_configs, "w", encoding="utf-8") as fh:
                fh.write(source)
            print(f"triton.Config lists -> {args.triton_configs}")
    return 0
