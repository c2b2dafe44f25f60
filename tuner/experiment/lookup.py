"""An experiment as a command names it: by its name, or by the YAML that names it (then its
tracking URI too), and the store read when neither that YAML nor --uri names one.

Used by the commands that read a sweep's records (best, compare, report, export, ui) and those
that take a run id (reproduce, profile). Imports nothing heavy at its top: tuner/cli.py imports
the command modules that import this one, and `kernelevolve --help` answers at once.
"""
from __future__ import annotations

DEFAULT_URI = "sqlite:///mlflow.db"  # tuner.experiment.config.Tracking's default (a test checks)


def experiment_name(arg: str) -> tuple[str, str]:
    """(name, tracking URI) of an experiment by name, or by the YAML that names it."""
    if arg.endswith((".yaml", ".yml")):
        from kernelevolve.tuner.experiment import config  # pydantic, the kernel registry, torch

        exp = config.load(arg)
        return exp.name, exp.tracking.uri
    return arg, DEFAULT_URI
