"""Fixes of Ray Tune's costs (tuner/execution/tune_hooks.py): a Tune run given a callback imports
no MLflow into the driver for its usage telemetry while the sweep's fit runs."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIT = """
import os, sys
import ray
from ray import tune
from kernelevolve.tuner.execution.tune_hooks import callbacks_not_tagged
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)

class Seen(tune.Callback):
    pass

def trial(config):
    tune.report({{"x": config["x"]}})

tuner = tune.Tuner(trial, param_space={{"x": tune.grid_search([1])}},
                   run_config=tune.RunConfig(storage_path=os.path.abspath("ray"), verbose=0, callbacks=[Seen()]))
{fit}
assert not results.errors
print("mlflow" in sys.modules)
"""


@pytest.mark.slow
@pytest.mark.parametrize("fixed", [True, False])
def test_a_fit_with_a_callback_imports_no_mlflow_into_the_driver(tmp_path, fixed):
    fit = "with callbacks_not_tagged():\n    results = tuner.fit()" if fixed else "results = tuner.fit()"
    code = FIT.format(fit=fit)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(ROOT) + os.pathsep + ROOT, RAY_USAGE_STATS_ENABLED="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # Tune's own way imports MLflow for its telemetry; within the fix it does not
    assert out.stdout.strip().splitlines()[-1] == ("False" if fixed else "True")
