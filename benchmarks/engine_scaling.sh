#!/usr/bin/env bash
# How the engine's rate grows with a node's GPUs: each suite run end to end (command start to the
# last MLflow record, Ray start included) on the node's first 1, 2 and 4 GPUs with 16 logical CPUs
# per GPU (a one-, two- and four-GPU node's share of this one; each run pinned to that many in
# whole cores: benchmarks/cpu_share.py says why), all on one machine.
#   bash benchmarks/engine_scaling.sh OUT [suite ...]      (default: suite-h100 suite-h100-large)
#   GPU_COUNTS="4 1" bash benchmarks/engine_scaling.sh ...  (which GPU counts; default 4 2 1)
# Writes OUT/scaling.tgz: per run <suite>_g<n>.json, .log.gz, .runs.jsonl.gz (every record of
# the run's MLflow store, benchmarks/export_runs.py), .stacks.jsonl.gz (the driver's stack every
# 20 ms, and the trial actors' threads over their start: tuner/execution/stacks.py) and .timeline.json (where its time went:
# benchmarks/sweep_timeline.py); small enough to come back from a device call, where an archive
# of the six stores themselves (24 MB) did not.
set -u
out=$1; shift
suites=${*:-suite-h100 suite-h100-large}
here=$(cd "$(dirname "$0")/.." && pwd)
gpus=$(nvidia-smi -L | wc -l)
mkdir -p "$out"
# imports once before the first timed run, so that no run pays a cold page cache; and the empty
# MLflow store new stores are copied from (tuner/records/sqlite_store.py), made once per machine as
# any sweep on it makes it, so that the first run does not pay for it alone
(cd "$here" && python3 -c "import torch, triton, ray.tune, mlflow, optuna
from kernelevolve.tuner.records.sqlite_store import template; template()") 2>/dev/null
for suite in $suites; do
  for n in ${GPU_COUNTS:-4 2 1}; do
    [ "$n" -le "$gpus" ] || continue
    name=${suite}_g$n
    timeout 300 python3 "$here/benchmarks/engine_suite.py" --out "$out/$name.json" --gpus "$n" \
      --cpus $((16 * n)) --stack-samples "$out/$name.stacks.jsonl" "$here/experiments/$suite.yaml" > "$out/$name.log" 2>&1
    # the driver's stack every 20 ms, and each trial actor's threads over its start, in
    # $name.stacks.jsonl.actors/ (tuner/execution/stacks.py)
    gzip -f "$out/$name.stacks.jsonl"
    python3 - "$out/$name.json" <<'PY' || echo "$name: failed (see its log)"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['experiment']} on {r['gpus']} x {r['gpu']} ({r['cpus']} cores): {r['candidates']} candidates "
      f"in {r['wall_s']:.1f} s = {r['candidates_per_min']:.0f}/min")
PY
    python3 "$here/benchmarks/export_runs.py" "$out/$name.mlflow.db" "$out/$name.runs.jsonl.gz" >/dev/null \
      && rm -f "$out/$name.mlflow.db"
    # its start, ramp, steady state, trial slots and lanes, from the records (sweep_timeline.py)
    python3 "$here/benchmarks/sweep_timeline.py" "$out/$name.runs.jsonl.gz" --json "$out/$name.timeline.json"
    gzip -f "$out/$name.log"
  done
done
# one file back from a device call (its limit is on the number of files)
tar czf "$out/scaling.tgz" -C "$out" $(cd "$out" && ls -d -- *.json *.log.gz *.jsonl.gz *.actors 2>/dev/null) \
  && (cd "$out" && rm -rf -- *.json *.log.gz *.jsonl.gz *.actors)
