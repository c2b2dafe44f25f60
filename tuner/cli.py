"""`kernelevolve`: run sweeps, review them (best configs, targets compared, HTML report, MLflow UI).

User errors (a bad experiment file, an unknown kernel or experiment, a target no node can serve)
print one message and exit with code 2; argparse does the same for bad command lines.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys

from tuner.experiment import config as config_mod

EXIT_USER_ERROR = 2


class UserError(Exception):
    pass


def _table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def _progress_display(quiet: bool):
    """Live rows on a terminal; plain lines where stdout is a file or a pipe (CI logs); nothing
    with --quiet. Yields the progress object, whose `log` takes the driver's messages."""
    from tuner.review.progress import Progress, RichProgress

    if quiet:
        yield Progress(lambda message: None)
    elif sys.stdout.isatty():
        with RichProgress() as live:
            yield live
    else:
        yield Progress(print)


def cmd_run(args) -> int:
    from tuner.execution import sweep
    from tuner.review.report import fmt

    exp = config_mod.load(args.experiment)
    try:
        with _progress_display(args.quiet) as progress:
            summaries = sweep.run(exp, address=args.address, resume=args.resume, log=progress.log,
                                  progress=progress)
    except sweep.Interrupted as stop:  # resumable: the state says which studies are not done
        print(f"kernelevolve: {stop}; resume with: kernelevolve run {args.experiment} --resume",
              file=sys.stderr)
        return 128 + stop.signum
    rows = [{"study": s["study"], "timing": s["timing"], "candidates": sum(s["counts"].values()),
             "ok": s["counts"].get("ok", 0),
             "best_ms": fmt((s["best"] or {}).get("latency_ms")),
             "speedup_vs_torch": fmt((s["best"] or {}).get("speedup"), 3),
             "failures": ", ".join(f"{k}={v}" for k, v in sorted(s["counts"].items()) if k != "ok")}
            for s in summaries]
    print(_table(rows, ["study", "timing", "candidates", "ok", "best_ms", "speedup_vs_torch", "failures"]))
    print(f"\nreview: kernelevolve best {exp.name}   |   kernelevolve report {exp.name} -o report.html"
          f"   |   kernelevolve ui")
    return 0


def cmd_sync(args) -> int:
    from tuner.execution import sweep

    sweep.sync(config_mod.load(args.experiment))
    return 0


def _experiment_name(arg: str) -> tuple[str, str]:
    """An experiment by name, or by the YAML that names it (then its tracking URI too)."""
    if arg.endswith((".yaml", ".yml")):
        exp = config_mod.load(arg)
        return exp.name, exp.tracking.uri
    return arg, config_mod.Tracking().uri


def _store(args):
    """(client, experiment id, name) of the experiment an argument names, read from the store
    --uri names, else the YAML's tracking URI, else the default sqlite:///mlflow.db."""
    from tuner.review import report

    name, uri = _experiment_name(args.experiment)
    client, experiment_id = report.open_experiment(args.uri or uri, name)
    return client, experiment_id, name


def cmd_best(args) -> int:
    from tuner.review import report

    client, experiment_id, _ = _store(args)
    rows = report.best_rows(report.study_runs(client, experiment_id))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows, report.BEST_COLUMNS))
    return 0


def cmd_compare(args) -> int:
    from tuner.review import report

    client, experiment_id, name = _store(args)
    runs = report.study_runs(client, experiment_id)
    rows, cols = report.compare_rows(runs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_table(rows, cols))
    if any(r.data.tags.get("timing") == "interpreter" for r in runs.values()):
        print("\n(interpreter): CPU wall time in Triton's interpreter, not GPU performance")
    return 0


def cmd_report(args) -> int:
    from tuner.review import report

    name, uri = _experiment_name(args.experiment)
    path = report.write(args.uri or uri, name, args.output)
    print(f"report of {name}: {path}")
    return 0


def cmd_kernels(args) -> int:
    from tuner.experiment import hardware, registry

    if args.target not in hardware.PROFILES:
        raise UserError(f"unknown target '{args.target}': known are {', '.join(hardware.PROFILES)}")
    hw = hardware.profile(args.target)
    for name, ref in sorted(registry.BUILTIN.items()):
        tunable = registry.load(ref)
        spec = tunable.kernel
        fields = spec.problem.model_fields
        example = {k: (1024 if f.is_required() else f.default) for k, f in fields.items()}
        sp = tunable.space(spec.problem(**example), hw)
        print(f"{name}: {spec.description}")
        print(f"  problem fields: {', '.join(fields)}   (space shown for {example} on {hw.name})")
        for d in sp.describe():
            print(f"  {d['name']:<12} {d['kind']:<8} {d['values']}")
        for c in sp.constraints:
            print(f"  constraint: {getattr(c, '__doc__', None) or c}")
        print(f"  {sp.size()} points before constraints\n")
    return 0


def cmd_ui(args) -> int:
    from tuner.records.tracking import resolve_uri

    _, uri = _experiment_name(args.experiment) if args.experiment else ("", config_mod.Tracking().uri)
    uri = resolve_uri(args.uri or uri)
    print(f"MLflow UI over {uri} at http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    return subprocess.call(cmd)


def cmd_reproduce(args) -> int:
    from tuner.deploy import reproduce

    try:
        res = reproduce.reproduce(args.run_id, args.uri or config_mod.Tracking().uri, seed=args.seed,
                                  trust_code=args.trust_code)
    except reproduce.ReproduceError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(res, indent=2, default=str) if args.json else reproduce.format_result(res))
    return 0 if res["reproduced"] else 1


def cmd_export(args) -> int:
    from tuner.deploy import export

    name, uri = _experiment_name(args.experiment)
    try:
        table = export.build_table(args.uri or uri, name)
    except export.NothingToExport as exc:
        raise UserError(str(exc)) from None
    export.write(table, args.output)
    print(f"{len(table['entries'])} tuned configs of {name} -> {args.output} (schema {table['schema']}); "
          f"use it with KERNELEVOLVE_TUNED={args.output} or kernels.tuned.load_table()")
    if args.triton_configs:
        source = export.triton_configs_source(table)
        if args.triton_configs == "-":
            print(source)
        else:
            with open(args.triton_configs, "w", encoding="utf-8") as fh:
                fh.write(source)
            print(f"triton.Config lists -> {args.triton_configs}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kernelevolve", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the sweep an experiment file describes")
    r.add_argument("experiment", help="path to an experiment YAML")
    r.add_argument("--address", help="Ray cluster address ('auto' for the running cluster)")
    r.add_argument("--quiet", action="store_true", help="print only the final table")
    r.add_argument("--resume", action="store_true",
                   help="finish the experiment's latest sweep (after a crash or a kill)")
    r.set_defaults(fn=cmd_run)
    y = sub.add_parser("sync", help="send journaled records to MLflow (after it was unreachable)")
    y.add_argument("experiment", help="path to the experiment YAML")
    y.set_defaults(fn=cmd_sync)
    b = sub.add_parser("best", help="the best correct config of each study")
    b.add_argument("experiment", help="experiment name (or its YAML)")
    b.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_best)
    k = sub.add_parser("kernels", help="the kernels and their search-space parameters")
    k.add_argument("--target", default="h100", help="hardware profile the spaces are shown for")
    k.set_defaults(fn=cmd_kernels)
    c = sub.add_parser("compare", help="hardware targets side by side: best latency, speedup, config")
    c.add_argument("experiment", help="experiment name (or its YAML)")
    c.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_compare)
    h = sub.add_parser("report", help="one self-contained HTML file: plots per study, best configs")
    h.add_argument("experiment", help="experiment name (or its YAML)")
    h.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    h.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    h.set_defaults(fn=cmd_report)
    u = sub.add_parser("ui", help="open the MLflow UI over the project's store")
    u.add_argument("experiment", nargs="?", help="an experiment YAML whose tracking URI to use")
    u.add_argument("--uri")
    u.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--workers", type=int, default=1,
                   help="server processes (default 1: one reviewer; MLflow's own default is 4)")
    u.set_defaults(fn=cmd_ui)
    x = sub.add_parser("reproduce", help="run one logged candidate again here; compare with its record")
    x.add_argument("run_id", help="MLflow run id of a candidate (or of a study: its best candidate)")
    x.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    x.add_argument("--seed", type=int, default=0, help="seed of the fresh verification and timing inputs")
    x.add_argument("--json", action="store_true")
    x.add_argument("--trust-code", action="store_true",
                   help="import the run's kernel module even when it lies outside this checkout and "
                        "the current directory (the store's tags choose what is imported)")
    x.set_defaults(fn=cmd_reproduce)
    e = sub.add_parser("export", help="the tuned-config table of an experiment's best configs")
    e.add_argument("experiment", help="experiment name (or its YAML)")
    e.add_argument("-o", "--output", default="tuned.json", help="table to write (default tuned.json)")
    e.add_argument("--uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    e.add_argument("--triton-configs", metavar="FILE.py",
                   help="also write the configs as Python lists of triton.Config ('-': print them)")
    e.set_defaults(fn=cmd_export)
    return p


def _user_errors() -> tuple:
    """Exceptions that are the user's to fix: one message, exit 2 (imported lazily: Ray is slow)."""
    import importlib

    found = [config_mod.ConfigError, UserError]
    for mod, names in (("tuner.execution.sweep", ("TargetUnavailable", "NothingToResume")),
                       ("tuner.records.tracking", ("TrackingUnavailable",)),
                       ("tuner.review.report", ("UnknownExperiment",))):
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
        print(f"kernelevolve: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
