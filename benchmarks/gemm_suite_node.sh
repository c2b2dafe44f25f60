#!/usr/bin/env bash
# The whole generated GEMM suite in one run on one multi-GPU node: gemm_suite.py's shards, one per
# GPU, all at once, each on its own GPU and its share of the cores (a one-GPU machine's: 16 of a
# 4 x H100 node's 64), each with its own sweep of the product's engine and its peers beside it on
# that GPU; then merged into one table (gemm_suite.py --merge). With n GPUs the suite's 24 + 4
# jobs are n shards (`--shard i/n`), and with n >= 4 each shard holds one of the 4 Helion shapes.
#   bash benchmarks/gemm_suite_node.sh OUT [gemm_suite.py options, e.g. --budget-s 380 --helion-effort full]
# Writes OUT/suite_node.tgz: each shard's .md/.json/.log/.runs.jsonl.gz (its MLflow store
# exported, benchmarks/export_runs.py) and the merged gemm_suite.md/.json (one file back from a
# device call). Each shard is cut at SHARD_TIMEOUT seconds (default 580, one device call), leaving
# its .partial.json to merge; a run detached across calls (setsid) can give the shards longer.
# Measured on 4 x H200 (docs/benchmarks.md): 374 s without Helion; with Helion's quick tune on 4
# shapes the slowest shard took 644 s, more than one 600-second call. On 2 x H200 without Helion:
# 560 s, and 316-391 s once torch.compile's caches were warm from a first run. Then, as run there:
#   call 1: (SHARD_TIMEOUT=1100 setsid nohup bash benchmarks/gemm_suite_node.sh /tmp/suite \
#             --budget-s 600 > /tmp/suite.log 2>&1 < /dev/null &)
#           while [ $SECONDS -lt 585 ] && [ ! -f /tmp/suite/suite_node.tgz ]; do sleep 5; done
#   call 2 (at once, on the machine still held): the same wait, then cp /tmp/suite/suite_node.tgz $OUT
# Helion's full effort (--helion-effort full, its default) took 370 s on one shape and was still
# tuning after 893-960 s on the three others (4 x H200, four shards at once): its rows come last in
# each shard (gemm_suite.py), so a shard cut at SHARD_TIMEOUT loses only those; budget two calls
# for the rest and a third for Helion's.
set -u
out=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
gpus=$(nvidia-smi -L | wc -l)
mkdir -p "$out"
# imports once, so that no shard pays a cold page cache alone; the empty MLflow store made once
(cd "$here" && python3 -c "import torch, triton, ray.tune, mlflow, optuna
from kernelevolve.tuner.records.sqlite_store import template; template()") 2>/dev/null
for i in $(seq 1 "$gpus"); do
  g=$((i - 1))
  pin=""  # the shard's share of the node's whole cores, where taskset is there to pin them
  command -v taskset >/dev/null && pin="taskset -c $(cd "$here" && python3 benchmarks/cpu_share.py $g $gpus)"
  CUDA_VISIBLE_DEVICES=$g $pin \
    timeout "${SHARD_TIMEOUT:-580}" python3 "$here/benchmarks/gemm_suite.py" --out "$out/shard$i" --shard "$i/$gpus" "$@" \
    > "$out/shard$i.log" 2>&1 &
done
wait
# (one GPU: gemm_suite.py names its one shard's table gemm_suite.json)
shards=$(ls "$out"/shard*/gemm_suite_shard*of"$gpus".json "$out"/shard*/gemm_suite_shard*of"$gpus".partial.json \
  "$out"/shard*/gemm_suite.json "$out"/shard*/gemm_suite.partial.json 2>/dev/null)
python3 "$here/benchmarks/gemm_suite.py" --merge $shards --out "$out/merged" > "$out/merge.log" 2>&1 \
  || echo "merge failed (see merge.log)"
for db in "$out"/shard*/*.mlflow.db; do
  [ -f "$db" ] && python3 "$here/benchmarks/export_runs.py" "$db" "${db%.mlflow.db}.runs.jsonl.gz" >/dev/null && rm -f "$db"
done
cat "$out/merged/gemm_suite.md" 2>/dev/null | head -60
# one file back from a device call (its limit is on the number of files)
(cd "$out" && tar czf suite_node.tgz -- *.log shard*/ merged/ 2>/dev/null && rm -rf -- *.log shard*/ merged/)
