"""Record search spaces on the GPU, through the product's engine, for replay on the CPU.

Runs experiments/record-spaces-h100.yaml (or EXP) with `kernelevolve run`'s engine
(benchmarks/engine.py: one sweep, every chosen study at once, each candidate verified and timed
in the evaluator), its target swapped for the GPU this machine has, then converts the sweep's
MLflow store into recorded spaces (tuner/records/to_recorded.py, as `kernelevolve dataset` does):

    OUT/recorded/<study>.jsonl.gz      one recorded space per study (kernelevolve replay reads them)
    OUT/<name>.runs.jsonl.gz           every MLflow run of the sweep (the export docs/results keeps)
    OUT/<name>.mlflow.db               the store itself
    OUT/record_spaces.json             per study: candidates, statuses, valid configs, wall time

A small device budget records a subset per command:
    --studies softmax,attention   only the studies whose key contains one of these (default all)
    --limit 500                   at most this many candidates per study (default: the file's)
    --stop-after 540              stop the sweep after this many seconds and keep what was recorded
                                  (the engine stops resumably; its records are exported all the same)
    --list                        print the studies, their valid configs and budgets; no GPU needed

    source .devbundle/activate.sh && python3 benchmarks/record_spaces.py --out $OUT --studies softmax
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT_EXP = os.path.join(ROOT, "experiments", "record-spaces-h100.yaml")


def select(data: dict, studies: list[str] | None, limit: int | None) -> dict:
    """The experiment with only the problems whose study key (kernel/problem) contains one of
    `studies`, and at most `limit` candidates per study."""
    from kernelevolve.tuner.experiment import registry

    data = json.loads(json.dumps(data))  # a deep copy: the file's dict stays as read
    kept = []
    for entry in data["kernels"]:
        problem_cls = registry.load(registry.resolve_ref(entry["kernel"])).kernel.problem
        problems = [p for p in entry["problems"]
                    if not studies or any(s in f"{entry['kernel']}/{_problem_key(problem_cls(**p))}"
                                          for s in studies)]
        if problems:
            kept.append(dict(entry, problems=problems))
    if not kept:
        raise SystemExit(f"record_spaces: error: no study matches --studies {','.join(studies)}")
    data["kernels"] = kept
    if limit:
        data["search"]["samples"] = limit
        data["search"]["concurrency"] = min(data["search"].get("concurrency", 1), limit)
    return data


def _problem_key(problem) -> str:
    return "_".join(f"{k}{v}" if k != "dtype" else str(v) for k, v in problem.model_dump().items())


def list_studies(data: dict) -> None:
    from benchmarks.engine import load

    exp, _ = load(data)
    for st in exp.studies():
        n = len(st.space.valid_configs())
        budget = st.budget()
        print(f"{st.key}: {n} valid configs, {min(n, budget)} to record"
              f"{' (whole space)' if budget >= n else ''}")


def stop_after(seconds: float, done: threading.Event) -> None:
    """SIGTERM to ourselves after `seconds`, once the engine's handler is in place (it is while
    candidates run: the engine then stops resumably and keeps its records). Before that, or
    while the last studies are re-timed, the signal would kill the process: it waits instead,
    and gives up when the sweep is `done`."""

    def engine_listens() -> bool:
        # The sweep's own handler (tuner/execution/sweep.py: Sweep.run's on_signal), installed only
        # while the Tuner runs; Ray installs one of its own at start-up that ends the process.
        handler = signal.getsignal(signal.SIGTERM)
        return getattr(handler, "__qualname__", "").endswith("run.<locals>.on_signal")

    def fire():
        if done.wait(seconds):
            return
        while not done.is_set():
            if engine_listens():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            done.wait(1.0)

    threading.Thread(target=fire, daemon=True).start()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", nargs="?", default=DEFAULT_EXP)
    ap.add_argument("--out", help="folder for the recorded spaces, the export and the store")
    ap.add_argument("--studies", help="comma-separated parts of study keys (default: every study)")
    ap.add_argument("--limit", type=int, help="candidates per study at most")
    ap.add_argument("--stop-after", type=float, help="seconds after which the sweep is stopped")
    ap.add_argument("--list", action="store_true", help="print the studies and exit")
    ap.add_argument("--target", help="hardware profile to record on (default: this machine's GPU; "
                    "cpu-interpreter checks the plumbing on a CPU, its latencies are no GPU's)")
    args = ap.parse_args(argv)
    with open(args.experiment, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    studies = [s.strip() for s in (args.studies or "").split(",") if s.strip()]
    data = select(data, studies, args.limit)
    if args.list:
        list_studies(data)
        return 0
    if not args.out:
        ap.error("--out is required (except with --list)")
    os.makedirs(os.path.join(args.out, "recorded"), exist_ok=True)

    from benchmarks import engine
    from kernelevolve.tuner.execution import sweep as engine_sweep
    from kernelevolve.tuner.records import recorded_space, to_recorded
    from kernelevolve.tuner.records.sync import sync

    data["targets"] = [engine.target(args.target) if args.target == "cpu-interpreter"
                       else dict(data["targets"][0], name=args.target or engine.gpu_kind()[0])]
    command = "python3 benchmarks/record_spaces.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    done = threading.Event()
    if args.stop_after:
        stop_after(args.stop_after, done)
    t0 = time.time()
    exp, folder = engine.load(data)
    here = os.getcwd()
    os.chdir(folder)
    stopped = None
    try:
        engine_sweep.run(exp, log=lambda m: print(m, flush=True))
    except engine_sweep.Interrupted as stop:  # --stop-after: what was recorded is kept
        stopped = str(stop)
        sync(exp, log=print)
    finally:
        done.set()
        os.chdir(here)
    wall = time.time() - t0
    uri = exp.tracking.uri
    runs = to_recorded.runs_of_store(uri, exp.name)
    to_recorded.write_export(runs, os.path.join(args.out, f"{exp.name}.runs.jsonl.gz"))
    sw = engine.Sweep(exp.name, uri, folder, [])
    engine.keep_store(sw, args.out, exp.name)
    summary = {"experiment": exp.name, "command": command, "wall_s": round(wall, 1), "stopped": stopped,
               "studies": []}
    for sp in to_recorded.recorded_spaces(runs, f"{exp.name}.runs.jsonl.gz", command=command):
        if stopped:
            sp.header["stopped"] = stopped  # a partial recording says so
        path = os.path.join(args.out, "recorded", to_recorded.file_name(sp))
        recorded_space.write(sp, path)
        h = sp.header["space"]
        summary["studies"].append({"study": sp.name, "file": os.path.relpath(path, args.out),
                                   "candidates": len(sp.candidates), "statuses": sp.header["statuses"],
                                   "valid_configs": h["valid_configs"], "exhaustive": h["exhaustive"],
                                   "oracle_ms": sp.oracle_ms()})
        print(f"{path}: {len(sp.candidates)} of {h['valid_configs']} valid configs "
              f"{sp.header['statuses']}{' (exhaustive)' if h['exhaustive'] else ''}", flush=True)
    with open(os.path.join(args.out, "record_spaces.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
