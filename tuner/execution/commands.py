"""`kernelevolve run` and `kernelevolve sync`: a sweep driven from a terminal.

`run` loads and checks the experiment, drives the sweep (tuner.execution.sweep) with a progress
display, prints each study's summary row and says how to review it; a study in which no candidate
was correct makes it exit with code 1, a stop signal with 128 + the signal (resumable). `sync`
sends journaled records to MLflow. The bodies live here, beside the sweep they drive; tuner/cli.py
parses the command line and dispatches. Nothing heavy is imported at the top: `kernelevolve --help`
imports this module.
"""
from __future__ import annotations

import contextlib
import sys

from kernelevolve.tuner.review.text import _note, _table, _width

EXIT_NO_CORRECT = 1


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
    from kernelevolve.tuner.execution import spawner

    spawner.start_early()  # its torch import beside the engine's, on a GPU machine (spawner says why)
    from kernelevolve.tuner.records import store_opening

    store_opening.start_early()  # MLflow's imports beside the engine's (store_opening says why)
    if not args.address and not _names_ray_address(args.experiment):
        from kernelevolve.tuner.execution import early_ray

        early_ray.start_early()  # the sweep's private Ray, beside the engine's imports (early_ray says why)
    from kernelevolve.tuner.execution import sweep
    from kernelevolve.tuner.review.report import fmt

    exp = _config().load(args.experiment)
    _config().check_gpu_targets(exp, args.address)
    _check_interpreter_targets(exp)
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


def _check_interpreter_targets(exp) -> None:
    """An interpreter target on a machine whose Triton interpreter cannot run our kernels: the
    experiment's error (exit 2) before anything starts, not one failed record per candidate."""
    from kernelevolve.tuner.experiment.hardware import interpreter_problem

    targets = [i for i, t in enumerate(exp.targets) if t.profile.interpreter]
    problem = interpreter_problem() if targets else None
    if problem:
        raise _config().ConfigError(f"{exp.source_path}: targets[{targets[0]}]: {problem}")


def _names_ray_address(path: str) -> bool:
    """Whether the experiment file asks for a Ray cluster (ray.address), read without the engine
    (a file that cannot be read so answers yes: no Ray is started early, the load reports it)."""
    try:
        import yaml

        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        return bool(((data or {}).get("ray") or {}).get("address"))
    except Exception:  # noqa: BLE001 - the experiment's load says what is wrong with it
        return True


def _latency(ms, measured_by) -> str:
    from kernelevolve.tuner.review.report import latency_cell

    return latency_cell(ms, measured_by)


def cmd_sync(args) -> int:
    from kernelevolve.tuner.records.sync import sync

    sync(_config().load(args.experiment))
    return 0
