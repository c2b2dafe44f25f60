"""`kernelevolve best`, `compare` and `report`: an experiment's records reviewed from its MLflow
store, as terminal tables (or JSON) and as one HTML file.

The bodies live here, beside the review code they drive (tuner.review.report, tuner.review.text);
tuner/cli.py parses the command line and dispatches. Nothing heavy is imported at the top:
`kernelevolve --help` imports this module.
"""
from __future__ import annotations

import json

from kernelevolve.tuner.experiment.lookup import experiment_name
from kernelevolve.tuner.review.text import _best_blocks, _note, _table, _width
from kernelevolve.tuner.user_errors import check_writable


def _store(args):
    """(client, experiment id, name) of the experiment an argument names, read from the store
    --uri names, else the YAML's tracking URI, else the default sqlite:///mlflow.db."""
    from kernelevolve.tuner.review import report

    name, uri = experiment_name(args.experiment)
    client, experiment_id = report.open_experiment(args.uri or uri, name)
    return client, experiment_id, name


def cmd_best(args) -> int:
    from kernelevolve.tuner.review import report

    client, experiment_id, _ = _store(args)
    rows = report.best_rows(report.study_runs(client, experiment_id))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        shown, width = report.display_best(rows), _width(args.wide)
        print(_table(shown, report.BEST_COLUMNS, None) if width is None else _best_blocks(shown, width))
        print(_note(report.RETIMED_NOTE, width))
        print(_note(f"run_id: the study's parent run ({report.SHORT_ID} characters; every command taking "
                    "a run id takes them): `kernelevolve reproduce RUN_ID` re-runs its best candidate", width))
    return 0


def cmd_compare(args) -> int:
    from kernelevolve.tuner.review import report

    client, experiment_id, name = _store(args)
    runs = report.study_runs(client, experiment_id)
    rows, cols = report.compare_rows(runs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_table(report.display_compare(rows, cols), cols, _width(args.wide)))
    print(_note(report.RETIMED_NOTE, _width(args.wide)))
    if any(r.data.tags.get("timing") == "interpreter" for r in runs.values()):
        print("\n(interpreter): CPU wall time in Triton's interpreter, not GPU performance")
    return 0


def cmd_report(args) -> int:
    from kernelevolve.tuner.review import report

    check_writable(args.output)
    name, uri = experiment_name(args.experiment)
    path = report.write(args.uri or uri, name, args.output)
    print(f"report of {name}: {path}")
    return 0
