"""One candidate -> one measurement, in four steps; each failure ends in exactly one status.

  1. constraints  -> invalid           (re-checked here: a worker never trusts its input)
  2. compile      -> compile_error / out_of_resources   (the first launch compiles)
  3. verify       -> incorrect         (two fresh random input sets, outputs poisoned with NaN,
                                        checked against the float64 reference; a kernel that
                                        caches its first result fails the second set; a third
                                        set is the first with one element moved, against
                                        fingerprint memoisation. tuner/measure/guards.py: the
                                        reference reads pristine input copies, inputs must be
                                        unchanged, canary bands intact, a Triton kernel launched,
                                        the harness's check functions untouched)
  4. time         -> ok, with p20/p50/p80 latency, TFLOP/s, GB/s, % of the device's ceilings,
                     and the torch peer timed in the same process under the same lock; then
                     verified once more (a kernel that works only on its first calls), and on a
                     GPU a latency beyond the device's ceilings is `incorrect`
Anything else raised is runtime_error; a hang or a crash is recorded by the parent (worker.py)
as timeout or runtime_error. This module is the child process's main: `python -m tuner.measure.evaluate`.
"""
from __future__ import annotations

import os
import sys
import time
import traceback

# Poisoned elements on each side of every output: a kernel that writes past its output's ends
# lands here and is caught (instead of silently corrupting a neighbour).
GUARD_ELEMENTS = 1 << 16

STATUSES = ("ok", "invalid", "compile_error", "out_of_resources", "incorrect", "runtime_error",
            "timeout")


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


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 4000 else text[:4000] + " ..."


class Evaluator:
    def __init__(self):
        import torch

        from tuner.experiment.hardware import detect_device

        self.torch = torch
        self.interpreter = os.environ.get("TRITON_INTERPRET") == "1"
        self.device = torch.device("cuda" if torch.cuda.is_available() and not self.interpreter
                                   else "cpu")
        self.info = detect_device()
        self.baselines: dict = {}
        self.oor_errors, self.compile_errors = _error_classes()
        # [guards] the check functions as imported now, before any candidate code runs here
        from tuner.measure import guards, verify

        self._check, self._tolerance_for, self._guards = verify.check, verify.tolerance_for, guards
        self._seal = guards.HarnessSeal()

    # -- helpers ---------------------------------------------------------------------------
    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def _lock(self):
        """Exclusive use of this process's device for verification and timing. On the CPU too:
        concurrent interpreter candidates would otherwise disturb each other's wall time."""
        from tuner.measure.clocks import device_lock

        return device_lock(self.info["gpu_uuid"])

    def _time(self, fn, bench: dict):
        from tuner.measure.clocks import time_gpu, time_wall

        if self.device.type == "cuda":
            return time_gpu(fn, bench.get("warmup_ms", 25), bench.get("rep_ms", 100), bench.get("flush", "zeroing"))
        return time_wall(fn, bench.get("wall_reps", 3))

    def _load(self, req):
        from tuner.experiment import hardware, registry

        tunable = registry.load(req["kernel_ref"])
        problem = tunable.kernel.problem(**req["problem"])
        return tunable, problem, hardware.profile(req["hardware"])

    def _run_checked(self, spec, problem, cfg, seed, perturb: bool = False):
        """Launch on fresh inputs into a poisoned output that sits between two poisoned guard
        zones of the same allocation; check the output and that both guards are untouched."""
        from kernels.spec import reduction_length
        from tuner.measure.verify import Check, poison

        inputs = spec.make_inputs(problem, self.device, seed)
        # [guards] the kernel gets copies of its inputs inside canary bands; the reference is
        # computed before the launch, from pristine copies
        if perturb:
            inputs = self._guards.perturbed(inputs, seed)
        guarded = self._guards.guard_inputs(inputs)
        inputs = guarded.inputs
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

    def _baseline_ms(self, spec, problem, bench):
        key = (spec.name, problem.model_dump_json())
        if key not in self.baselines:
            inputs = spec.make_inputs(problem, self.device, 7)
            self.baselines[key] = self._time(lambda: spec.baseline(inputs), bench)
        return self.baselines[key]

    # -- the four steps --------------------------------------------------------------------
    def evaluate(self, req: dict) -> dict:
        rec = {"timing": "interpreter" if self.interpreter else "gpu", **self._tags()}
        t_start = time.perf_counter()
        tunable, problem, hw = self._load(req)
        spec, cfg, seed = tunable.kernel, req["config"], int(req.get("seed", 0))

        reasons = tunable.space(problem, hw).violations(cfg)  # 1. constraints
        if reasons:
            return dict(rec, status="invalid", error="; ".join(reasons))

        t0 = time.perf_counter()  # 2. compile (the first launch), also verify set 1
        try:
            handle, first = self._run_checked(spec, problem, cfg, seed * 2 + 1)
        except self.oor_errors as exc:
            return dict(rec, status="out_of_resources", error=_short(exc))
        except self.compile_errors as exc:
            return dict(rec, status="compile_error", error=_short(exc))
        rec["compile_s"] = time.perf_counter() - t0
        for attr, name in (("n_regs", "n_regs"), ("n_spills", "n_spills")):
            if isinstance(getattr(handle, attr, None), int):
                rec[name] = getattr(handle, attr)
        shared = getattr(getattr(handle, "metadata", None), "shared", None)
        if isinstance(shared, int):
            rec["shared_bytes"] = shared

        t_wait = time.time()
        with self._lock():  # 3. verify set 2, then 4. time; nothing else uses this GPU meanwhile
            rec["timed_from"] = time.time()
            rec["lock_wait_s"] = rec["timed_from"] - t_wait
            second = first if not first.ok else self._run_checked(spec, problem, cfg, seed * 2 + 2)[1]
            # [guards] the first set again with one element moved (fingerprint memoisation)
            third = second if not second.ok else self._run_checked(spec, problem, cfg, seed * 2 + 1,
                                                                    perturb=True)[1]
            rec["rel_error"] = max(first.rel_error, second.rel_error, third.rel_error)
            rec["max_error"] = max(first.max_error, second.max_error, third.max_error)
            if not (first.ok and second.ok and third.ok):
                return dict(rec, status="incorrect",
                            error=first.reason or (f"second input set: {second.reason}" if not second.ok
                                                   else f"first input set, one element moved: {third.reason}"))
            inputs = spec.make_inputs(problem, self.device, seed * 2 + 3)
            out = spec.make_output(problem, inputs)
            p20, p50, p80 = self._time(lambda: spec.launch(inputs, out, cfg), req.get("bench", {}))
            rec.update(latency_p20_ms=p20, latency_ms=p50, latency_p80_ms=p80)
            # [guards] still correct after its timed calls; on a GPU, no faster than physics
            after = self._run_checked(spec, problem, cfg, seed * 2 + 4)[1]
            if not after.ok:
                return dict(rec, status="incorrect", error=f"after timing: {after.reason}")
            why = "" if self.interpreter else self._guards.ceiling_violation(
                p20, spec.flops(problem), spec.bytes_moved(problem), hw,
                getattr(problem, "dtype", "float32"))
            if why:
                return dict(rec, status="incorrect", error=why)
            if not self.interpreter:
                rec.update(self._rates(spec, problem, hw, p50))
                base = self._baseline_ms(spec, problem, req.get("bench", {}))[1]
                rec.update(baseline_ms=base, speedup=base / p50)
            rec["timed_to"] = time.time()
        rec["device_busy_s"] = rec["timed_to"] - rec["timed_from"]
        rec["eval_s"] = time.perf_counter() - t_start
        return dict(rec, status="ok")

    def _rates(self, spec, problem, hw, ms: float) -> dict:
        from tuner.experiment.hardware import ceiling_for

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
        tunable, problem, hw = self._load(req)
        spec, rounds, bench = tunable.kernel, int(req.get("rounds", 5)), req.get("bench", {})
        inputs = spec.make_inputs(problem, self.device, 11)
        out = spec.make_output(problem, inputs)
        fns = [(i, (lambda c=c: spec.launch(inputs, out, c))) for i, c in enumerate(req["configs"])]
        fns.append(("baseline", lambda: spec.baseline(inputs)))
        samples = {k: [] for k, _ in fns}
        with self._lock():
            for _ in range(rounds):
                for k, fn in fns:
                    samples[k].append(self._time(fn, bench)[1])
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
            if op == "retime":
                return self.retime(req)
            if op == "probe":
                return {"status": "ok", **self.info}
            return {"status": "runtime_error", "error": f"unknown request op {op!r}"}
        except Exception as exc:  # anything the steps did not classify
            reply = {"status": "runtime_error", "error": _short(exc),
                     "traceback": traceback.format_exc()[-4000:], **self._tags(),
                     "timing": "interpreter" if self.interpreter else "gpu"}
            # A CUDA error (illegal address, ...) can leave the context unusable: be replaced.
            reply["worker_unusable"] = self.device.type == "cuda"
            return reply


def serve() -> None:
    from tuner.execution.worker import recv, send

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
