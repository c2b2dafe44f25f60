"""One candidate -> one measurement, in four steps; each failure ends in exactly one status.

  1. constraints  -> invalid           (re-checked here: a worker never trusts its input)
  2. compile      -> compile_error / out_of_resources   (the first launch compiles; on a GPU the
                                        `compile` request does it ahead, on a CPU core, and this
                                        process finds the binary in Triton's cache)
  3. verify       -> incorrect         (two of the study's seeded input sets, chosen by the
                                        candidate's seed, outputs poisoned with NaN, checked
                                        against the float64 reference; a kernel that caches its
                                        first result fails the second set; a third set is the
                                        first with one element moved, against fingerprint
                                        memoisation. tuner/measure/guards.py: the kernel gets
                                        copies of the inputs inside canary bands, the reference
                                        reads inputs no kernel ever gets, inputs must be
                                        unchanged, canary bands intact, a Triton kernel launched,
                                        the harness's check functions untouched)
  4. time         -> ok, with p20/p50/p80 latency, TFLOP/s, GB/s, % of the device's ceilings,
                     and the torch peer timed in the same process under the same lock; then
                     verified once more (a kernel that works only on its first calls), and on a
                     GPU a latency beyond the device's ceilings is `incorrect`
Anything else raised is runtime_error; a hang or a crash is recorded by the parent (worker.py)
as timeout or runtime_error. This module is the child process's main: `python -m kernelevolve.tuner.measure.evaluate`.

The process lives for the sweep (one per GPU lane, one per compile slot): it keeps the CUDA
context, each study's input sets and references (InputSets, bounded in bytes) and the compiled
kernels, so a candidate pays for its own launches only.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from collections import OrderedDict
from contextlib import contextmanager

# Poisoned elements on each side of every output: a kernel that writes past its output's ends
# lands here and is caught (instead of silently corrupting a neighbour).
GUARD_ELEMENTS = 1 << 16

from kernelevolve.tuner.records.schema import STATUSES  # noqa: E402,F401 - every candidate ends in one of them


def _error_classes():
    """Triton's exception types by failure status (their module paths moved across versions)."""
    import importlib

    found = {"oor": [], "compile": []}
    for mod, name, bucket in (("triton.runtime.errors", "OutOfResources", "oor"),
                              ("triton.runtime.autotuner", "OutOfResources", "oor"),
                              ("triton.compiler.errors", "CompilationError", "compile"),
                              ("triton.runtime.errors", "PTXASError", "compile"),
                              ("triton.compiler.errors", "CompileTimeAssertionFailure", "compile"),
                              # the interpreter reports kernel-code errors (what the compiler
                              # would reject) when it runs the kernel
                              ("triton.runtime.interpreter", "InterpreterError", "compile")):
        try:
            found[bucket].append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found["oor"]), tuple(found["compile"])


# Seeded input sets per study; a candidate is verified on two of them and timed on a third, all
# chosen by its seed. The references are computed once per set, not once per candidate (a float64
# GEMM reference of 8192^3 costs ~20 ms on an H100: as much as timing the candidate).
INPUT_SETS = 4


class InputSets:
    """Each study's input sets and references, least recently used dropped past `budget` bytes."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.entries: OrderedDict = OrderedDict()  # (study key, index) -> [inputs, ref, bytes]

    @staticmethod
    def _nbytes(obj) -> int:
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, (tuple, list)):
            return sum(InputSets._nbytes(o) for o in obj)
        if isinstance(obj, dict):
            return sum(InputSets._nbytes(o) for o in obj.values())
        return 0

    def get(self, key, make_inputs, make_ref=None):
        entry = self.entries.get(key)
        if entry is None:
            inputs = make_inputs()
            entry = self.entries[key] = [inputs, None, self._nbytes(inputs)]
        self.entries.move_to_end(key)
        if make_ref is not None and entry[1] is None:
            entry[1] = make_ref(entry[0])
            entry[2] += self._nbytes(entry[1])
        evicted = False
        while len(self.entries) > 1 and sum(e[2] for e in self.entries.values()) > self.budget:
            self.entries.popitem(last=False)
            evicted = True
        if evicted:
            import torch

            if torch.cuda.is_available():
                # hand the memory back: torch's allocator otherwise keeps it for this process,
                # and 16 compiling processes per GPU each keeping every study's inputs (2 GB
                # embedding tables) ran the GPU out of memory
                torch.cuda.empty_cache()
        return entry[0], entry[1]


@contextmanager
def compile_only():
    """Every Triton launch inside compiles (or finds the binary in the cache) without running:
    JITFunction.run's own warm-up mode, on triton 3.6 to 3.9. Torch work in a launcher (a staging
    copy, an index check) still runs. Why: the compile slots compile ahead of the GPU lane and must
    not put work on the GPU the lane is timing."""
    from triton.runtime.jit import JITFunction

    original = JITFunction.run

    def warm(self, *args, grid, warmup, **kwargs):
        return original(self, *args, grid=grid, warmup=True, **kwargs)

    JITFunction.run = warm
    try:
        yield
    finally:
        JITFunction.run = original


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 4000 else text[:4000] + " ..."


class Evaluator:
    def __init__(self):
        import torch

        from kernelevolve.tuner.experiment.hardware import detect_device

        self.torch = torch
        self.interpreter = os.environ.get("TRITON_INTERPRET") == "1"
        self.device = torch.device("cuda" if torch.cuda.is_available() and not self.interpreter
                                   else "cpu")
        self.info = detect_device()
        self.baselines: dict = {}
        self.studies: dict = {}
        budget = float(os.environ.get("KERNELEVOLVE_INPUT_BYTES", 0)) or (
            0.25 * torch.cuda.get_device_properties(0).total_memory if self.device.type == "cuda"
            else 2e9)
        self.inputs = InputSets(int(budget))
        self.oor_errors, self.compile_errors = _error_classes()
        # [guards] the check functions as imported now, before any candidate code runs here
        from kernelevolve.tuner.measure import guards, verify

        self._check, self._tolerance_for, self._guards = verify.check, verify.tolerance_for, guards
        self._seal = guards.HarnessSeal()

    # -- helpers ---------------------------------------------------------------------------
    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def _lock(self):
        """Exclusive use of this process's device for verification and timing. On the CPU too:
        concurrent interpreter candidates would otherwise disturb each other's wall time."""
        from kernelevolve.tuner.measure.clocks import device_lock

        return device_lock(self.info["gpu_uuid"])

    def _time(self, fn, bench: dict, rep_ms: float | None = None):
        from kernelevolve.tuner.measure.clocks import measure

        clock = bench.get("clock", "do_bench") if self.device.type == "cuda" else "wall"
        return measure(fn, clock, bench.get("warmup_ms", 25), rep_ms or bench.get("rep_ms", 100),
                       bench.get("wall_reps", 3))

    def _load(self, req):
        """(tunable, problem, hardware, study key) of a request, loaded once per study."""
        import json

        from kernelevolve.tuner.experiment import hardware, registry

        key = (req["kernel_ref"], json.dumps(req["problem"], sort_keys=True), req["hardware"])
        if key not in self.studies:
            tunable = registry.load(req["kernel_ref"])
            problem = tunable.kernel.problem(**req["problem"])
            self.studies[key] = (tunable, problem, hardware.profile(req["hardware"]), key)
        return self.studies[key]

    def _set(self, spec, problem, study, index: int, with_ref: bool = True):
        """The study's input set `index` (seeded by it) and, with_ref, its reference. No kernel
        is ever handed these tensors (it gets guarded copies), so the cached reference holds."""
        return self.inputs.get((study, index), lambda: spec.make_inputs(problem, self.device, 1 + index),
                               spec.reference if with_ref else None)

    def _run_checked(self, spec, problem, cfg, study, index, perturb_seed: int | None = None):
        """Launch on copies of the study's input set `index` into a poisoned output that sits
        between two poisoned guard zones of the same allocation; check the output and that both
        guards are untouched."""
        from kernelevolve.kernels.spec import reduction_length
        from kernelevolve.tuner.measure.verify import Check, poison

        pooled, ref = self._set(spec, problem, study, index)
        if perturb_seed is not None:  # [guards] the set with one element moved
            pooled, ref = self._guards.perturbed(pooled, perturb_seed), None
        # [guards] the kernel gets copies of its inputs inside canary bands; the reference reads
        # the pooled set (or, for a moved set, the pristine copy taken before the launch)
        guarded = self._guards.guard_inputs(pooled)
        inputs = guarded.inputs
        if ref is None:
            ref = spec.reference(guarded.pristine)
        shape_of = spec.make_output(problem, inputs)
        n = shape_of.numel()
        buf = shape_of.new_empty(n + 2 * GUARD_ELEMENTS)
        poison(buf)
        out = buf[GUARD_ELEMENTS:GUARD_ELEMENTS + n].view(shape_of.shape)
        with self._guards.count_launches(self.interpreter) as launches:  # [guards]
            handle = spec.launch(inputs, out, cfg)
            self._sync()
        result = self._check(out, ref, self._tolerance_for(out.dtype, reduction_length(spec, problem)))
        guards = self.torch.cat([buf[:GUARD_ELEMENTS], buf[GUARD_ELEMENTS + n:]])
        touched = int((~self.torch.isnan(guards)).sum()) if guards.is_floating_point() else \
            int((guards != self.torch.iinfo(guards.dtype).min).sum())
        if touched:
            result = Check(False, result.rel_error, result.max_error,
                           f"wrote {touched} elements outside its output buffer")
        # [guards] what outranks the output's check: the harness tampered with, no Triton
        # launch, inputs rewritten or their canary bands written
        why = (self._seal.broken() or (self._guards.NO_LAUNCH if launches.n == 0 else "")
               or guarded.damage())
        if why:
            result = Check(False, result.rel_error, result.max_error, why)
        return handle, result

    def _baseline_ms(self, spec, problem, study, bench):
        if study not in self.baselines:
            inputs, _ = self._set(spec, problem, study, 0, with_ref=False)
            self.baselines[study] = self._time(lambda: spec.baseline(inputs), bench)
        return self.baselines[study]

    @staticmethod
    def _handle_info(handle) -> dict:
        """Registers, spills and shared memory of a compiled kernel, where Triton has them."""
        out = {}
        init = getattr(handle, "_init_handles", None)
        if callable(init):
            init()  # loads the binary: a kernel over the chip's shared memory raises here
        for attr in ("n_regs", "n_spills"):
            if isinstance(getattr(handle, attr, None), int):
                out[attr] = getattr(handle, attr)
        shared = getattr(getattr(handle, "metadata", None), "shared", None)
        if isinstance(shared, int):
            out["shared_bytes"] = shared
        return out

    def compile(self, req: dict) -> dict:
        """Steps 1 and 2 only, launching nothing on the device: constraints, then Triton's compile
        (into its on-disk cache, where the GPU lane's first launch of the same config finds it)."""
        rec = {"timing": "interpreter" if self.interpreter else "gpu", **self._tags()}
        tunable, problem, hw, study = self._load(req)
        spec, cfg = tunable.kernel, req["config"]
        reasons = tunable.space(problem, hw).violations(cfg)
        if reasons:
            return dict(rec, status="invalid", error="; ".join(reasons))
        if self.interpreter:  # nothing to compile ahead: the interpreter runs the source
            return dict(rec, status="ok")
        t0 = time.perf_counter()
        try:
            inputs, _ = self._set(spec, problem, study, 0, with_ref=False)
            out = spec.make_output(problem, inputs)
            with compile_only():
                handle = spec.launch(inputs, out, cfg)
            rec.update(self._handle_info(handle))
        except self.oor_errors as exc:
            return dict(rec, status="out_of_resources", error=_short(exc))
        except self.compile_errors as exc:
            return dict(rec, status="compile_error", error=_short(exc))
        rec["compile_s"] = time.perf_counter() - t0
        return dict(rec, status="ok")

    # -- the four steps --------------------------------------------------------------------
    def evaluate(self, req: dict) -> dict:
        rec = {"timing": "interpreter" if self.interpreter else "gpu", **self._tags()}
        t_start = time.perf_counter()
        tunable, problem, hw, study = self._load(req)
        spec, cfg, seed = tunable.kernel, req["config"], int(req.get("seed", 0))
        first_set, second_set, timed_set = (seed % INPUT_SETS, (seed + 1) % INPUT_SETS,
                                            (seed + 2) % INPUT_SETS)

        reasons = tunable.space(problem, hw).violations(cfg)  # 1. constraints
        if reasons:
            return dict(rec, status="invalid", error="; ".join(reasons))

        t0 = time.perf_counter()  # 2. compile (the first launch, or a cache load), also verify set 1
        try:
            handle, first = self._run_checked(spec, problem, cfg, study, first_set)
        except self.oor_errors as exc:
            return dict(rec, status="out_of_resources", error=_short(exc))
        except self.compile_errors as exc:
            return dict(rec, status="compile_error", error=_short(exc))
        rec["load_s" if req.get("compiled") else "compile_s"] = time.perf_counter() - t0
        rec.update(self._handle_info(handle))

        t_wait = time.time()
        with self._lock():  # 3. verify set 2, then 4. time; nothing else uses this GPU meanwhile
            rec["timed_from"] = time.time()
            rec["lock_wait_s"] = rec["timed_from"] - t_wait
            second = first if not first.ok else self._run_checked(spec, problem, cfg, study, second_set)[1]
            # [guards] the first set again with one element moved (fingerprint memoisation)
            third = second if not second.ok else self._run_checked(spec, problem, cfg, study, first_set,
                                                                    perturb_seed=seed)[1]
            rec["rel_error"] = max(first.rel_error, second.rel_error, third.rel_error)
            rec["max_error"] = max(first.max_error, second.max_error, third.max_error)
            if not (first.ok and second.ok and third.ok):
                return dict(rec, status="incorrect",
                            error=first.reason or (f"second input set: {second.reason}" if not second.ok
                                                   else f"first input set, one element moved: {third.reason}"))
            pooled, _ = self._set(spec, problem, study, timed_set, with_ref=False)
            timed = self._guards.guard_inputs(pooled)  # [guards] timed on copies: the pool stays pristine
            inputs = timed.inputs
            out = spec.make_output(problem, inputs)
            p20, p50, p80 = self._time(lambda: spec.launch(inputs, out, cfg), req.get("bench", {}))
            rec.update(latency_p20_ms=p20, latency_ms=p50, latency_p80_ms=p80)
            damage = timed.damage()
            if damage:
                return dict(rec, status="incorrect", error=f"during timing: {damage}")
            timed = inputs = out = None  # the guarded copies go before the next check
            # [guards] still correct after its timed calls; on a GPU, no faster than physics
            after = self._run_checked(spec, problem, cfg, study, timed_set)[1]
            if not after.ok:
                return dict(rec, status="incorrect", error=f"after timing: {after.reason}")
            why = "" if self.interpreter else self._guards.ceiling_violation(
                p20, spec.flops(problem), spec.bytes_moved(problem), hw,
                getattr(problem, "dtype", "float32"))
            if why:
                return dict(rec, status="incorrect", error=why)
            if not self.interpreter:
                rec.update(self._rates(spec, problem, hw, p50))
                base = self._baseline_ms(spec, problem, study, req.get("bench", {}))[1]
                rec.update(baseline_ms=base, speedup=base / p50)
            rec["timed_to"] = time.time()
        rec["device_busy_s"] = rec["timed_to"] - rec["timed_from"]
        rec["eval_s"] = time.perf_counter() - t_start
        return dict(rec, status="ok")

    def _rates(self, spec, problem, hw, ms: float) -> dict:
        from kernelevolve.tuner.experiment.hardware import ceiling_for

        s = ms * 1e-3
        flops, nbytes = spec.flops(problem) / s, spec.bytes_moved(problem) / s
        out = {"tflops": flops / 1e12, "gbps": nbytes / 1e9}
        dtype = getattr(problem, "dtype", "float32")
        for key, rate, name in ((f"{dtype}_flops", flops, "pct_flops_ceiling"),
                                ("copy_bytes", nbytes, "pct_bandwidth_ceiling")):
            ceil = ceiling_for(hw, key)
            if ceil:
                out[name] = 100.0 * rate / ceil.value
        return out

    def _tags(self) -> dict:
        keys = ("gpu_name", "gpu_uuid", "node", "torch", "triton")
        return {**{k: self.info[k] for k in keys}, "worker_pid": os.getpid()}

    def retime(self, req: dict) -> dict:
        """Re-time the top configs and the peer, interleaved round by round (no winner's curse:
        a candidate that won on a lucky measurement is measured again beside the others)."""
        tunable, problem, hw, study = self._load(req)
        spec, rounds, bench = tunable.kernel, int(req.get("rounds", 5)), req.get("bench", {})
        inputs, _ = self._set(spec, problem, study, 0, with_ref=False)
        out = spec.make_output(problem, inputs)
        fns = [(i, (lambda c=c: spec.launch(inputs, out, c))) for i, c in enumerate(req["configs"])]
        fns.append(("baseline", lambda: spec.baseline(inputs)))
        samples = {k: [] for k, _ in fns}
        with self._lock():
            for _ in range(rounds):
                for k, fn in fns:
                    samples[k].append(self._time(fn, bench, bench.get("retime_rep_ms"))[1])
        med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
        rows = [{"config": c, "latency_ms": med[i], "rounds_ms": samples[i]}
                for i, c in enumerate(req["configs"])]
        base = None if self.interpreter else med["baseline"]
        for r in rows:
            if base:
                r.update(speedup=base / r["latency_ms"], **self._rates(spec, problem, hw, r["latency_ms"]))
        return {"status": "ok", "rows": rows, "baseline_ms": base, **self._tags(),
                "timing": "interpreter" if self.interpreter else "gpu"}

    def _sealed(self, reply: dict) -> dict:
        """[guards] a process whose harness a candidate replaced evaluates nothing more: replaced."""
        if self._seal.broken():
            reply["worker_unusable"] = True
        return reply

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        try:
            if op == "evaluate":
                return self._sealed(self.evaluate(req))
            if op == "compile":
                return self._sealed(self.compile(req))
            if op == "retime":
                return self.retime(req)
            if op == "probe":
                return {"status": "ok", **self.info}
            return {"status": "runtime_error", "error": f"unknown request op {op!r}"}
        except Exception as exc:  # anything the steps did not classify
            reply = {"status": "runtime_error", "error": _short(exc),
                     "traceback": traceback.format_exc()[-4000:], **self._tags(),
                     "timing": "interpreter" if self.interpreter else "gpu"}
            # A CUDA error (illegal address, ...) can leave the context unusable: be replaced. Running
            # out of memory does not: the allocator's cache is emptied and the process goes on.
            oom = "out of memory" in str(exc).lower()
            if oom and self.device.type == "cuda":
                self.inputs.entries.clear()
                self.torch.cuda.empty_cache()
            reply["worker_unusable"] = self.device.type == "cuda" and not oom
            return reply


def serve() -> None:
    from kernelevolve.tuner.execution.worker import recv, send

    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever kernels print goes to stderr, never into the channel
    proto_in = sys.stdin.buffer
    evaluator = Evaluator()
    send(proto_out, {"ready": True, "pid": os.getpid()})
    while True:
        try:
            req = recv(proto_in)
        except EOFError:
            return
        if req.get("op") == "exit":
            return
        reply = evaluator.handle(req)
        send(proto_out, reply)
        if reply.get("worker_unusable"):
            return


if __name__ == "__main__":
    serve()
