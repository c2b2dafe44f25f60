#!/usr/bin/env bash
# Install kernelevolve with its test extras into .venv and run the tests (CPU: Triton interpreter).
# torch==2.13.0 is pinned only where no torch is installed yet, to take the small CPU build that
# these machines keep on local disk; a machine with a CUDA torch keeps its own.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
python -m pytest -q "$@"
