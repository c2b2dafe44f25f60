"""`kernelevolve`: run sweeps, review them (best configs, targets compared, HTML report, MLflow UI).

User errors (a bad experiment file, an unknown kernel or experiment, a target no node can serve,
no store where one is read) print one message and exit with code 2; argparse does the same for
bad command lines. A sweep in which no candidate of some study was correct exits with code 1.

This module is the command line only: the parser, the mapping of user errors to exit code 2, and
dispatch. Each command's body lives beside what it drives (tuner/<folder>/commands.py, and
tuner/review/mlflow_ui.py for `ui`). Neither this module nor those import torch, Ray or MLflow at
their top: `kernelevolve --help` and `--version` answer at once; each command imports what it needs.
"""
from __future__ import annotations

import argparse
import sys

from kernelevolve.tuner.deploy.commands import cmd_export, cmd_reproduce
from kernelevolve.tuner.execution.commands import cmd_run, cmd_sync
from kernelevolve.tuner.experiment.commands import cmd_kernels
from kernelevolve.tuner.profile.commands import cmd_profile
from kernelevolve.tuner.records.commands import cmd_dataset
from kernelevolve.tuner.review.commands import cmd_best, cmd_compare, cmd_report
from kernelevolve.tuner.review.mlflow_ui import cmd_ui
from kernelevolve.tuner.search.commands import cmd_replay
from kernelevolve.tuner.user_errors import UserError

EXIT_USER_ERROR = 2


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kernelevolve")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Version(argparse.Action):
    """--version, read only when asked (importlib.metadata is not free either)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"kernelevolve {_version()}")
        parser.exit()


EXAMPLES = {
    "run": "kernelevolve run experiments/quickstart.yaml\n"
           "  kernelevolve run experiments/gemm-h100.yaml --address auto   # on a Ray cluster\n"
           "  kernelevolve run experiments/quickstart.yaml --resume        # finish a killed sweep",
    "sync": "kernelevolve sync experiments/quickstart.yaml",
    "best": "kernelevolve best quickstart\n  kernelevolve best experiments/quickstart.yaml --json",
    "kernels": "kernelevolve kernels --target cpu-interpreter\n"
               "  kernelevolve kernels examples/row_l2norm/plugin.py:TUNABLE --target h100 "
               "--problem '{\"rows\": 4096, \"cols\": 1000}'",
    "compare": "kernelevolve compare gemm-h100 --uri sqlite:///mlflow.db",
    "report": "kernelevolve report quickstart -o report.html",
    "ui": "kernelevolve ui                     # http://127.0.0.1:5000\n"
          "  kernelevolve ui --uri sqlite:///runs/mlflow.db --port 5001",
    "reproduce": "kernelevolve reproduce 3f2a9c81d4e0   # a run id as `best` shows it, or any unique prefix",
    "profile": "kernelevolve profile 3f2a9c81d4e0   # on a GPU machine with Nsight Compute (ncu)",
    "export": "kernelevolve export quickstart -o tuned.json --triton-configs tuned_configs.py",
    "dataset": "kernelevolve dataset docs/results/engine/suite_1xh100.runs.jsonl.gz -o benchmarks/data/recorded\n"
               "  kernelevolve dataset sqlite:///mlflow.db --experiment record-spaces-h100 -o spaces/",
    "replay": "kernelevolve replay benchmarks/data/recorded/softmax*.jsonl.gz --sampler tpe,random,learned --seeds 20\n"
              "  kernelevolve replay SPACE.jsonl.gz --sampler all --seeds 10 --json replay.json --plot regret.png",
}


def _sub(sub, name: str, help: str):
    return sub.add_parser(name, help=help, description=help, epilog="example:\n  " + EXAMPLES[name],
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kernelevolve", description=__doc__.splitlines()[0],
                                epilog="a first sweep: kernelevolve run experiments/quickstart.yaml && "
                                       "kernelevolve best quickstart")
    p.add_argument("--version", action=_Version, help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    r = _sub(sub, "run", "run the sweep an experiment file describes")
    r.add_argument("experiment", help="path to an experiment YAML")
    r.add_argument("--address", help="Ray cluster address ('auto' for the running cluster)")
    r.add_argument("--quiet", action="store_true", help="print only the final table")
    r.add_argument("--wide", action="store_true", help="the final table's cells whole")
    r.add_argument("--resume", action="store_true",
                   help="finish the experiment's latest sweep (after a crash or a kill)")
    r.set_defaults(fn=cmd_run)
    y = _sub(sub, "sync", "send journaled records to MLflow (after it was unreachable)")
    y.add_argument("experiment", help="path to the experiment YAML")
    y.set_defaults(fn=cmd_sync)
    b = _sub(sub, "best", "the best correct config of each study")
    b.add_argument("experiment", help="experiment name (or its YAML)")
    b.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    b.add_argument("--json", action="store_true", help="every value, typed (numbers as numbers)")
    b.add_argument("--wide", action="store_true", help="cells whole, however wide the table")
    b.set_defaults(fn=cmd_best)
    k = _sub(sub, "kernels", "the kernels and their search-space parameters")
    k.add_argument("kernel", nargs="?", help="one kernel: a built-in name, path/to/file.py:OBJECT or "
                   "package.module:OBJECT (default: every built-in kernel)")
    k.add_argument("--target", default="h100", help="hardware profile the spaces are shown for")
    k.add_argument("--problem", metavar="JSON", help="the problem the space is shown for "
                   "(default: 1024 for every size)")
    k.set_defaults(fn=cmd_kernels)
    c = _sub(sub, "compare", "hardware targets side by side: best latency, speedup, config")
    c.add_argument("experiment", help="experiment name (or its YAML)")
    c.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    c.add_argument("--json", action="store_true", help="every value, typed (numbers as numbers)")
    c.add_argument("--wide", action="store_true", help="cells whole, however wide the table")
    c.set_defaults(fn=cmd_compare)
    h = _sub(sub, "report", "one self-contained HTML file: plots per study, best configs")
    h.add_argument("experiment", help="experiment name (or its YAML)")
    h.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    h.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    h.set_defaults(fn=cmd_report)
    u = _sub(sub, "ui", "open the MLflow UI over the project's store")
    u.add_argument("experiment", nargs="?", help="an experiment YAML whose tracking URI to use")
    u.add_argument("--uri")
    u.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--workers", type=int, default=1,
                   help="server processes (default 1: one reviewer; MLflow's own default is 4)")
    u.set_defaults(fn=cmd_ui)
    x = _sub(sub, "reproduce", "run one logged candidate again here; compare with its record")
    x.add_argument("run_id", help="MLflow run id of a candidate (or of a study: its best candidate); "
                   "any unique prefix of one, e.g. the 12 characters `best` shows")
    x.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    x.add_argument("--seed", type=int, default=0, help="seed of the fresh verification and timing inputs")
    x.add_argument("--json", action="store_true")
    x.add_argument("--trust-code", action="store_true",
                   help="import the run's kernel module even when it lies outside this checkout and "
                        "the current directory (the store's tags choose what is imported)")
    x.set_defaults(fn=cmd_reproduce)
    f = _sub(sub, "profile", "read one logged candidate's hardware counters with Nsight Compute; "
             "label its bottleneck; log both to MLflow")
    f.add_argument("run_id", help="MLflow run id of a candidate (or of a study: its best candidate); "
                   "any unique prefix of one")
    f.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    f.add_argument("--calls", type=int, default=3, help="calls of the candidate profiled (default 3)")
    f.add_argument("--timeout", type=float, default=900.0, help="seconds ncu may take (default 900)")
    f.add_argument("--json", action="store_true")
    f.add_argument("--trust-code", action="store_true",
                   help="import the run's kernel module even when it lies outside this checkout")
    f.set_defaults(fn=cmd_profile)
    e = _sub(sub, "export", "the tuned-config table of an experiment's best configs")
    e.add_argument("experiment", help="experiment name (or its YAML)")
    e.add_argument("-o", "--output", default="tuned.json", help="table to write (default tuned.json)")
    e.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    e.add_argument("--triton-configs", metavar="FILE.py",
                   help="also write the configs as Python lists of triton.Config ('-': print them)")
    e.set_defaults(fn=cmd_export)
    d = _sub(sub, "dataset", "recorded spaces (one file per study) from a sweep's MLflow records")
    d.add_argument("source", help="an MLflow store's tracking URI, or its JSON-lines export (*.runs.jsonl.gz)")
    d.add_argument("-o", "--output", required=True, help="folder the recorded spaces are written to")
    d.add_argument("--experiment", help="the experiment, when SOURCE is a tracking store")
    d.add_argument("--command", help="the command that recorded the sweep (kept in each header)")
    d.set_defaults(fn=cmd_dataset)
    p_ = _sub(sub, "replay", "a sampler searches a recorded space on the CPU: candidates until one is near its best")
    p_.add_argument("dataset", nargs="+", help="recorded spaces (*.jsonl.gz, from `kernelevolve dataset`)")
    p_.add_argument("--sampler", action="append", default=[], required=True,
                    help="a registered sampler, several (repeated or comma-separated), or all")
    p_.add_argument("--seeds", type=int, default=10, help="searches per sampler, seeds 0..N-1 (default 10)")
    p_.add_argument("--budget", type=int, help="candidates per search at most (default: the whole space)")
    p_.add_argument("--space", choices=("recorded", "kernel"), default="recorded",
                    help="recorded: search the recorded configs (default); kernel: the kernel's whole "
                         "space, configs the recording lacks answered as failed")
    p_.add_argument("--concurrency", type=int, default=1, help="candidates in flight, as a sweep's search.concurrency")
    p_.add_argument("--within", type=float, default=0.02, help="the oracle's tolerance (default 0.02: 2%%)")
    p_.add_argument("--prior", nargs="*", default=[], metavar="DATASET",
                    help="recorded spaces the learned sampler is fit on first (same kernel; others ignored)")
    p_.add_argument("--json", metavar="FILE", help="every result, with the regret curves, as JSON")
    p_.add_argument("--plot", metavar="FILE.png", help="the median regret curves as an image")
    p_.add_argument("--wide", action="store_true", help="cells whole, however wide the table")
    p_.set_defaults(fn=cmd_replay)
    return p


def _user_errors() -> tuple:
    """Exceptions that are the user's to fix: one message, exit 2 (imported lazily: Ray is slow)."""
    import importlib

    found = [UserError]
    if "kernelevolve.tuner.experiment.config" in sys.modules:
        found.append(sys.modules["kernelevolve.tuner.experiment.config"].ConfigError)
    for mod, names in (("kernelevolve.tuner.execution.sweep", ("TargetUnavailable", "NothingToResume")),
                       ("kernelevolve.tuner.records.tracking", ("TrackingUnavailable",)),
                       ("kernelevolve.tuner.review.report", ("UnknownExperiment",)),
                       ("kernelevolve.tuner.deploy.reproduce", ("ReproduceError",)),
                       ("kernelevolve.tuner.profile.candidate", ("ProfileError",)),
                       ("kernelevolve.tuner.records.recorded_space", ("RecordedSpaceError",)),
                       ("kernelevolve.tuner.search.replay", ("ReplayError",))):
        if mod in sys.modules:
            found += [getattr(importlib.import_module(mod), n) for n in names]
    return tuple(found)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__  # one line, always
        print(f"kernelevolve: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
