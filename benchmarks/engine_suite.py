"""How fast the product sweeps: an experiment file run end to end through `kernelevolve run`'s engine.

Runs EXP (default experiments/suite-h100.yaml) with its target swapped for the GPU this machine
has (h100 or h200), and reports candidates per minute from command start (Ray start included) to
the last MLflow record, with every study's best (re-timed) latency and its MLflow parent run id.
`--one-at-a-time` runs the same suite with one candidate in flight and one whole GPU per
candidate: the reference the concurrent sweep's best configs are compared with.
Each run compiles into a fresh, empty Triton cache (a first sweep of these kernels on this
machine), unless --warm-cache keeps the machine's own; every log line carries the seconds since
the command started.

    python benchmarks/engine_suite.py --out $OUT/suite.json [--one-at-a-time] [--gpus N --cpus C] [EXP]

`--gpus N --cpus C` run on the node's first N GPUs and C of its cores (a one- or two-GPU node's
share of a four-GPU one), so that the rates on 1, 2 and 4 GPUs come from one machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

T0 = time.time()  # command start: the rate counts everything from here

import yaml  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def log(message: str) -> None:
    print(f"[{time.time() - T0:6.1f} s] {message}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment", nargs="?", default=os.path.join(ROOT, "experiments", "suite-h100.yaml"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--one-at-a-time", action="store_true")
    ap.add_argument("--profile", help="write the driver's cProfile (top functions) to this file")
    ap.add_argument("--stack-samples", help="sample the driver's stack every 20 ms into this JSON-lines file "
                                            "(tuner/execution/stacks.py); the trial actors sample theirs into "
                                            "FILE's folder")
    ap.add_argument("--warm-cache", action="store_true",
                    help="keep the machine's Triton cache (default: a fresh one, as a first sweep has)")
    ap.add_argument("--gpus", type=int, help="use only the first N GPUs of this node")
    ap.add_argument("--cpus", type=int, help="and only this many of its logical CPUs: Ray's num_cpus, and "
                                             "the run pinned to that many in whole cores (benchmarks/cpu_share.py)")
    args = ap.parse_args()
    if args.stack_samples:  # before Ray starts: its workers (the trial actors) inherit it
        from kernelevolve.tuner.execution.stacks import STACK_SAMPLES_ENV, STACK_T0_ENV

        os.environ[STACK_SAMPLES_ENV] = args.stack_samples + ".actors"
        os.environ[STACK_T0_ENV] = repr(T0)
    sampler = None
    if args.stack_samples:  # from here: the engine's import and the experiment's load are sampled too
        from kernelevolve.tuner.execution.stacks import StackSampler

        sampler = StackSampler(args.stack_samples, T0)
        sampler.start()
    if args.cpus:  # before any process starts: Ray's, the fork server's and their children inherit it
        from benchmarks.cpu_share import pin

        pinned = pin(args.cpus)
        log(f"pinned to {len(pinned)} logical CPUs: {','.join(map(str, pinned))}")
    if args.gpus:  # before anything initialises CUDA: Ray and torch see only these
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(args.gpus))
    if not args.warm_cache:  # the driver's TRITON_CACHE_DIR reaches every worker and lane
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="engine-suite-triton-")
    from kernelevolve.tuner.execution import spawner

    spawner.start_early()  # as `kernelevolve run` does, before the engine's import
    from kernelevolve.tuner.records import store_opening

    store_opening.start_early()  # and its MLflow store's opener
    from kernelevolve.tuner.execution import early_ray

    early_ray.start_early(args.cpus)  # its private Ray too (the sweep below asks for args.cpus)
    from kernelevolve.tuner.experiment import config
    from kernelevolve.tuner.execution import sweep
    from kernelevolve.tuner.records.sqlite_store import copy_store
    from kernelevolve.tuner.records.tracking import Tracker

    from benchmarks.engine import gpu_kind

    log("engine imported")
    kind, gpus = gpu_kind()
    log(f"GPU: {gpus} x {kind}")
    with open(args.experiment, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    res = dict(data["targets"][0].get("resources") or {"CPU": 1, "GPU": 1})
    if args.one_at_a_time:
        # a whole GPU per candidate: one runs at a time. The concurrency stays the file's: with
        # ordered results (search.ordered) it is the search's window, so this is the same search
        res = {"CPU": 1, "GPU": 1}
        data["search"]["candidates_per_trial"] = 1
        data["name"] += "-one-at-a-time"
    data["targets"] = [{"name": kind, "resources": res}]
    work = tempfile.mkdtemp(prefix="engine-suite-")
    os.chdir(work)
    for entry in data["kernels"]:  # plug-in paths stay relative to the shipped file
        if ":" in entry["kernel"] and not os.path.isabs(entry["kernel"].split(":")[0]):
            entry["kernel"] = os.path.join(os.path.dirname(os.path.abspath(args.experiment)), entry["kernel"])
    with open("exp.yaml", "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    exp = config.load("exp.yaml")
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        summaries = prof.runcall(sweep.run, exp, log=log, num_cpus=args.cpus)
        with open(args.profile, "w", encoding="utf-8") as fh:
            for order in ("cumulative", "tottime"):
                pstats.Stats(prof, stream=fh).sort_stats(order).print_stats(45)
    else:
        # --cpus: the Ray the sweep starts gets only this many cores
        summaries = sweep.run(exp, log=log, num_cpus=args.cpus)
    if sampler is not None:
        sampler.stop()
    tracker = Tracker(exp.tracking.uri, exp.name)
    last = 0.0  # the last MLflow record: the end of the measured span
    for run in tracker.client.search_runs([tracker.experiment_id], max_results=50000):
        last = max(last, (run.info.end_time or run.info.start_time or 0) / 1e3)
    wall = (last or time.time()) - T0  # command start to the last MLflow record
    n = sum(sum(s["counts"].values()) for s in summaries)
    import ray
    import torch
    import triton

    out = {"experiment": exp.name, "gpu": torch.cuda.get_device_name(0), "gpus": gpus,
           "cpus": int(ray.cluster_resources().get("CPU", 0)) if ray.is_initialized() else None,
           "torch": torch.__version__, "triton": triton.__version__, "ray": ray.__version__,
           "candidates": n, "wall_s": wall, "candidates_per_min": n / wall * 60,
           "mlflow_uri": tracker.uri, "studies": [
               {"study": s["study"], "counts": s["counts"], "parent_run_id": s["parent_run_id"],
                "best_ms": (s["best"] or {}).get("latency_ms"), "measured_by": (s["best"] or {}).get("measured_by"),
                "peer_ms": (s["best"] or {}).get("baseline_ms"), "best_config": (s["best"] or {}).get("config"),
                "best_triton_ms": (s.get("best_triton") or {}).get("latency_ms"),
                "best_triton_config": (s.get("best_triton") or {}).get("config"),
                "proposals": s.get("proposals"), "wall_s": s.get("wall_s"),
                # the finalists' interleaved rounds beside their sweep measurements: how far the
                # study's own timing and its re-timing agree
                "retimed": _retimed(s)} for s in summaries]}
    print(json.dumps(out, indent=1, default=str))
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1, default=str)
    copy_store(os.path.join(work, "mlflow.db"), os.path.splitext(os.path.abspath(args.out))[0] + ".mlflow.db")


def _retimed(summary: dict) -> list[dict]:
    rows = ((summary.get("retime") or {}).get("rows")) or []
    return [{"config": r.get("config"), "status": r.get("status"), "latency_ms": r.get("latency_ms"),
             "rounds_ms": r.get("rounds_ms")} for r in rows]


if __name__ == "__main__":
    main()
