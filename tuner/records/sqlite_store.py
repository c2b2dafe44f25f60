"""A local SQLite MLflow store, made and written fast.

*Made*: a new SQLite store starts as a copy of an empty one, instead of migrating its schema.
MLflow makes a new SQLite store by creating its first tables and then running every schema
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

*Written*: each candidate's child run is three MLflow transactions, and SQLite's default journal
syncs the disk at each commit. On a 4-GPU node the sweep's writer fell behind the candidates (25
child runs a second against 40 candidates), and every study ended ~24 s after its last candidate.
Connections to a local store use write-ahead logging with `synchronous=NORMAL` (a commit is an
append; the disk is synced at checkpoints: a power cut may lose the last commits, never corrupt
the store, and the sweep's journal still holds every record for `kernelevolve sync`), and wait
for another writer's lock instead of failing (the sweep has several writers, remote_tracker).
Not on a network filesystem, where SQLite's write-ahead log is unsafe: there the journal stays.
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


# file systems where SQLite's write-ahead log (shared memory beside the file) must not be used
_NETWORK_FS = ("nfs", "nfs4", "cifs", "smb", "smbfs", "fuse", "fuse.sshfs", "9p", "lustre", "gpfs", "ceph")
BUSY_TIMEOUT_MS = 60_000
_TUNED: list = []  # the paths whose connections are tuned in this process


def _filesystem(path: str) -> str:
    """The type of the file system `path` is on, from /proc/mounts ("" where unknown)."""
    best, kind = "", ""
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 2 and (path == parts[1] or path.startswith(parts[1].rstrip("/") + "/")) \
                        and len(parts[1]) >= len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def fast_writes(uri: str) -> bool:
    """Tune this process's connections to the SQLite store `uri` (the module's docstring says how
    and why); True if they are. Other stores are left alone."""
    if not uri.startswith(PREFIX):
        return False
    path = os.path.abspath(uri[len(PREFIX):])
    if path in _TUNED:
        return True
    kind = _filesystem(path)
    if kind.startswith(_NETWORK_FS):
        return False
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dbapi_connection, _record):
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        row = dbapi_connection.execute("PRAGMA database_list").fetchone()
        if not row or os.path.abspath(row[2] or "") != path:
            return
        try:
            dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error:  # a store SQLite cannot switch (read-only): it is written as before
            pass

    event.listen(Engine, "connect", on_connect)
    _TUNED.append(path)
    return True


def checkpoint(uri: str) -> bool:
    """Fold a local store's write-ahead log back into its file (at a sweep's end: the file alone
    then holds every record, as a copy of it or a reader without the log expects); True if done."""
    if not uri.startswith(PREFIX) or not os.path.exists(uri[len(PREFIX):]):
        return False
    try:
        with sqlite3.connect(uri[len(PREFIX):], timeout=BUSY_TIMEOUT_MS / 1000) as db:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        db.close()
        return busy == 0
    except sqlite3.Error:
        return False


def copy_store(source: str, dest: str) -> None:
    """A consistent copy of the SQLite store at path `source` (its write-ahead log included) at
    `dest`, through SQLite's backup (a file copy would miss commits still in the log)."""
    with sqlite3.connect(source, timeout=BUSY_TIMEOUT_MS / 1000) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)
    src.close()
    dst.close()
