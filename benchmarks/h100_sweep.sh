#!/usr/bin/env bash
# One experiment file swept on the H100 through the product's path (Ray Tune + Optuna + MLflow):
# first every GPU-marked test, then `kernelevolve run EXP`, the best configs, the MLflow store and
# the journal, all under $OUT.
# Usage on the device machine (from the project root, .devbundle carried):
#   bash benchmarks/h100_sweep.sh experiments/ops-h100.yaml      # results under $OUT (or ./out)
set -uo pipefail
exp="${1:?usage: h100_sweep.sh EXPERIMENT.yaml}"
source .devbundle/activate.sh
name=$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$exp")
OUT="${OUT:-$PWD/out}"; mkdir -p "$OUT"
repo="$PWD"; exp="$repo/$exp"
work=$(mktemp -d); cd "$work"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, ray, optuna, mlflow; print('torch', torch.__version__, 'triton', triton.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__, 'mlflow', mlflow.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -x -m gpu "$repo/tests" -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/pytest-gpu.txt"
start=$(date +%s)
python3 -m kernelevolve.tuner.cli run "$exp" 2>&1 | tee "$OUT/sweep.log" | tail -80
echo "sweep wall: $(( $(date +%s) - start )) s" | tee -a "$OUT/sweep.log"
python3 -m kernelevolve.tuner.cli best "$name" | tee "$OUT/best.txt"
cp mlflow.db "$OUT/" 2>/dev/null
tar czf "$OUT/journal.tgz" ".kernelevolve/$name"/2* 2>/dev/null
true
