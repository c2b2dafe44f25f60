"""Errors that are the user's to fix, raised by the command bodies; `kernelevolve` (tuner/cli.py)
prints each as one message and exits with code 2.

Why not in tuner/cli.py: the commands' bodies live beside what they drive (tuner/*/commands.py) and
raise this class; under `python -m kernelevolve.tuner.cli` that file runs as `__main__`, so a class
defined there would exist twice and the one raised would not be the one caught. Imports nothing
heavy: `kernelevolve --help` answers at once.
"""
from __future__ import annotations

import os


class UserError(Exception):
    pass


def check_writable(path: str) -> None:
    """A file a command will write: its folder exists and it is not a folder itself."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"cannot write {path}: there is no folder {folder}")
    if os.path.isdir(path):
        raise UserError(f"cannot write {path}: it is a folder")
