"""A new SQLite MLflow store starts as a copy of an empty one, instead of migrating its schema.

Why: MLflow makes a new SQLite store by creating its first tables and then running every schema
migration since (alembic; MLflow 3.17: ~60 tables). That took 3.5 s on a 2-core machine, on the
sweep's critical path (the store opens while Ray starts, and it was the longer of the two) for
every new store: each benchmark run, each directory a user starts an experiment in. What the
migrations produce depends only on MLflow's version and its latest schema revision, so the first
new store a machine makes with them is kept empty in the user's cache, and later new stores are
copies of it (milliseconds). MLflow checks the revision of every SQLite store it opens and refuses
one that is not at its head, so a copy can only ever be of the schema MLflow itself would make.

The one thing an empty store holds besides its schema is MLflow's "Default" experiment, whose
artifact location MLflow sets from the working directory at creation (`./mlruns/0`): the copy
gets the one MLflow would have given it here.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile

PREFIX = "sqlite:///"


def cache_dir() -> str:
    """Where the empty store is kept: $KERNELEVOLVE_CACHE, else ~/.cache/kernelevolve."""
    return os.environ.get("KERNELEVOLVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kernelevolve")


def _schema_key() -> str:
    import mlflow
    from mlflow.store.db.utils import _get_latest_schema_revision

    return f"mlflow-{mlflow.__version__}-{_get_latest_schema_revision()}"


def _make_empty(path: str) -> None:
    """An empty store at `path`, made by MLflow itself (its migrations)."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=PREFIX + path).get_experiment("0")


def template() -> str:
    """The cached empty store of the installed MLflow (made once per machine and version)."""
    root = cache_dir()
    path = os.path.join(root, f"empty-store-{_schema_key()}.db")
    if os.path.exists(path):
        return path
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(prefix="empty-store-", dir=root)
    try:
        _make_empty(os.path.join(work, "store.db"))
        os.replace(os.path.join(work, "store.db"), path)  # whole or not at all, if two race
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def materialize(uri: str) -> bool:
    """If `uri` names a SQLite store that does not exist yet, create it as a copy of the empty
    store; True if it did. Any other store (a server, an existing file) is left to MLflow, and so
    is this one if the copy cannot be made (MLflow then migrates it as before)."""
    if not uri.startswith(PREFIX):
        return False
    path = uri[len(PREFIX):]
    if not path or path.startswith(":") or os.path.exists(path) or not os.path.isdir(os.path.dirname(path) or "."):
        return False
    try:
        source = template()
        fd, tmp = tempfile.mkstemp(prefix=".store-", dir=os.path.dirname(path) or ".")
        os.close(fd)
        shutil.copyfile(source, tmp)
        with sqlite3.connect(tmp) as db:  # the Default experiment's artifacts as MLflow puts them
            db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                       (os.path.abspath(os.path.join("mlruns", "0")),))
        db.close()
        try:
            os.link(tmp, path)  # never over a store another process made meanwhile
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    except (OSError, sqlite3.Error, ImportError):
        return False
