"""`kernelevolve`: run sweeps, review them (best configs, targets compared, HTML report, MLflow UI).

User errors (a bad experiment file, an unknown kernel or experiment, a target no node can serve,
no store where one is read) print one message and exit with code 2; argparse does the same for
bad command lines. A sweep in which no candidate of some study was correct exits with code 1.

This module imports neither torch nor Ray nor MLflow at its top: `kernelevolve --help` and
`--version` answer at once; each command imports what it needs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys

from kernelevolve.tuner.review.text import _best_blocks, _note, _table, _width
EXIT_USER_ERROR = 2
EXIT_NO_CORRECT = 1
DEFAULT_URI = "sqlite:///mlflow.db"  # tuner.experiment.config.Tracking's default (a test checks)


class UserError(Exception):
    pass


def _config():
    from kernelevolve.tuner.experiment import config  # pydantic, the kernel registry, torch: not for --help

    return config


@contextlib.contextmanager
def _progress_display(quiet: bool):
    """Live rows on a terminal; plain lines where stdout is a file or a pipe (CI logs: no ANSI
    codes); nothing with --quiet. Yields the progress object, whose `log` takes the driver's messages."""
    from kernelevolve.tuner.review.progress import Progress, RichProgress

    if quiet:
        yield Progress(lambda message: None)
    elif sys.stdout.isatty():
        with RichProgress() as live:
            yield live
    else:
        yield Progress(print)


def cmd_run(args) -> int:
    from kernelevolve.tuner.execution import sweep
    from kernelevolve.tuner.review.report import fmt

    exp = _config().load(args.experiment)
    _config().check_gpu_targets(exp, args.address)
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
             "retimed_ms": _latency((s["best"] or {}).get("latency_ms"), (s["best"] or {}).get("measured_by")),
             "speedup_vs_torch": fmt((s["best"] or {}).get("speedup"), 3),
             # which implementation won, and the best Triton kernel beside it (a GEMM's winner may
             # be the vendor path; summaries of studies finished before it existed lack both)
             "dispatched": (s["best"] or {}).get("impl") or ("triton" if s["best"] else "-"),
             "triton_ms": _latency((s.get("best_triton") or {}).get("latency_ms"),
                                   (s.get("best_triton") or {}).get("measured_by")),
             "failures": ", ".join(f"{k}={v}" for k, v in sorted(s["counts"].items()) if k != "ok")}
            for s in summaries]
    print(_table(rows, ["study", "timing", "candidates", "ok", "dispatched", "retimed_ms", "triton_ms",
                        "speedup_vs_torch", "failures"],
                 _width(getattr(args, "wide", False))))
    from kernelevolve.tuner.review.report import RETIMED_NOTE

    print(_note(RETIMED_NOTE, _width(getattr(args, "wide", False))))
    print(f"\nreview: kernelevolve best {exp.name}   |   kernelevolve report {exp.name} -o report.html"
          f"   |   kernelevolve ui")
    failed = [s["study"] for s in summaries if not s["best"]]
    for study in failed:
        print(f"kernelevolve: no candidate was correct in study {study}", file=sys.stderr)
    return EXIT_NO_CORRECT if failed else 0


def _latency(ms, measured_by) -> str:
    from kernelevolve.tuner.review.report import latency_cell

    return latency_cell(ms, measured_by)


def cmd_sync(args) -> int:
    from kernelevolve.tuner.execution import sweep

    sweep.sync(_config().load(args.experiment))
    return 0


def _experiment_name(arg: str) -> tuple[str, str]:
    """An experiment by name, or by the YAML that names it (then its tracking URI too)."""
    if arg.endswith((".yaml", ".yml")):
        exp = _config().load(arg)
        return exp.name, exp.tracking.uri
    return arg, DEFAULT_URI


def _store(args):
    """(client, experiment id, name) of the experiment an argument names, read from the store
    --uri names, else the YAML's tracking URI, else the default sqlite:///mlflow.db."""
    from kernelevolve.tuner.review import report

    name, uri = _experiment_name(args.experiment)
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

    _writable(args.output)
    name, uri = _experiment_name(args.experiment)
    path = report.write(args.uri or uri, name, args.output)
    print(f"report of {name}: {path}")
    return 0


def _example_problem(problem_cls, given: str | None) -> dict:
    if given:
        try:
            data = json.loads(given)
        except ValueError as exc:
            raise UserError(f"--problem: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise UserError("--problem: a JSON object, e.g. '{\"rows\": 4096, \"cols\": 1000}'")
        return data
    return {k: (1024 if f.is_required() else f.default) for k, f in problem_cls.model_fields.items()}


def cmd_kernels(args) -> int:
    from pydantic import ValidationError

    from kernelevolve.tuner.experiment import hardware, registry

    if args.target not in hardware.PROFILES:
        raise UserError(f"unknown target '{args.target}': known are {', '.join(hardware.PROFILES)}")
    hw = hardware.profile(args.target)
    if args.kernel:  # one kernel: a built-in name, path/to/file.py:OBJECT or package.module:OBJECT
        try:
            refs = {args.kernel: registry.resolve_ref(args.kernel, os.getcwd())}
        except registry.KernelNotFound as exc:
            raise UserError(str(exc)) from None
    else:
        refs = dict(sorted(registry.BUILTIN.items()))
    for name, ref in refs.items():
        try:
            tunable = registry.load(ref)
        except registry.KernelNotFound as exc:
            raise UserError(str(exc)) from None
        spec = tunable.kernel
        fields = spec.problem.model_fields
        example = _example_problem(spec.problem, args.problem)
        try:
            problem = spec.problem(**example)
        except (ValidationError, TypeError) as exc:
            first = str(exc).replace("\n", " ")[:300]
            raise UserError(f"{name}: the problem {example} is not one of its problems ({first}); "
                            f"give one with --problem (fields {', '.join(fields)})") from None
        sp = tunable.space(problem, hw)
        print(f"{name}: {spec.description}")
        print(f"  problem fields: {', '.join(fields)}   (space shown for {example} on {hw.name})")
        for d in sp.describe():
            print(f"  {d['name']:<12} {d['kind']:<8} {d['values']}")
        for c in sp.constraints:
            print(f"  constraint: {getattr(c, '__doc__', None) or c}")
        if sp.notes:
            print(f"  notes: {sp.notes}")
        print(f"  {sp.size()} points before constraints\n")
    return 0


def _stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the server's whole process group (mlflow ui starts gunicorn/uvicorn workers),
    then SIGKILL whatever is left after grace_s."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            os.killpg(proc.pid, 0)  # the leader is gone: are its workers?
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            pass


def cmd_ui(args) -> int:
    from kernelevolve.tuner.records.tracking import resolve_uri

    _, uri = _experiment_name(args.experiment) if args.experiment else ("", DEFAULT_URI)
    uri = resolve_uri(args.uri or uri)
    print(f"MLflow UI over {uri} at http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    # Its own process group: Ctrl-C and SIGTERM reach only us, and we stop the server and its
    # workers together (no tracebacks from each of them, nothing left serving).
    proc = subprocess.Popen(cmd, start_new_session=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("\nstopping the MLflow UI", file=sys.stderr, flush=True)
        return 0
    finally:  # a second Ctrl-C or SIGTERM must not cut the clean-up short
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _stop_group(proc)
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old)


def cmd_reproduce(args) -> int:
    from kernelevolve.tuner.deploy import reproduce

    try:
        res = reproduce.reproduce(args.run_id, args.uri or DEFAULT_URI, seed=args.seed,
                                  trust_code=args.trust_code)
    except reproduce.ReproduceError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(res, indent=2, default=str) if args.json else reproduce.format_result(res))
    return 0 if res["reproduced"] else 1


def cmd_profile(args) -> int:
    from kernelevolve.tuner.profile import candidate

    res = candidate.profile(args.run_id, args.uri or DEFAULT_URI, calls=args.calls,
                            timeout_s=args.timeout, trust_code=args.trust_code)
    print(json.dumps(res, indent=2, default=str) if args.json else candidate.format_result(res))
    return 0


def cmd_export(args) -> int:
    from kernelevolve.tuner.deploy import export

    _writable(args.output)
    if args.triton_configs and args.triton_configs != "-":
        _writable(args.triton_configs)
    name, uri = _experiment_name(args.experiment)
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


def _sampler_names(given: list[str]) -> list[str]:
    from kernelevolve.tuner.search.samplers import SAMPLERS

    names = [n.strip() for g in given for n in g.split(",") if n.strip()]
    if "all" in names:
        return list(SAMPLERS)
    unknown = [n for n in names if n not in SAMPLERS]
    if unknown:
        raise UserError(f"unknown sampler '{unknown[0]}': known are {', '.join(SAMPLERS)} (or all)")
    return names


def cmd_replay(args) -> int:
    from kernelevolve.tuner.records import recorded_space
    from kernelevolve.tuner.review import replay_view
    from kernelevolve.tuner.search import replay

    names = _sampler_names(args.sampler)
    if args.seeds < 1 or (args.budget is not None and args.budget < 1) or args.concurrency < 1:
        raise UserError("--seeds, --budget and --concurrency take positive integers")
    if not 0 <= args.within < 1:
        raise UserError(f"--within {args.within}: a fraction of the oracle, e.g. 0.02 for 2%")
    for path in (args.json, args.plot):
        if path:
            _writable(path)
    if args.prior and "learned" not in names:
        raise UserError("--prior is what the learned sampler is fit on first: add --sampler learned")
    spaces = [recorded_space.read(p) for p in args.dataset]
    priors = [recorded_space.read(p) for p in args.prior]
    results = []
    for sp in spaces:
        for name in names:
            sampler, label = name, name
            same_kernel = [p for p in priors if p.header["kernel"] == sp.header["kernel"]]
            if name == "learned" and same_kernel:
                sampler, label = replay.with_prior(sp, same_kernel), replay.with_prior.name
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


def _writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"cannot write {path}: there is no folder {folder}")
    if os.path.isdir(path):
        raise UserError(f"cannot write {path}: it is a folder")


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
