"""Record real Nsight Compute output of a few candidates on the H100: the raw pages under
tests/data/ncu/ (the parser's test data) and a check of the bottleneck rules on real counters.

Run on the GPU machine from the project root (no Ray, MLflow or network needed):

    source .devbundle/activate.sh && python benchmarks/ncu_capture.py --out "$OUT"

For each case below: the candidate is measured through the sweep's own evaluation path (an
evaluation process, `evaluate` request: verify, time), then profiled in a separate pass under
ncu (tuner.profile.ncu: the `profile` request, launches between cudaProfilerStart/Stop), the raw
page parsed and labelled (tuner.profile.candidate.counters_of). Written to --out (at most 8
files, the device tool's limit):
  metrics_check.txt   ncu's version and which of tuner/profile/metrics.py's metrics it knows
                      (launch__* ones are launch attributes, never in --query-metrics: the raw
                      page says whether ncu knows them; summary.json's ncu_missing names any not)
  <case>.csv          the raw page ncu exported (`--page raw --csv`), as under tests/data/ncu/
  summary.json        per case: config, measured latency, counters, label, roofline agreement
  ncu_logs.txt        ncu's own messages, per case
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GEMM = {"GROUP_M": 8, "SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "TMA": False, "WARP_SPECIALIZE": False,
        "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}
# (file name, kernel, problem, config, the label the rules are expected to give on an H100)
CASES = (
    ("gemm_bf16_4096", "matmul", {"M": 4096, "N": 4096, "K": 4096, "dtype": "bfloat16"},
     {**GEMM, "BLOCK_M": 128, "BLOCK_N": 256, "SPLIT_K": 1}, "compute-bound"),
    ("gemm_bf16_1024x1024x16384_splitk4", "matmul", {"M": 1024, "N": 1024, "K": 16384, "dtype": "bfloat16"},
     {**GEMM, "BLOCK_M": 128, "BLOCK_N": 128, "SPLIT_K": 4}, "compute-bound"),
    ("softmax_bf16_4096x32768", "softmax", {"rows": 4096, "cols": 32768, "dtype": "bfloat16"},
     {"ONLINE": False, "BLOCK": 32768, "ROWS": 1, "num_warps": 16, "num_stages": 1}, "memory-bound"),
    ("softmax_bf16_64x1024", "softmax", {"rows": 64, "cols": 1024, "dtype": "bfloat16"},
     {"ONLINE": False, "BLOCK": 1024, "ROWS": 1, "num_warps": 4, "num_stages": 1}, "launch-bound"),
    # finalists whose busiest memory unit is on-chip (the profile suite's GEMMs and attention)
    ("gemm_bf16_8192_persistent", "matmul", {"M": 8192, "N": 8192, "K": 8192, "dtype": "bfloat16"},
     {**GEMM, "BLOCK_M": 128, "BLOCK_N": 128, "SPLIT_K": 1, "GROUP_M": 16, "PERSISTENT": True,
      "num_stages": 5}, "memory-bound"),
    ("gemm_bf16_8192_vendor", "matmul", {"M": 8192, "N": 8192, "K": 8192, "dtype": "bfloat16"},
     {"IMPL": "vendor"}, "compute-bound"),
    ("attention_bf16_b4h16s4096d128", "attention",
     {"batch": 4, "heads": 16, "seq_len": 4096, "head_dim": 128, "causal": False, "dtype": "bfloat16"},
     {"BLOCK_M": 64, "BLOCK_N": 64, "SPLIT_MASKED": False, "num_stages": 3, "num_warps": 4}, "memory-bound"),
    ("layer_norm_bf16_65536x1024_looped", "layer_norm_fwd", {"rows": 65536, "cols": 1024, "dtype": "bfloat16"},
     {"BLOCK": 512, "LOOPED": True, "ROWS": 1, "num_stages": 2, "num_warps": 2}, "memory-bound"),
)
BENCH = {"clock": "do_bench", "warmup_ms": 25, "rep_ms": 100, "retime_rep_ms": 100, "wall_reps": 3}


def metrics_check(ncu: str) -> str:
    from kernelevolve.tuner.profile.metrics import base_name, in_query_metrics, ncu_metrics

    lines = [f"ncu: {ncu}"]
    lines += subprocess.run([ncu, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    known = set()
    for cmd in ([ncu, "--query-metrics"], [ncu, "--query-metrics", "--chip", "gh100"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
        except (OSError, subprocess.SubprocessError) as exc:  # the check is advice: the capture goes on
            lines.append(f"{' '.join(cmd[1:])}: {type(exc).__name__}: {exc}")
            continue
        known = {line.split()[0] for line in out.splitlines() if line.strip() and "__" in line.split()[0]}
        if known:
            lines.append(f"known metrics from: {' '.join(cmd[1:])} ({len(known)} base names)")
            break
    for m in ncu_metrics():
        if not in_query_metrics(m):  # a launch attribute --query-metrics never lists: see metrics.py
            lines.append(f"launch  {m} (not a counter: not in --query-metrics; read from the raw page)")
        else:
            lines.append(f"{'ok     ' if base_name(m) in known else 'MISSING'} {m}")
    return "\n".join(lines) + "\n"


def measure(kernel_ref: str, problem: dict, config: dict) -> dict:
    """The candidate's latency through the sweep's evaluation process (verify, then time)."""
    from kernelevolve.tuner.execution.worker import CandidateWorker, make_request

    worker = CandidateWorker(env={"TRITON_DEFAULT_FP_FUSION": "1", "TRITON_INTERPRET": "0"})
    try:
        return worker.request(make_request("evaluate", kernel_ref, problem, "h100", BENCH, config=config, seed=0),
                              timeout_s=600)
    finally:
        worker.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "ncu_capture")
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--probe-metrics", default="",
                    help="comma-separated ncu metrics asked for beside metrics.py's (e.g. breakdown:"
                         "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed): which units "
                         "a kernel keeps busy, before a counter joins metrics.py")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    from kernelevolve.tuner.experiment import hardware, registry
    from kernelevolve.tuner.profile import bottleneck, ncu
    from kernelevolve.tuner.profile.candidate import counters_of, profile_request

    try:
        exe = ncu.find_ncu()
    except ncu.NcuUnavailable as exc:
        print(f"ncu_capture: {exc}", file=sys.stderr)
        return 2
    with open(os.path.join(args.out, "metrics_check.txt"), "w") as fh:
        fh.write(metrics_check(exe))
    summary, logs = {}, []
    picked = set(filter(None, args.cases.split(",")))
    metrics = ncu.ncu_metrics() + [m for m in args.probe_metrics.split(",") if m]
    for name, kernel, problem, config, expected in CASES:
        if picked and name not in picked:
            continue
        ref = registry.resolve_ref(kernel)
        t0 = time.time()
        measured = measure(ref, problem, config)
        row = {"kernel": kernel, "problem": problem, "config": config, "expected": expected,
               "status": measured.get("status"), "latency_ms": measured.get("latency_ms"),
               "gpu_name": measured.get("gpu_name")}
        if measured.get("status") != "ok":
            row["error"] = str(measured.get("error"))[:2000]
            summary[name] = row
            print(f"{name}: not measured: {row['status']}: {row['error'][:300]}")
            continue
        logged = {"kernel_ref": ref, "problem": problem, "hardware": "h100", "bench": BENCH, "config": config}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                run = ncu.run(profile_request(logged, args.calls), tmp, timeout_s=900, metrics=metrics)
            except ncu.NcuFailed as exc:
                row["error"] = str(exc)
                log_path = os.path.join(tmp, "ncu.log")
                logs.append(f"===== {name}\n{open(log_path).read() if os.path.exists(log_path) else ''}")
                summary[name] = row
                print(f"{name}: profile failed: {exc}")
                continue
            with open(os.path.join(args.out, f"{name}.csv"), "w") as fh:
                fh.write(run.csv)
            logs.append(f"===== {name}: {' '.join(run.command)}\n{run.log}")
        fields = counters_of(run, measured["latency_ms"])
        dtype = problem.get("dtype")
        hw = hardware.profile("h100")
        row.update(counters=fields, reply=run.reply, dropped=run.dropped, wall_s=time.time() - t0,
                   roofline_side=bottleneck.roofline_side(fields, hw, dtype),
                   roofline_agrees=bottleneck.agrees_with_roofline(fields["bottleneck"], fields, hw, dtype))
        summary[name] = row
        print(f"{name}: {measured['latency_ms']:.4g} ms, {fields['bottleneck']} (expected {expected}): "
              f"{fields['bottleneck_reason']}; roofline {row['roofline_side']}, agrees {row['roofline_agrees']}")
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    with open(os.path.join(args.out, "ncu_logs.txt"), "w") as fh:
        fh.write("\n".join(logs))
    return 0 if all("counters" in r for r in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
