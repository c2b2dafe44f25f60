"""`kernelevolve ui`: the MLflow UI over the project's store, as a child process we start and stop.

The server runs in its own process group, so that Ctrl-C and SIGTERM reach only us and we stop the
server and its workers together (no traceback from each of them, nothing left serving). Here,
beside the other review commands; tuner/cli.py parses the command line and dispatches.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from kernelevolve.tuner.experiment.lookup import DEFAULT_URI, experiment_name


def _stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the server's whole process group (mlflow ui starts gunicorn/uvicorn workers),
    then SIGKILL whatever is left after grace_s."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            os.killpg(proc.pid, 0)  # the leader is gone: are its workers?
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            pass


def cmd_ui(args) -> int:
    from kernelevolve.tuner.records.tracking import resolve_uri

    _, uri = experiment_name(args.experiment) if args.experiment else ("", DEFAULT_URI)
    uri = resolve_uri(args.uri or uri)
    print(f"MLflow UI over {uri} at http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    # Its own process group: Ctrl-C and SIGTERM reach only us, and we stop the server and its
    # workers together (no tracebacks from each of them, nothing left serving).
    proc = subprocess.Popen(cmd, start_new_session=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("\nstopping the MLflow UI", file=sys.stderr, flush=True)
        return 0
    finally:  # a second Ctrl-C or SIGTERM must not cut the clean-up short
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _stop_group(proc)
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old)
