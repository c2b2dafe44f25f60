"""Run a test file's child part in a process without TRITON_INTERPRET (the tests' own process has
it: tests/conftest.py): there Triton compiles for a GPU target, which needs no GPU. The child
prints one JSON line last; its value is returned, or the test fails with the child's stderr."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(test_file: str, flag: str, extra_env: dict | None = None, timeout: float = 600):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, os.path.abspath(test_file), flag], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"the child {os.path.basename(test_file)} {flag} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
