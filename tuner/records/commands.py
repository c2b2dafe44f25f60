"""`kernelevolve dataset`: recorded spaces (one file per study) from a sweep's MLflow records, read
from the store or from its JSON-lines export.

Here, beside tuner.records.to_recorded and tuner.records.recorded_space, which do the work;
tuner/cli.py parses the command line and dispatches. Nothing heavy is imported at the top:
`kernelevolve --help` imports this module.
"""
from __future__ import annotations

import os

from kernelevolve.tuner.user_errors import UserError


def cmd_dataset(args) -> int:
    from kernelevolve.tuner.records import recorded_space, to_recorded

    if not os.path.isdir(args.output):
        raise UserError(f"-o {args.output}: there is no such folder")
    if "://" in args.source:
        if not args.experiment:
            raise UserError(f"{args.source} is a tracking store: name the experiment with --experiment")
        runs = to_recorded.runs_of_store(args.source, args.experiment)
    elif os.path.isfile(args.source):
        try:
            runs = to_recorded.read_export(args.source)
        except (OSError, EOFError, ValueError) as exc:
            raise UserError(f"{args.source}: not a JSON-lines export of MLflow runs ({type(exc).__name__})") from None
    else:
        raise UserError(f"{args.source}: neither a file nor a tracking URI (sqlite:///path/mlflow.db)")
    spaces = to_recorded.recorded_spaces(runs, args.source, command=args.command)
    if not spaces:
        raise UserError(f"{args.source}: no study with candidates (is it a kernelevolve sweep's store?)")
    for sp in spaces:
        path = os.path.join(args.output, to_recorded.file_name(sp))
        recorded_space.write(sp, path)
        h = sp.header["space"]
        print(f"{path}: {len(sp.candidates)} candidates ({', '.join(f'{k}={v}' for k, v in sp.header['statuses'].items())}) "
              f"of {h['valid_configs'] if h['valid_configs'] is not None else 'not enumerated'} valid configs"
              f"{' (exhaustive)' if h['exhaustive'] else ''}")
    return 0
