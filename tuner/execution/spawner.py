"""A fork server for a node's evaluation and judge processes: torch and Triton imported once, each
process forked from there.

Why: measured on an H100 node (benchmarks/startup_probe.py), `import torch, triton` alone takes
4-6.6 s (torch's CUDA libraries read from disk), a CUDA context 0.5-1.5 s more. A sweep starts an
evaluation process per compile slot (16 per GPU) and an evaluator and a judge per GPU lane, so
every one of them paid those seconds before its first candidate, on the sweep's critical path.
A child forked from a process that imported torch and Triton, but made no CUDA context and ran
no kernel code, starts its own CUDA context and imports only what is left (the engine's measure
modules, then the candidate's kernel module): as PyTorch's DataLoader workers do, fork before any
CUDA call. The server imports nothing of a kernel's, so a judge forked here is still a process in
which no candidate code ever ran.

`multiprocessing`'s forkserver does the forking but not what an evaluation process needs: its
own session (a timeout kills its whole process group), stdin/stdout pipes and a stderr file given
by the parent, extra descriptors at numbers named in its environment, its own environment and
cwd, and an exit status its (non-parent) owner can wait for. So: one Unix seqpacket socket per
node, one connection per spawned process; the request carries the descriptors (SCM_RIGHTS); the
server answers the child's pid, and when it reaps the child, its exit status on that connection.

The sweep's driver starts one (`start`) before Ray; processes on its node find it through
KERNELEVOLVE_SPAWNER in their environment. Where there is none (another node, a command outside
a sweep) or it fails, `tuner.execution.worker` starts its processes with Popen as before.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

ENV = "KERNELEVOLVE_SPAWNER"
_MAX_MESSAGE = 1 << 20
_MAX_FDS = 16
# the heavy imports every evaluation process and judge needs, done once here: torch, Triton and
# the engine's measurement modules (no kernel's: a request's kernel is imported by its child)
PRELOAD = ("numpy", "torch", "triton", "triton.language", "kernelevolve.tuner.measure.evaluate_process",
           "kernelevolve.tuner.measure.described")
# read when those are imported, not later: a child that asks for another value than the server
# imported them with is refused (its owner starts it afresh). Triton decides at import whether
# its own @jit helpers (tl.sum, tl.cdiv, ...) are interpreted.
FIXED_AT_IMPORT = ("TRITON_INTERPRET",)
# a forked child's clock (time.time) once it is set up (descriptors, environment, threads), before
# its module runs; its hello reports it (child_times), so a slow start says which part held it
FORK_SET_UP_ENV = "KERNELEVOLVE_FORK_SET_UP"


def child_times() -> dict:
    """{"child_set_up": FORK_SET_UP_ENV's time} in a process the server forked, else {}."""
    try:
        return {"child_set_up": float(os.environ[FORK_SET_UP_ENV])}
    except (KeyError, ValueError):
        return {}


# -- the owner's side -----------------------------------------------------------------------------
class Spawned:
    """A process forked by the server, as much of subprocess.Popen as CandidateWorker uses:
    pid, stdin, stdout, poll(), wait(). Its exit status comes over its own connection; whether
    it lives, also from a pidfd (the process itself, not its number), which outlives the server."""

    def __init__(self, conn: socket.socket, pid: int, stdin, stdout, forked_at: float | None = None):
        self.conn, self.pid, self.stdin, self.stdout = conn, pid, stdin, stdout
        self.forked_at = forked_at  # the server's clock (time.time) when it forked this process
        self.returncode: int | None = None
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfds (Linux < 5.3): the connection alone says
            self.pidfd = None

    def _status(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        waits = [f for f in (self.conn, self.pidfd) if f is not None]
        ready, _, _ = select.select(waits, [], [], timeout)
        if not ready:
            return
        if self.conn is not None:
            self.conn.settimeout(5.0)  # an exit's status follows within the server's reaping interval
            try:
                data = self.conn.recv(_MAX_MESSAGE)
            except OSError:
                data = b""
            self.conn.close()
            self.conn = None
            if data:
                self._ended(pickle.loads(data).get("returncode", -9))
                return
        # the server is gone: the pidfd says whether the process lives (its status went with
        # the server: reported as killed)
        if self.pidfd is None or select.select([self.pidfd], [], [], 0)[0]:
            self._ended(-9)

    def _ended(self, code: int) -> None:
        self.returncode = code
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def poll(self) -> int | None:
        self._status(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._status(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
        return self.returncode


def spawn(path: str, module: str, env: dict, cwd: str | None, stderr_fd: int,
          pass_fds: tuple = (), fd_env: dict | None = None, timeout_s: float = 120) -> Spawned | None:
    """`python -m module` forked by the server at `path`, with stdin/stdout pipes, `stderr_fd`, and
    `pass_fds` (each env var of `fd_env` names some of them, by their index in `pass_fds`: the
    server writes their numbers in the child into it). None when there is no usable server."""
    if not path or not os.path.exists(path):
        return None
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.settimeout(timeout_s)  # a server still importing torch answers once it is done
        conn.connect(path)
        request = {"module": module, "env": dict(env), "cwd": cwd, "fd_env": fd_env or {}}
        socket.send_fds(conn, [pickle.dumps(request)], [in_r, out_w, stderr_fd, *pass_fds])
        reply = pickle.loads(conn.recv(_MAX_MESSAGE) or pickle.dumps({}))
        conn.settimeout(None)
    except (OSError, pickle.PickleError, EOFError):
        reply = {}
    finally:
        os.close(in_r)
        os.close(out_w)
    if "pid" not in reply:
        conn.close()
        os.close(in_w)
        os.close(out_r)
        return None
    return Spawned(conn, int(reply["pid"]), os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"), reply.get("forked_at"))


class Server:
    """The driver's handle on its node's server: start() before Ray, close() at the sweep's end."""

    def __init__(self, proc: subprocess.Popen, path: str):
        self.proc, self.path = proc, path

    def close(self) -> None:
        """No new processes from it; it exits once the processes it forked have ended (not
        waited for here: a trial actor's compile slots end with the actor, after the sweep)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        if os.environ.get(ENV) == self.path:
            del os.environ[ENV]


_EARLY: list = []  # a server start_early() began, for the next start() to hand back


def start_early() -> Server | None:
    """On a machine with an NVIDIA GPU, start the server before the caller imports the engine:
    the server's `import torch, triton` (4-6 s on the H100 node) then runs on another core beside
    the driver's own, instead of after it. The sweep's start() takes this one over; a sweep with
    no GPU target closes it. None where there is no GPU (the CPU interpreter needs no server)."""
    if _EARLY or not os.path.exists("/dev/nvidiactl"):
        return _EARLY[0] if _EARLY else None
    _EARLY.append(_start())
    return _EARLY[0]


def take_early() -> Server | None:
    """The server start_early() began, if it still runs (handed over once)."""
    server = _EARLY.pop() if _EARLY else None
    if server is not None and server.proc.poll() is not None:
        server.close()
        return None
    return server


def start() -> Server:
    """This node's server: the one start_early() began, else a new one (it imports torch and
    Triton in the background; a spawn meanwhile waits for it), named in this process's
    environment, which Ray's processes on this node inherit."""
    return take_early() or _start()


def _start() -> Server:
    path = os.path.join(tempfile.gettempdir(), f"kernelevolve-spawner-{os.getpid()}-{time.time_ns()}.sock")
    proc = subprocess.Popen([sys.executable, "-m", "kernelevolve.tuner.execution.spawner", path],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the socket is bound before the imports: milliseconds
    os.environ[ENV] = path
    return Server(proc, path)


# -- the server ------------------------------------------------------------------------------------
def _child(request: dict, fds: list[int], keep_closed: list) -> None:
    """In the forked child: become the requested process. Never returns."""
    code = 1
    try:
        for s in keep_closed:
            s.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setsid()  # its own process group: a timeout kills it and whatever it started
        for target, fd in zip((0, 1, 2), fds[:3]):
            os.dup2(fd, target)
        extra = fds[3:]
        env = dict(request["env"])
        for var, indices in request["fd_env"].items():
            env[var] = ",".join(str(extra[i]) for i in indices)
        os.environ.clear()
        os.environ.update(env)
        for entry in reversed([p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        if env.get("OMP_NUM_THREADS", "").isdigit():
            import torch

            torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
        import runpy

        os.environ[FORK_SET_UP_ENV] = f"{time.time():.6f}"  # for the process's hello
        sys.argv = [request["module"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)  # bound first: an owner's spawn waits in the backlog while we import
    listener.listen(256)
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # a child imports what it needs itself
            pass
    _warm_meta()
    children: dict[int, socket.socket] = {}  # pid -> its owner's connection
    owner = sys.stdin.fileno()  # the driver's pipe: EOF when it is done or gone
    done: list = []
    signal.signal(signal.SIGTERM, lambda *_: done.append("terminated"))
    watched = [listener, owner]
    while watched or children:
        if done and listener in watched:
            # no more forks; still the reaper of those it made, so that none is left a zombie
            # where the node's init does not reap
            watched = []
            listener.close()
            try:
                os.unlink(path)
            except OSError:
                pass
        try:
            ready, _, _ = select.select(watched, [], [], 0.1)
        except InterruptedError:
            ready = []
        if owner in ready and not os.read(owner, 1):
            done.append("owner gone")
        if listener in ready:
            _fork_one(listener, children, watched)
        _reap(children)


def _warm_meta() -> None:
    """torch's meta-tensor machinery, used once here: a compile slot's described inputs are meta
    tensors (tuner.measure.described), and torch builds its meta kernels and decompositions at the
    first meta op of a process: 1.5 s alone, several seconds for 16 slots starting at once.
    CPU work only: no CUDA call before a fork."""
    try:
        import torch

        gen = torch.Generator().manual_seed(0)
        a = torch.randn((64, 32), generator=gen, device="meta").to(torch.bfloat16)
        b = torch.randint(0, 8, (16,), generator=gen, device="meta")
        c = torch.zeros(17, dtype=torch.int64, device="meta")
        c[1:] = torch.cumsum(b, 0)
        torch.empty_like(a)[:, 1:].contiguous().copy_(a[:, 1:])
        torch.stack([a, a]).to(torch.float16).t()
    except Exception:  # noqa: BLE001 - a warm-up only: the children do it themselves
        pass


def _fork_one(listener: socket.socket, children: dict, keep_closed: list) -> None:
    conn, _ = listener.accept()
    try:
        data, fds, _, _ = socket.recv_fds(conn, _MAX_MESSAGE, _MAX_FDS)
        request = pickle.loads(data)
    except (OSError, pickle.PickleError, EOFError):
        conn.close()
        return
    if any(request["env"].get(var) != os.environ.get(var) for var in FIXED_AT_IMPORT):
        for fd in fds:
            os.close(fd)
        conn.close()  # no pid: its owner starts it afresh
        return
    pid = os.fork()
    if pid == 0:
        _child(request, fds, [listener, conn, *children.values()])
    forked_at = time.time()
    for fd in fds:
        os.close(fd)
    try:
        conn.send(pickle.dumps({"pid": pid, "forked_at": forked_at}))
    except OSError:
        pass
    children[pid] = conn


def _reap(children: dict) -> None:
    """Each ended child's exit status to its owner."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            try:
                conn.send(pickle.dumps({"returncode": os.waitstatus_to_exitcode(status)}))
            except OSError:
                pass
            conn.close()


if __name__ == "__main__":
    try:
        serve(sys.argv[1])
    finally:
        try:
            os.unlink(sys.argv[1])
        except OSError:
            pass
