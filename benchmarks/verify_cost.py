"""What verification costs per candidate, and that the attack catalogue fails on this machine, through the engine.

Two sweeps of the product's engine (benchmarks/engine.py: Ray Tune + Optuna, every candidate through
the GPU lane's evaluator and its judge, every record in MLflow):

  cost     a few studies of different shapes (a GEMM with a large output, a long-row softmax, a
           norm, an embedding bag with a 512 MB table), each timed by each clock asked for
           (--clocks, default do_bench, clean, cudagraph: every clock must keep working). From each
           `ok` candidate's MLflow record, the verification share of its evaluation:
               checks   verify_s   verification outside the timing loop: every round trip to
                                   the judge (registering sets, the three verified launches,
                                   the sampled timed calls, the audit) and the guarded copies;
                                   its parts (verify_guard_s, _encode_s, _decode_s, _check_s,
                                   _release_s; the rest is the pipe) in a second table
               verdict  judge_s    the parent waiting for the judge's verdict
           share = (checks + verdict) / (eval_s + verdict). The target: under 10%. (Nothing is
           written between timed calls: they alternate input sets, tuner/measure/timed_outputs.py.)
           --timings: the candidates' timing budget, the suites' short screening and/or an
           experiment file's defaults (the share depends on it: verification's cost does not).
  attacks  every kernel of tests/attacks/ (its searched switch `cheat` on and off, a grid), as
           plug-ins: each honest config must end `ok`, each cheating one anything else, and no
           cheating config may be a study's best.

Writes OUT/verify_<parts>.json and .md (verify_attacks, verify_cost, or verify_attacks_cost for
both: per study and clock the shares' median / p90 / max, timed calls and how many were checked,
the judge's transport; per attack its statuses and errors), and copies each sweep's MLflow store
next to them.

On the GPU machine (from the project root, .devbundle carried), the attacks, then the cost:
    source .devbundle/activate.sh && python3 benchmarks/verify_cost.py --out $OUT/verify --skip cost
    source .devbundle/activate.sh && python3 benchmarks/verify_cost.py --out $OUT/verify --skip attacks
On a CPU, a smoke run of both:
    python benchmarks/verify_cost.py --out OUT --target cpu-interpreter --samples 4
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import engine  # noqa: E402

ATTACKS = os.path.join(ROOT, "tests", "attacks")

# (kernel, problem): outputs of 32 MB to 512 MB, inputs up to a 512 MB table
GPU_STUDIES = [
    ("matmul", {"M": 4096, "N": 4096, "K": 4096, "dtype": "bfloat16"}),
    ("softmax", {"rows": 8192, "cols": 4096, "dtype": "bfloat16"}),
    ("layer_norm_fwd", {"rows": 32768, "cols": 1024, "dtype": "bfloat16"}),
    ("embedding_bag_fwd", {"num_bags": 16384, "avg_bag_len": 20, "dim": 128, "num_rows": 1000000,
                           "mode": "sum", "dtype": "float32"}),
]
CPU_STUDIES = [("matmul", {"M": 64, "N": 48, "K": 80, "dtype": "float16"})]
PARTS = ("guard", "encode", "decode", "check", "release")  # verify_s's parts (records.schema)
METRICS = ("eval_s", "verify_s", "judge_s", "time_loop_s", "timed_calls", "timed_checked",
           "latency_ms", *(f"verify_{p}_s" for p in PARTS))


def _children(sw: engine.Sweep) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=sw.uri)
    exp = client.get_experiment_by_name(sw.name)
    return client.search_runs([exp.experiment_id], "tags.`kernelevolve.role` = 'candidate'",
                              max_results=50000)


def _quantiles(values: list) -> dict:
    if not values:
        return {}
    v = sorted(values)
    return {"median": statistics.median(v), "p90": v[min(len(v) - 1, int(0.9 * len(v)))], "max": v[-1],
            "n": len(v)}


def timing_budget(name: str) -> dict:
    """warmup_ms and rep_ms per candidate: `screen`, the short screening the suites use
    (benchmarks/engine.experiment's), or `default`, what an experiment file gets when it says
    nothing (tuner/experiment/config.py)."""
    if name == "screen":
        return {}
    from kernelevolve.tuner.experiment.config import Timing

    t = Timing()
    return {"warmup_ms": t.warmup_ms, "rep_ms": t.rep_ms}


def cost_experiment(tgt: dict, samples: int, clock: str, timing: str = "screen") -> dict:
    studies = GPU_STUDIES if tgt["name"] != "cpu-interpreter" else CPU_STUDIES
    kernels: dict = {}
    for k, p in studies:
        kernels.setdefault(k, []).append(p)
    return engine.experiment(f"verify-cost-{clock}-{timing}", [{"kernel": k, "problems": p} for k, p in kernels.items()],
                             tgt, samples=samples, concurrency=8, clock=clock, **timing_budget(timing))


def attack_experiment(tgt: dict) -> dict:
    """Every attack kernel a study; the grid evaluates its `cheat` switch off and on."""
    names = sorted(f[:-3] for f in os.listdir(ATTACKS) if f.endswith(".py") and f != "common.py")
    kernels = [{"kernel": f"{ATTACKS}/{n}.py:KERNEL",
                "problems": [{"M": 16, "N": 16, "K": 4096} if n == "fp16_acc" else {}]} for n in names]
    data = engine.experiment("verify-attacks", kernels, tgt, samples=2, concurrency=2, top_k=2)
    # the interpreter runs a K=4096 GEMM in tens of seconds on a loaded CPU
    data["search"] = dict(data["search"], sampler="grid", retries=1,
                          timeout_s=60 if tgt["name"] != "cpu-interpreter" else 600)
    data["search"].pop("samples", None)
    return data


def cost(tgt: dict, samples: int, clocks: list, out: str, log, timings: tuple = ("screen",)) -> dict:
    result = {}
    for clock, timing in [(c, t) for t in timings for c in clocks]:
        sw = engine.sweep(cost_experiment(tgt, samples, clock, timing), log=log)
        store = engine.keep_store(sw, out, f"verify_cost_{clock}_{timing}")
        by_study: dict = {}
        for run in _children(sw):
            m, tags = run.data.metrics, run.data.tags
            row = by_study.setdefault(tags.get("study") or run.data.params.get("study", "?"),
                                      {"status": {}, "records": []})
            row["status"][tags.get("status")] = row["status"].get(tags.get("status"), 0) + 1
            if tags.get("status") != "ok":
                continue
            checks, verdict = m.get("verify_s", 0.0), m.get("judge_s", 0.0)
            total = m.get("eval_s", 0.0) + verdict
            row["records"].append({**{k: m.get(k) for k in METRICS},
                                   "judge_transport": tags.get("judge_transport"),
                                   "share": (checks + verdict) / total if total else None,
                                   "share_checks": checks / total if total else None})
        for key, row in by_study.items():
            recs = row.pop("records")
            row["share"] = _quantiles([r["share"] for r in recs if r["share"] is not None])
            row["share_checks"] = _quantiles([r["share_checks"] for r in recs if r["share_checks"] is not None])
            for k in METRICS:
                row[k] = _quantiles([r[k] for r in recs if r.get(k) is not None])
            # the round trips' rest: the pipe and the pickles
            row["verify_pipe_s"] = _quantiles([r["verify_s"] - sum(r.get(f"verify_{p}_s") or 0 for p in PARTS)
                                               for r in recs if r.get("verify_s") is not None])
            row["judge_transport"] = sorted({r["judge_transport"] or "?" for r in recs})
        result[f"{clock}, {timing} timing"] = {"mlflow_store": store, "experiment": sw.name,
                                               "timing": {"clock": clock, **(cost_experiment(tgt, 1, clock, timing)["timing"])},
                         "best": {s["study"]: (s.get("best") or {}).get("latency_ms") for s in sw.summaries},
                         "parent_runs": {s["study"]: s.get("parent_run_id") for s in sw.summaries},
                         "studies": by_study}
    return result


def attacks(tgt: dict, out: str, log) -> dict:
    data = attack_experiment(tgt)
    sw = engine.sweep(data, log=log)
    store = engine.keep_store(sw, out, "verify_attacks")
    rows = {}
    for run in _children(sw):
        name = os.path.basename(run.data.tags.get("study", "").split(":")[0]).removesuffix(".py") or "?"
        cheat = run.data.params.get("cheat")
        rows.setdefault(name, {})[f"cheat={cheat}"] = {"status": run.data.tags.get("status"),
                                                       "error": (run.data.tags.get("error") or "")[:300]}
    best = {}
    for s in sw.summaries:
        cfg = (s.get("best") or {}).get("config") or {}
        best[s["study"]] = cfg.get("cheat")
    failures = []
    for name, row in rows.items():
        honest = row.get("cheat=False", {})
        if honest.get("status") != "ok":
            failures.append(f"{name}: the honest config ended {honest.get('status')}")
        # every other value of the switch is a way to cheat (True, or a named form of the attack)
        failures += [f"{name}: the cheating config {key} ended ok" for key, cheat in row.items()
                     if key != "cheat=False" and cheat.get("status") == "ok"]
    failures += [f"{study}: a cheating config was best" for study, c in best.items()
                 if c not in (False, "False", None)]
    return {"mlflow_store": store, "experiment": sw.name, "attacks": rows, "best_cheat": best,
            "failures": failures}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", help="h100, h200 or cpu-interpreter (default: this machine's GPU)")
    ap.add_argument("--samples", type=int, default=24, help="candidates per study of the cost sweep")
    ap.add_argument("--clocks", default="do_bench,clean,cudagraph")
    ap.add_argument("--skip", choices=("cost", "attacks"), action="append", default=[])
    ap.add_argument("--timings", default="screen",
                    help="comma-separated: screen (warm-up 5 ms, 20 ms of repetitions, as the suites "
                         "screen) and/or default (an experiment file's defaults)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    tgt = engine.target(args.target)
    clocks = [c for c in args.clocks.split(",") if c] if tgt["name"] != "cpu-interpreter" else ["do_bench"]
    report = {"target": tgt["name"]}
    if tgt["name"] != "cpu-interpreter":
        import torch
        import triton

        report.update(gpu=torch.cuda.get_device_name(0), torch=torch.__version__, triton=triton.__version__)
    log = print
    if "attacks" not in args.skip:
        report["attacks"] = attacks(tgt, out, log)
    if "cost" not in args.skip:
        report["cost"] = cost(tgt, args.samples, clocks, out, log,
                              tuple(t for t in args.timings.split(",") if t))
    # one file per part run, so the attacks and the cost can run as separate commands
    stem = "verify_" + "_".join(p for p in ("attacks", "cost") if p in report)
    if "cost" in report and args.clocks != ap.get_default("clocks"):  # a run per clock: a file each
        stem += "_" + "_".join(clocks)
    if "cost" in report and args.timings != ap.get_default("timings"):
        stem += "_" + "_".join(t for t in args.timings.split(",") if t)
    with open(os.path.join(out, f"{stem}.json"), "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    lines = [f"target {report['target']} {report.get('gpu', '')}", ""]
    if "attacks" in report:
        a = report["attacks"]
        lines += [f"attacks: {len(a['attacks'])} kernels; failures: {a['failures'] or 'none'}", "",
                  "| attack | honest | cheating | cheating's error |", "| --- | --- | --- | --- |"]
        for name, row in sorted(a["attacks"].items()):
            h, c = row.get("cheat=False", {}), row.get("cheat=True", {})
            lines.append(f"| {name} | {h.get('status')} | {c.get('status')} | {c.get('error', '')[:120]} |")
        lines.append("")
    for clock, res in (report.get("cost") or {}).items():
        lines += [f"cost, clock {clock} ({res['timing']}):", "",
                  "| study | ok | share median | p90 | max | checks median | timed calls | checked | transport |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for study, row in res["studies"].items():
            sh, ck = row["share"], row["share_checks"]
            pct = lambda q, k: f"{100 * q[k]:.1f}%" if q else "-"  # noqa: E731
            lines.append(f"| {study} | {row['status'].get('ok', 0)} | {pct(sh, 'median')} | {pct(sh, 'p90')} "
                         f"| {pct(sh, 'max')} | {pct(ck, 'median')} "
                         f"| {(row['timed_calls'] or {}).get('median', '-')} | {(row['timed_checked'] or {}).get('median', '-')} "
                         f"| {','.join(row['judge_transport'])} |")
        lines += ["", "where verification's time goes (median ms per candidate):", "",
                  "| study | eval | verify | guarded copies | encode | judge decode | judge check | release "
                  "| pipe |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for study, row in res["studies"].items():
            ms = lambda k: f"{1e3 * row[k]['median']:.1f}" if row.get(k) else "-"  # noqa: E731
            lines.append(f"| {study} | {ms('eval_s')} | {ms('verify_s')} | "
                         + " | ".join(ms(f"verify_{p}_s") for p in PARTS)
                         + f" | {ms('verify_pipe_s')} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, f"{stem}.md"), "w") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
