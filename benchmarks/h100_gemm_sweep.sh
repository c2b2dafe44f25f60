#!/usr/bin/env bash
# Issue 2 on the H100: every GPU-marked test, then the 64-candidate bf16 4096^3 sweep
# (benchmarks/h100_sweep.sh over experiments/gemm-h100.yaml).
# Usage on the device machine (from the project root, .devbundle carried):
#   bash benchmarks/h100_gemm_sweep.sh      # results under $OUT (or ./out)
exec bash "$(dirname "$0")/h100_sweep.sh" experiments/gemm-h100.yaml
