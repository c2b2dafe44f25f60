"""Test set-up: kernels run compiled on a GPU when one is visible, else in the Triton interpreter.

TRITON_INTERPRET must be set before any @triton.jit decorator runs, so it is set here, at the
top of collection, before a kernel module is imported.
"""
import os

import pytest
import torch

HAS_GPU = torch.cuda.is_available()
if not HAS_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The empty MLflow store new SQLite stores are copied from (tuner/records/sqlite_store.py) is kept
# for the test run, not in the user's cache: made once, then every test's new store is a copy.
if "KERNELEVOLVE_CACHE" not in os.environ:
    import tempfile

    os.environ["KERNELEVOLVE_CACHE"] = tempfile.mkdtemp(prefix="kernelevolve-test-cache-")


def pytest_collection_modifyitems(config, items):
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU; torch sees none on this machine "
                                   "(run on the H100: see docs/benchmarks.md)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device():
    return torch.device("cuda" if HAS_GPU else "cpu")


@pytest.fixture
def local_ray():
    """A fresh one-node Ray for the test (2 CPUs, loopback only), shut down after it."""
    import ray

    from kernelevolve.tuner.execution.local_ray import loopback_init_kwargs

    ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, **loopback_init_kwargs(), logging_level="ERROR")
    yield
    ray.shutdown()
