#!/usr/bin/env bash
# Install kernelevolve with its test and docs extras into .venv, run the tests (CPU: Triton
# interpreter), then build the guide with `mkdocs build --strict` (a broken link or anchor fails).
# torch==2.13.0 is pinned only where no torch is installed yet, to take the small CPU build that
# these machines keep on local disk; a machine with a CUDA torch keeps its own.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test,docs]"   # brings playwright (the Python driver, no browser), mkdocs-material
# The browser tests drive the system chromium. On CI, install it where we may (root, apt); where we
# may not, they skip with their reason instead of failing the run. Never `playwright install`.
if [ -n "${CI:-}" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >/dev/null \
      || echo "test.sh: could not install chromium: the browser tests will skip" >&2
  else
    echo "test.sh: /usr/bin/chromium missing and not root with apt-get: the browser tests will skip" >&2
  fi
fi
# The guide first: it takes seconds and fails on a broken link or anchor.
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet -d "$site"
rm -rf "$site"
if [ $# -eq 0 ]; then
  # The multi-node cluster test starts its own `ray start` nodes; it runs in a pytest process of
  # its own, before any other test has started a private Ray in-process beside them.
  python -m pytest -q tests/test_cluster.py
  python -m pytest -q --ignore=tests/test_cluster.py
else
  python -m pytest -q "$@"
fi
