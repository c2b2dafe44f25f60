#!/usr/bin/env bash
# Install kernelevolve into .venv and run the quickstart sweep (CPU, Triton interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e .
kernelevolve run experiments/quickstart.yaml
kernelevolve best quickstart
