"""Profile-guided tuning, measured: every finalist of the GEMM and ops suites under Nsight Compute,
and whether steering by the counters reaches a config within 2% of the best in fewer candidates.

Two phases, each through the product's engine (benchmarks/engine.py: tuner.execution.sweep.run):

  profile  experiments/profile-h100.yaml (the GEMM suite's 14 studies and the ops suite's 16, all at
           once or a shard of them by --kernels; --samples candidates each) with `profile.top_k`
           --top-k: after each study's re-timing its finalists are profiled together in one ncu run
           (one launcher call each: the file's `profile.calls`) and their counters and labels
           logged to MLflow; the log has, per study, what its ncu run cost. The store is exported (export_runs.py) and summarised (profile_summary.py): per
           finalist its study, config, latency, label, roofline position and whether they agree;
           the agreement over all finalists; for each disagreement the counters that explain it.
           The profile view (profile/finalists.csv and profile/roofline_counters.png) of one study,
           one with a disagreement where there is one, is copied out for the docs.
  steer    STEER_STUDIES (a subset of the same file), per seed two sweeps: `profile.steer` off and
           on (steer_every --steer-every), same seed and budget, the arms' order alternating by seed
           (the second arm finds the first's compiles in Triton's cache). Per study and seed: searched
           candidates (the GEMM vendor path and invalid configs left out) until the first within 2%
           of the best latency either arm found, each arm in its own evaluation order.
           Steering profiles the best so far in a thread while the search goes on; its proposals
           count only if they arrive before the study has asked for all its candidates, hence more
           candidates per study (48) and fewer in flight (4) than the profile phase.

Time: the phases run in that order; a steer seed starts only if the time left under --budget-s
fits a pair of arms (the first pair's own time once measured, PAIR_ESTIMATE_S before). A SIGTERM
(`timeout`) stops the running sweep as the engine stops one (resumable); what it logged is
summarised all the same. Outputs, written after each phase (at most 6 files):
  profile_suite.json         every number: finalist rows, agreement, steering rows and verdict
  profile_suite.md           the tables
  profile_suite.log          the engine's log, seconds since the command started
  profile_suite.runs.jsonl.gz  every MLflow run of every sweep (export_runs.py)
  view_finalists.csv, view_roofline_counters.png  one study's profile view

On the GPU machine (ncu on the PATH; tuner/profile/ncu.py says where else it is looked for), the
profile phase in two calls, the GEMM suite's kernels then the ops, merged after (on any machine):
    source .devbundle/activate.sh && timeout 520 python3 benchmarks/profile_suite.py --out "$OUT/gemm" \
        --phases profile --kernels matmul,gemm_epilogue,conv2d
    source .devbundle/activate.sh && timeout 520 python3 benchmarks/profile_suite.py --out "$OUT/ops" \
        --phases profile --kernels embedding_bag_fwd,embedding_bag_bwd,jagged_to_padded_dense,...
    python benchmarks/profile_suite.py --merge GEMM/profile_suite.json OPS/profile_suite.json --out MERGED
Steer seeds likewise (--phases steer --seeds 1,2,3), merged the same way.
On a CPU, the plumbing only (the Triton interpreter, two tiny studies, nothing profiled: ncu reads
a GPU's counters):
    python benchmarks/profile_suite.py --out /tmp/ps --target cpu-interpreter
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time

T0 = time.time()  # the budget counts from the command's start

import yaml  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import engine, profile_summary as summary  # noqa: E402
from benchmarks.export_runs import export  # noqa: E402

EXPERIMENT = os.path.join(ROOT, "experiments", "profile-h100.yaml")
STEM = "profile_suite"
# Steering's studies: two GEMMs where 40 candidates stayed well short of cuBLAS (so a better
# config exists for the rules to find) and two row-wise ops whose spaces have the rules'
# ROWS / num_warps / num_stages moves.
STEER_STUDIES = (
    ("matmul", {"M": 512, "N": 4096, "K": 4096, "dtype": "bfloat16"}),
    ("matmul", {"M": 65536, "N": 256, "K": 512, "dtype": "bfloat16"}),
    ("softmax", {"rows": 32768, "cols": 1024, "dtype": "bfloat16"}),
    ("rms_norm_fwd", {"rows": 65536, "cols": 1024, "dtype": "bfloat16"}),
)
CPU_STUDIES = (  # --target cpu-interpreter: seconds per candidate in the interpreter
    ("matmul", {"M": 48, "N": 40, "K": 56, "dtype": "float16"}),
    ("softmax", {"rows": 16, "cols": 64, "dtype": "float16"}),
)
PAIR_ESTIMATE_S = 150.0  # one seed's two steer arms, before one has been timed (4 studies x 24)


class Log:
    """Every line to stdout and OUT/profile_suite.log, with the seconds since the command started."""

    def __init__(self, path: str):
        self.fh = open(path, "a", encoding="utf-8")

    def __call__(self, message: str) -> None:
        line = f"[{time.time() - T0:6.1f} s] {message}"
        print(line, flush=True)
        self.fh.write(line + "\n")
        self.fh.flush()


def left_s(args) -> float:
    return args.budget_s - (time.time() - T0)


def base_experiment(args) -> dict:
    """experiments/profile-h100.yaml with this machine's target (or the interpreter's tiny studies)."""
    with open(args.experiment, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    data["targets"] = [engine.target(args.target)]
    if args.target == "cpu-interpreter":
        data["kernels"] = [{"kernel": k, "problems": [p]} for k, p in CPU_STUDIES]
        data["timing"] = {"clock": "do_bench"}  # a GPU clock name; the interpreter times wall clock
    return data


def subset(data: dict, studies) -> dict:
    """`data` with only `studies` ((kernel, problem) pairs, each required to be in it)."""
    kernels = []
    for kernel, problem in studies:
        entry = next((e for e in data["kernels"] if e["kernel"] == kernel and problem in e["problems"]), None)
        if entry is None:
            raise SystemExit(f"steer study {kernel} {problem} is not in {data['name']}")
        kernels.append({**{k: v for k, v in entry.items() if k != "problems"}, "problems": [problem]})
    return {**data, "kernels": kernels}


def with_search(data: dict, **fields) -> dict:
    """`data` with these search fields; concurrency no higher than samples (the loader requires it)."""
    search = {**data["search"], **fields}
    search["concurrency"] = min(search["concurrency"], search["samples"])
    return {**data, "search": search}


def run_sweep(data: dict, log) -> tuple[engine.Sweep | None, str, str]:
    """(the Sweep or None if stopped, its folder, why it stopped or "")."""
    from kernelevolve.tuner.execution.sweep import Interrupted

    folder = tempfile.mkdtemp(prefix=f"kernelevolve-{data['name']}-")
    try:
        return engine.sweep(data, log=log, folder=folder), folder, ""
    except Interrupted as stop:  # SIGTERM from `timeout`: summarise what the store holds
        log(f"{data['name']}: {stop}")
        return None, folder, str(stop)
    except Exception as exc:  # `timeout` signals Ray's processes too: the store still holds what was logged
        log(f"{data['name']}: the sweep failed: {type(exc).__name__}: {exc}")
        return None, folder, f"{type(exc).__name__}: {exc}"


def read_runs(path: str, experiment: str | None = None) -> list[dict]:
    with gzip.open(path, "rt") as fh:
        runs = [json.loads(line) for line in fh]
    return [r for r in runs if experiment is None or r["experiment"] == experiment]


def study_records(folder: str, name: str) -> dict[str, list[dict]]:
    """Each study's journaled candidate records, in the order they ended."""
    from kernelevolve.tuner.execution.sweep import slug
    from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate

    state = SweepState.latest(os.path.join(folder, ".kernelevolve", name))
    if state is None:
        return {}
    return {key: unique_by_candidate(state.journal(slug(key)).records()) for key in state.data.get("studies", {})}


def copy_view(folder: str, rows: list[dict], out: str, log) -> str | None:
    """One study's profile view (the table and the counter roofline on its run) into OUT: a study
    with a disagreement if there is one (the docs explain it), else the one with most finalists."""
    from mlflow.tracking import MlflowClient

    if not rows:
        return None
    by_study: dict[str, list] = {}
    for r in rows:
        by_study.setdefault(r["parent_run_id"], []).append(r)
    pick = max(by_study, key=lambda p: (any(r["agrees"] is False for r in by_study[p]), len(by_study[p])))
    client = MlflowClient(f"sqlite:///{os.path.join(folder, 'mlflow.db')}")
    try:
        local = client.download_artifacts(pick, "profile", tempfile.mkdtemp())
    except Exception as exc:  # the view is for the docs; the numbers stand without it
        log(f"profile view of {pick}: not copied: {type(exc).__name__}: {exc}")
        return None
    for name in ("finalists.csv", "roofline_counters.png"):
        if os.path.exists(os.path.join(local, name)):
            shutil.copy(os.path.join(local, name), os.path.join(out, f"view_{name}"))
    return by_study[pick][0]["study"]


def profile_phase(args, data: dict, runs_path: str, log) -> dict:
    data = {**with_search(data, samples=args.samples), "profile": {**data.get("profile", {}), "top_k": args.top_k}}
    if args.kernels:  # a shard of the suite
        data["kernels"] = [e for e in data["kernels"] if e["kernel"] in args.kernels]
    t = time.time()
    sw, folder, stopped = run_sweep(data, log)
    export(os.path.join(folder, "mlflow.db"), runs_path)
    runs = read_runs(runs_path, data["name"])
    rows = summary.finalist_rows(runs)
    oks = [int(json.loads(r["tags"].get("status_counts") or "{}").get("ok", 0)) for r in runs
           if r["tags"].get("kernelevolve.role") == "study"]
    expected = sum(min(args.top_k, data["search"]["top_k"], n) for n in oks)
    view = copy_view(folder, rows, args.out, log)
    log(f"profile phase: {len(rows)} finalists profiled of {expected}, {time.time() - t:.0f} s")
    return {"experiment": data["name"], "samples": args.samples, "top_k": args.top_k, "studies": len(oks),
            "expected": expected, "rows": rows, "agreement": summary.agreement(rows),
            "not_profiled": summary.not_profiled(runs), "view_study": view, "stopped": stopped,
            "wall_s": time.time() - t, "device": _device(runs)}


def steer_arm(args, data: dict, seed: int, steer: bool, runs_path: str, log) -> tuple[dict, str]:
    """One arm: ({(study, seed, steer): {"records", "steered", "steer_profiles", "wall_s", "labels"}},
    why it stopped or "")."""
    name = f"steer-{'on' if steer else 'off'}-s{seed}"
    arm = {**with_search(data, samples=args.steer_samples, seed=seed, concurrency=args.steer_concurrency), "name": name,
           "profile": {"top_k": 0, "steer": steer, "steer_every": args.steer_every, "calls": 3, "timeout_s": 120}}
    sw, folder, stopped = run_sweep(arm, log)
    export(os.path.join(folder, "mlflow.db"), runs_path, append=True)
    summaries = {s["study"]: s for s in (sw.summaries if sw else [])}
    out = {}
    for key, records in study_records(folder, name).items():
        s = summaries.get(key, {})
        out[(key, seed, steer)] = {"records": records, "steered": (s.get("proposals") or {}).get("steered", 0),
                                   "steer_profiles": len(s.get("bottlenecks") or {}), "wall_s": s.get("wall_s"),
                                   "labels": s.get("bottlenecks") or {}}
    return out, stopped


def steer_phase(args, data: dict, runs_path: str, log) -> dict:
    base = subset(data, CPU_STUDIES if args.target == "cpu-interpreter" else STEER_STUDIES)
    arms, skipped, estimate = {}, [], PAIR_ESTIMATE_S
    for seed in args.seeds:
        if left_s(args) < estimate:
            skipped.append(f"seed {seed}: {left_s(args):.0f} s of the budget left, a pair of arms takes ~{estimate:.0f} s")
            log(f"steer: {skipped[-1]}")
            continue
        t, pair = time.time(), {}
        for steer in ((False, True) if seed % 2 == 0 else (True, False)):
            arm, stopped = steer_arm(args, base, seed, steer, runs_path, log)
            if stopped:  # a cut-short arm searched fewer candidates: no fair comparison
                skipped.append(f"seed {seed}: the steer {'on' if steer else 'off'} arm stopped: {stopped}")
                break
            pair.update(arm)
        else:
            arms.update(pair)
        estimate = time.time() - t
        log(f"steer: seed {seed}, both arms, {estimate:.0f} s")
    rows = summary.steering_rows(arms)
    return {"studies": [f"{k} {p}" for k, p in (CPU_STUDIES if args.target == "cpu-interpreter" else STEER_STUDIES)],
            "samples": args.steer_samples, "steer_every": args.steer_every, "seeds": args.seeds,
            "concurrency": args.steer_concurrency,
            "rows": rows, "verdict": summary.steering_verdict(rows), "skipped": skipped,
            "labels": {f"{k[0]} seed {k[1]}": v["labels"] for k, v in arms.items() if k[2]},
            "note": (f"TPE, {args.steer_samples} candidates per study, steer_every {args.steer_every}; "
                     f"{args.steer_concurrency} in flight per study; candidates counted in each arm's evaluation "
                     "(completion) order, "
                     "the vendor path and invalid configs not counted; best = the fastest screened latency "
                     "of either arm."),
            "device": next((r.get("gpu_name") for a in arms.values() for r in a["records"] if r.get("gpu_name")), "")}


SETTINGS = ("samples", "steer_every", "concurrency", "studies")  # steer runs merge only if these match


def merge(paths: list[str]) -> dict:
    """Several runs' JSONs as one: the finalists of every profile phase (shards by --kernels), the
    steer rows of all (a later file's row for the same study and seed wins); agreement and verdict
    recomputed. For phases or seeds run as separate GPU commands. Where a run's MLflow export sits
    beside its JSON, its finalists' rows are read again from the recorded counters, so the rules
    of today's tuner.profile.bottleneck label them."""
    results = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            result = json.load(fh)
        runs_path = os.path.join(os.path.dirname(path), f"{STEM}.runs.jsonl.gz")
        if result.get("profile") and os.path.exists(runs_path):
            with gzip.open(runs_path, "rt", encoding="utf-8") as fh:
                result["profile"]["rows"] = summary.finalist_rows([json.loads(line) for line in fh if line.strip()])
        results.append(result)
    out: dict = {"merged_from": paths}
    profs = [r["profile"] for r in results if r.get("profile")]
    if profs:  # shards of the profile phase (--kernels): their finalists together
        rows = list({r["run_id"]: r for p in profs for r in p["rows"]}.values())
        rows.sort(key=lambda r: (r["study"], r["latency_ms"] if r["latency_ms"] is not None else float("inf")))
        out["profile"] = {**profs[0], "rows": rows, "agreement": summary.agreement(rows),
                          "expected": sum(p["expected"] for p in profs),
                          "studies": sum(p["studies"] for p in profs),
                          "not_profiled": [n for p in profs for n in p["not_profiled"]],
                          "view_study": [p["view_study"] for p in profs]}
    steer = [r["steering"] for r in results if r.get("steering")]
    if steer:
        for s in steer[1:]:
            if any(s.get(k) != steer[0].get(k) for k in SETTINGS):
                raise SystemExit(f"steer runs differ in {[k for k in SETTINGS if s.get(k) != steer[0].get(k)]}")
        rows = {(r["study"], r["seed"]): r for s in steer for r in s["rows"]}
        rows = [rows[k] for k in sorted(rows)]
        out["steering"] = {**steer[0], "rows": rows, "verdict": summary.steering_verdict(rows),
                           "seeds": sorted({r["seed"] for r in rows}),
                           "skipped": [x for s in steer for x in s.get("skipped", [])],
                           "labels": {k: v for s in steer for k, v in s.get("labels", {}).items()}}
    return out


def _device(runs: list[dict]) -> str:
    return next((r["tags"]["gpu_name"] for r in runs if r["tags"].get("gpu_name")), "")


def write(args, result: dict) -> None:
    with open(os.path.join(args.out, f"{STEM}.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, default=str)
    with open(os.path.join(args.out, f"{STEM}.md"), "w", encoding="utf-8") as fh:
        fh.write(summary.markdown(result) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--experiment", default=EXPERIMENT)
    ap.add_argument("--phases", default="profile,steer", help="comma-separated: profile, steer")
    ap.add_argument("--samples", type=int, default=12, help="candidates per study, profile phase")
    ap.add_argument("--top-k", type=int, default=2, help="finalists profiled per study")
    ap.add_argument("--steer-samples", type=int, default=48, help="candidates per study, each steer arm")
    ap.add_argument("--steer-every", type=int, default=8)
    ap.add_argument("--steer-concurrency", type=int, default=4, help="candidates in flight per study, steer arms")
    ap.add_argument("--seeds", default="0,1,2", help="steer phase: comma-separated sampler seeds")
    ap.add_argument("--budget-s", type=float, default=540.0, help="no steer seed starts past this")
    ap.add_argument("--kernels", default="", help="profile phase: only these kernels (comma-separated), a shard")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="merge earlier runs' profile_suite.json into --out")
    ap.add_argument("--target", help="hardware profile (default: this machine's GPU); cpu-interpreter: plumbing")
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.kernels = [k for k in args.kernels.split(",") if k]
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if args.target == "cpu-interpreter":
        args.samples, args.steer_samples, args.seeds = min(args.samples, 3), min(args.steer_samples, 3), args.seeds[:1]
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    if args.merge:
        result = merge(args.merge)
        write(args, result)
        print(summary.markdown(result))
        return 0
    log = Log(os.path.join(args.out, f"{STEM}.log"))
    runs_path = os.path.join(args.out, f"{STEM}.runs.jsonl.gz")
    data = base_experiment(args)
    unknown = sorted(set(args.kernels) - {e["kernel"] for e in data["kernels"]})
    if unknown:  # a misspelt shard would profile fewer studies and say nothing
        log(f"--kernels: {', '.join(unknown)} not in {data['name']} "
            f"(its kernels: {', '.join(e['kernel'] for e in data['kernels'])})")
        return 2
    log(f"{data['name']}: phases {sorted(phases)}, target {data['targets'][0]['name']}, budget {args.budget_s:.0f} s")
    if args.target != "cpu-interpreter":  # without ncu both phases would run minutes for nothing
        from kernelevolve.tuner.profile import ncu

        try:
            log(f"ncu: {ncu.find_ncu()}, version {ncu.version()}")
        except ncu.NcuUnavailable as exc:
            log(str(exc))
            return 2
    result: dict = {"command": sys.argv, "args": {k: v for k, v in vars(args).items()}}
    if "profile" in phases:
        result["profile"] = profile_phase(args, data, runs_path, log)
        write(args, result)
    if "steer" in phases:
        result["steering"] = steer_phase(args, data, runs_path, log)
        write(args, result)
    result["wall_s"] = time.time() - T0
    write(args, result)
    log(f"done in {result['wall_s']:.0f} s; {args.out}")
    print(summary.markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
