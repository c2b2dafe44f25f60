"""Tuning throughput on one GPU: the same GEMM candidates three ways, in one run.

  concurrent     kernelevolve, `--concurrency` candidates in flight at 1/concurrency GPU each:
                 compiles overlap on the CPU cores, timing serialised per GPU by the device lock
  one-at-a-time  kernelevolve, concurrency 1, one whole GPU per candidate
  autotune       Triton's own @triton.autotune over the same configs (serial, in one process;
                 it verifies nothing)

All three get the same candidate list: `--candidates` valid configs of the H100 space for bf16
4096^3, drawn with a fixed seed and given to kernelevolve as start points (so both sweeps evaluate
exactly these, in this order). Reported: candidates per minute (over the study's wall time in the sweep, `wall_s`, its re-timing included),
fraction of that wall time the GPU spent in timed sections, best latency (re-timed for the
sweeps), and the best configs' agreement.

    python benchmarks/throughput.py --out out/ [--candidates 120] [--concurrency 12] [--arms concurrent,serial,autotune]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PROBLEM = {"M": 4096, "N": 4096, "K": 4096, "dtype": "bfloat16"}


def candidates(n: int, seed: int) -> list[dict]:
    from kernelevolve.kernels.matmul import DEFAULT_CONFIG, MatmulProblem
    from kernelevolve.search_spaces.matmul import space
    from kernelevolve.tuner.experiment.hardware import profile

    sp = space(MatmulProblem(**PROBLEM), profile("h100"))
    # Only the switches the plain template has, so @triton.autotune can run the same configs.
    plain = [c for c in sp.valid_configs()
             if all(c[k] == DEFAULT_CONFIG[k] for k in c if k not in
                    ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages"))]
    return random.Random(seed).sample(plain, min(n, len(plain)))


def sweep_arm(name: str, configs: list[dict], concurrency: int) -> dict:
    from kernelevolve.tuner.experiment import config
    from kernelevolve.tuner.execution import sweep

    work = tempfile.mkdtemp(prefix=f"kernelevolve-{name}-")
    os.chdir(work)
    gpu = round(1.0 / concurrency, 4)
    exp = {"name": name, "kernels": [{"kernel": "matmul", "problems": [PROBLEM]}],
           "targets": [{"name": "h100", "resources": {"CPU": 1, "GPU": gpu}}],
           "search": {"sampler": "random", "samples": len(configs), "concurrency": concurrency,
                      "seed": 0, "timeout_s": 120, "top_k": 5, "start_points": configs},
           "timing": {"warmup_ms": 25, "rep_ms": 100}}
    with open("exp.yaml", "w") as fh:
        yaml.safe_dump(exp, fh)
    t0 = time.time()
    [summary] = sweep.run(config.load("exp.yaml"), log=lambda m: None)
    from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate
    state = SweepState.latest(os.path.join(work, ".kernelevolve", name))
    recs = unique_by_candidate([r for f in os.listdir(state.folder) if f.endswith(".jsonl")
                                for r in state.journal(f[:-6]).records()])
    evaluated = [r for r in recs if r["status"] != "invalid"]
    busy = sum(r.get("device_busy_s", 0) for r in evaluated)
    best = summary["best"] or {}
    return {"arm": name, "concurrency": concurrency, "candidates": len(evaluated),
            "statuses": summary["counts"], "fit_s": summary["wall_s"], "total_s": time.time() - t0,
            "per_min": 60 * len(evaluated) / summary["wall_s"], "gpu_busy_frac": busy / summary["wall_s"],
            "best_ms": best.get("latency_ms"), "best_config": best.get("config"),
            "baseline_ms": best.get("baseline_ms"), "gpus": sorted({r.get("gpu_name") for r in evaluated})}


def autotune_arm(configs: list[dict]) -> dict:
    import torch
    import triton
    import triton.language as tl  # noqa: F401  (the kernel module needs it loaded)

    from kernelevolve.kernels import matmul as mm
    from kernelevolve.tuner.measure.clocks import measure

    core = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "SPLIT_K")  # what the configs vary
    tconfigs = [triton.Config({k: c[k] for k in core}, num_warps=c["num_warps"],
                              num_stages=c["num_stages"]) for c in configs]
    tuned = triton.autotune(configs=tconfigs, key=["M", "N", "K"])(mm.matmul_kernel)
    a, b = mm.make_inputs(mm.MatmulProblem(**PROBLEM), torch.device("cuda"), 0)
    c = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    M, K = a.shape
    N = b.shape[1]
    # The plain GEMM: every other switch of the template at the value the sweeps used.
    fixed = dict(TWO_PASS=False, PERSISTENT=False, TMA=False, WARP_SPECIALIZE=False, EVEN_K=True,
                 B_KMAJOR=False, HAS_SCALE=False, HAS_BIAS=False, ACTIVATION="none", HAS_RESIDUAL=False)

    def run():
        grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]), 1)  # noqa: E731
        tuned[grid](a, b, c, None, None, None, None, M, N, K, a.stride(0), a.stride(1),
                    b.stride(0), b.stride(1), c.stride(0), c.stride(1), 0, 0, 0, **fixed)

    t0 = time.time()
    run()
    torch.cuda.synchronize()
    tune_s = time.time() - t0
    ms = measure(run, "do_bench", 25, 200)[1]
    cublas = measure(lambda: torch.matmul(a, b), "do_bench", 25, 200)[1]
    best = tuned.best_config
    return {"arm": "autotune", "candidates": len(configs), "fit_s": tune_s,
            "per_min": 60 * len(configs) / tune_s, "best_ms": ms, "baseline_ms": cublas,
            "best_config": {**best.kwargs, "num_warps": best.num_warps, "num_stages": best.num_stages}}


def agreement(rows: list[dict], rounds: int = 7, problem: dict = PROBLEM, hardware: str = "h100") -> dict:
    """Re-time every arm's best config beside cuBLAS (the kernel's peer) in one evaluation process,
    with the engine's own interleaved re-timing (the `retime` request: each config's calls judged
    as in a sweep, the rounds alternating): whether the arms agree must not depend on which run
    measured which."""
    from kernelevolve.kernels import matmul as mm
    from kernelevolve.tuner.execution.worker import CandidateWorker, make_request
    from kernelevolve.tuner.experiment import registry
    from kernelevolve.tuner.experiment.config import Timing

    configs = {}
    for r in rows:
        if r.get("best_config"):
            full = dict(mm.DEFAULT_CONFIG, **r["best_config"])
            configs.setdefault(json.dumps(full, sort_keys=True), (full, []))[1].append(r["arm"])
    bench = Timing(warmup_ms=25, rep_ms=100, retime_rep_ms=100).bench_settings("do_bench")
    worker = CandidateWorker()
    try:
        reply = worker.request(make_request("retime", registry.BUILTIN["matmul"], problem, hardware, bench,
                                            configs=[cfg for cfg, _ in configs.values()], rounds=rounds),
                               timeout_s=1800)
    finally:
        worker.close()
    if reply.get("status") != "ok":
        raise RuntimeError(f"the re-timing failed: {reply.get('error')}")
    by_config = {json.dumps(r["config"], sort_keys=True): r for r in reply["rows"]}
    return {"rows": [{"arms": arms, "config": cfg, "median_ms": by_config[k]["latency_ms"],
                      "status": by_config[k]["status"]} for k, (cfg, arms) in configs.items()],
            "cublas_ms": reply["baseline_ms"], "rounds": rounds}


def _write(out: str, rows: list[dict], agree: dict | None) -> str:
    lines = ["| arm | candidates | wall of tuning phase (s) | candidates/min | GPU busy timing | best ms | cuBLAS ms | best config |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arm']} | error: {r['error'][:200]} | | | | | | |")
            continue
        busy = f"{100 * r['gpu_busy_frac']:.0f}%" if "gpu_busy_frac" in r else "n/a"
        lines.append(f"| {r['arm']} | {r['candidates']} | {r['fit_s']:.1f} | {r['per_min']:.1f} | {busy} | "
                     f"{r['best_ms']:.4f} | {r.get('baseline_ms') or float('nan'):.4f} | {json.dumps(r['best_config'])} |")
    if agree:
        lines += ["", f"Best configs re-timed side by side by the engine ({agree['rounds']} interleaved rounds, "
                  "one evaluation process, every config's calls judged):", "",
                  "| found by | median ms | vs cuBLAS | verdict | config |", "| --- | --- | --- | --- | --- |"]
        for a in agree["rows"]:
            lines.append(f"| {', '.join(a['arms'])} | {a['median_ms']:.4f} | {agree['cublas_ms'] / a['median_ms']:.3f}x "
                         f"| {a['status']} | {json.dumps(a['config'])} |")
        lines.append(f"| cuBLAS | {agree['cublas_ms']:.4f} | 1.000x | |")
    text = "\n".join(lines)
    with open(os.path.join(out, "throughput.md"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(out, "throughput.json"), "w") as fh:
        json.dump({"arms": rows, "agreement": agree}, fh, indent=1, default=str)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out")
    ap.add_argument("--candidates", type=int, default=120)
    ap.add_argument("--concurrency", type=int, default=12)
    ap.add_argument("--arms", default="concurrent,serial,autotune")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    configs = candidates(args.candidates, args.seed)
    rows = []
    for arm in args.arms.split(","):
        # Each arm compiles from scratch: a Triton cache warmed by an earlier arm would make the
        # later ones look faster than they are.
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"triton-cache-{arm}-")
        try:
            if arm == "concurrent":
                rows.append(sweep_arm("concurrent", configs, args.concurrency))
            elif arm == "serial":
                rows.append(sweep_arm("serial", configs, 1))
            elif arm == "autotune":
                rows.append(autotune_arm(configs))
        except Exception as exc:  # one arm's failure is reported, the others still run
            rows.append({"arm": arm, "error": f"{type(exc).__name__}: {exc}"})
        print(json.dumps(rows[-1], default=str), flush=True)
        _write(out, rows, None)
    agree = None
    try:
        agree = agreement(rows)
    except Exception as exc:
        print(f"agreement step failed: {type(exc).__name__}: {exc}")
    print(_write(out, rows, agree))


if __name__ == "__main__":
    main()
