#!/usr/bin/env bash
# Issue 2 on the H100: smoke-test the worker on the GPU, then the 64-candidate bf16 4096^3 sweep.
# Usage on the device machine (from the project root, .devbundle carried):
#   bash benchmarks/h100_gemm_sweep.sh      # results under $OUT (or ./out)
set -uo pipefail
source .devbundle/activate.sh
OUT="${OUT:-$PWD/out}"; mkdir -p "$OUT"
work=$(mktemp -d); cd "$work"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, ray, optuna, mlflow; print('torch', torch.__version__, 'triton', triton.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__, 'mlflow', mlflow.__version__)" | tee -a "$OUT/gpu.txt"
repo="$OLDPWD"
python3 -m pytest -q -x -m gpu "$repo/tests" -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/pytest-gpu.txt"
start=$(date +%s)
python3 -m tuner.cli run "$repo/experiments/gemm-h100.yaml" 2>&1 | tee "$OUT/sweep.log" | tail -80
echo "sweep wall: $(( $(date +%s) - start )) s" | tee -a "$OUT/sweep.log"
python3 -m tuner.cli best gemm-h100 | tee "$OUT/best.txt"
cp mlflow.db "$OUT/" 2>/dev/null
tar czf "$OUT/journal.tgz" .kernelevolve/gemm-h100/2* 2>/dev/null
true
