"""The judge's own check kernels, compiled ahead in processes of their own as a GPU sweep begins.

Why: the judge checks every output with Triton kernels of its own (tuner/measure/check_kernel.py),
which Triton compiles where they are first launched: in the judge, on the lane's critical path.
Measured on the H100 node (the 8-study suite, a fresh Triton cache): the lane's self-check spent
5.3 s in the judge's check, almost all of it compiling these kernels while 16 compile slots held
the cores, and the first candidates, compiled, waited behind it in the lane's queue; later the
first candidate of the first fp16, odd-sized and fp32 study stalled the lane 0.4-0.8 s each
(another specialization). Here every specialization the judge can ask for (output fp16, bf16 or
fp32 against a float32 or float64 reference; hashed words of 8, 4 or 1 bytes; a length that is a
multiple of 16 or not) is compiled on meta tensors (no CUDA context: tuner/measure/described.py)
into the sweep's Triton cache, by a few processes forked from the node's server, while Ray
starts. The judge then loads each from the cache. With a Triton cache that already holds them
(any later sweep on the machine) each is a lookup.

On the driver's node only (its server and its Triton cache): the lanes of other nodes compile
what their judges need at their first checks, as before; so does a driver node without a GPU,
where these processes fail at once (Triton finds no target) and the sweep's report says so.

A pointer that is not 16-byte aligned would be one more specialization: the judge's buffers never
are (the arena's and the guard zones' offsets are multiples of 512 bytes and 2^16 elements).
"""
from __future__ import annotations

import os
import sys
import time

ENV_SHARE = "KERNELEVOLVE_CHECK_WARMUP_SHARE"  # "i/k": this process compiles variants i, i+k, ...
PROCESSES = 4
# lengths of each class Triton specializes an integer on (a multiple of 16, or not), above one block
LENGTHS = (16 * 4096, 16 * 4096 + 1)


def variants() -> list[tuple]:
    """Every (kind, dtype, reference dtype, length) the judge's checks launch with."""
    out = [("stats", o, r, n) for o in ("float16", "bfloat16", "float32") for r in ("float64", "float32")
           for n in LENGTHS]
    return out + [("hash", w, "", n) for w in ("int64", "int32", "uint8") for n in LENGTHS]


def compile_variant(variant: tuple) -> int:
    """Compile one variant's kernels on meta tensors; returns how many kernels it compiled (or
    found in the cache). Their launchers are built too where the installed Triton builds one per
    signature (a C stub compiled by the host compiler, cached beside the kernels)."""
    import torch

    from kernelevolve.tuner.measure import check_kernel
    from kernelevolve.tuner.measure.described import META, described_driver
    from kernelevolve.tuner.measure.launch_failures import compile_only

    kind, dtype, ref_dtype, n = variant
    kernels: list = []
    with compile_only(kernels), described_driver(None):
        if kind == "stats":
            out = torch.empty(n, dtype=getattr(torch, dtype), device=META)
            ref = torch.empty(n, dtype=getattr(torch, ref_dtype), device=META)
            check_kernel.stats(out, ref, 1e-2, 1e-2)
        else:
            words = torch.empty(n, dtype=getattr(torch, dtype), device=META)
            keys = torch.empty(check_kernel.HASH_KEYS, dtype=torch.int64, device=META)
            check_kernel.word_hash(words, keys)
    from triton.runtime.driver import driver

    for kernel in kernels:
        try:
            driver.active.launcher_cls(kernel.src, kernel.metadata)
        except Exception:  # noqa: BLE001 - the judge builds it at its first launch, as before
            pass
    return len(kernels)


def compile_share(index: int, count: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    done = sum(compile_variant(v) for v in variants()[index::count])
    return done, time.perf_counter() - t0


def start(env: dict, cwd: str, processes: int = PROCESSES) -> list:
    """Fork `processes` compiling processes from this node's server (tuner.execution.spawner),
    with the GPU target's environment (its Triton cache and compile options: the judge's own);
    returns them (spawner.Spawned) to be waited for. Blocks while the server still imports torch:
    call it from a thread of its own. [] without a server."""
    from kernelevolve.tuner.execution import spawner

    path = env.get(spawner.ENV) or os.environ.get(spawner.ENV, "")
    procs = []
    with open(os.devnull, "w") as sink:
        for i in range(processes):
            proc = spawner.spawn(path, "kernelevolve.tuner.measure.check_warmup",
                                 {**os.environ, **env, ENV_SHARE: f"{i}/{processes}"}, cwd, sink.fileno())
            if proc is None:
                break
            proc.stdin.close()
            procs.append(proc)
    return procs


class Ahead:
    """start() and the wait for its processes, in a thread of the driver's: the sweep goes on."""

    def __init__(self, env: dict, cwd: str):
        import threading

        self.took: float | None = None
        self.processes = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, args=(env, cwd), daemon=True)
        self._thread.start()

    def _run(self, env: dict, cwd: str) -> None:
        t0 = time.perf_counter()
        procs = start(env, cwd)
        self.processes = len(procs)
        self.failed = sum(1 for p in procs if p.wait() != 0)
        self.took = time.perf_counter() - t0

    def report(self) -> list[str]:
        if self.took is None:
            return ["the judge's check kernels: still compiling ahead at the sweep's end"]
        if not self.processes:
            return []
        failed = f", {self.failed} of them failed (the judge compiles what they did not)" if self.failed else ""
        return [f"the judge's check kernels compiled ahead in {self.took:.1f} s by {self.processes} "
                f"processes{failed}"]


def main() -> None:
    os.nice(10)  # background work: the lanes' and the driver's starts come first
    index, count = (int(x) for x in os.environ.get(ENV_SHARE, "0/1").split("/"))
    done, took = compile_share(index, count)
    print(f"check kernels: {done} compiled or found in {took:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
