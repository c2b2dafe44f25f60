"""One candidate -> one measurement, in four steps; each failure ends in exactly one status.

  1. constraints  -> invalid           (re-checked here: a worker never trusts its input)
  2. compile      -> compile_error / out_of_resources   (the first launch compiles; on a GPU the
                                        `compile` request does it ahead, on a CPU core and on
                                        described inputs: tuner/measure/compile_ahead.py, and
                                        this process finds the binary in Triton's cache)
  3. verify       -> incorrect         (two of the study's seeded input sets, chosen by the
                                        candidate's seed, and the first again with one element
                                        moved (fingerprint memoisation); each launch gets copies
                                        of the inputs inside canary bands and a NaN-poisoned
                                        output between guard zones, tuner/measure/guards.py)
  4. time         -> ok, with p20/p50/p80 latency, TFLOP/s, GB/s, % of the device's ceilings,
                     and the torch peer timed in the same process under the same lock. Timed
                     calls alternate between two more input sets, each writing a buffer that
                     holds NaN or the other set's output, and an unpredictable sample of them
                     is checked after the loop
                     (tuner/measure/timed_outputs.py); on a GPU a latency beyond the device's
                     ceilings is `incorrect`
This process only launches and gathers evidence: every check's verdict (outputs against the
float64 reference from pristine inputs, guard zones, inputs unchanged, canaries, a Triton launch)
is computed by the judge, a process of its own where no candidate code runs
(tuner/measure/judge.py; the hand-over of evidence: tuner/measure/handover.py); the parent records
the judge's verdict, not this process's word.
Anything else raised is runtime_error; a hang or a crash is recorded by the parent (worker.py)
as timeout or runtime_error. The process's main, the loop that serves its requests, is
tuner/measure/evaluate_process.py (`python -m kernelevolve.tuner.measure.evaluate_process`).

The process lives for the sweep (one per GPU lane, one per compile slot): a lane's keeps the CUDA
context, each study's input sets and references (InputSets, bounded in bytes) and the compiled
kernels, so a candidate pays for its own launches only; a compile slot's makes no CUDA context.
"""
from __future__ import annotations

import functools
import os
import time
import traceback
from contextlib import contextmanager

from kernelevolve.tuner.measure.constraints import violations
from kernelevolve.tuner.measure.input_sets import INPUT_SETS, InputSets
from kernelevolve.tuner.measure.launch_failures import error_classes, short_error
from kernelevolve.tuner.measure.timed_outputs import TimedOutputs, guarded_output
from kernelevolve.tuner.records.schema import STATUSES  # noqa: F401 - every candidate ends in one of them

# The third verified launch's input set: the first set with one element moved, at a position seeded
# by MOVED_SEED + the set's index. Cached like the study's other sets, with its reference (a float64
# GEMM reference of 4096^3 costs 2.4 ms on an H100: per candidate, a tenth of its evaluation).
MOVED_SEED = 7919

# The progress frames an evaluation process sends its parent when the device is busy, and when
# it holds it after waiting: the wait is not charged to the candidate, whose timeout counts again
# from the second (tuner/execution/worker.py).
WAITING, LOCKED = "device_wait", "device_locked"


def _compact(ref, out_dtype):
    """A float64 reference of a 16- or 32-bit float output, kept in fp32: the judge compares in
    fp32 (tuner/measure/verify.py), and half the bytes are read at every check and cached."""
    import torch

    if getattr(ref, "dtype", None) == torch.float64 and \
            out_dtype in (torch.float16, torch.bfloat16, torch.float32):
        return ref.float()
    return ref



class Evaluator:
    def __init__(self):
        import torch

        self.torch = torch
        self.interpreter = os.environ.get("TRITON_INTERPRET") == "1"
        self.baselines: dict = {}
        self.progress = None  # progress(what): a frame to the parent mid-request (serve() sets it)
        self.out_dtypes: dict = {}  # study -> its output's dtype
        self.studies: dict = {}
        self.inputs = InputSets(self._input_budget)
        from kernelevolve.tuner.measure.described import Described

        self.described = Described()  # a compile slot's inputs as meta tensors (compile_ahead.py)
        self.oor_errors, self.compile_errors = error_classes()
        # the check functions' identities as imported now, before any candidate code runs here
        # (a naive replacement is caught at once; the judge holds the verdict either way)
        from kernelevolve.tuner.measure import guards, launch_watch
        from kernelevolve.tuner.measure.evidence import JudgeLink
        from kernelevolve.tuner.measure.handover import Handover
        from kernelevolve.tuner.measure.seal import HarnessSeal

        # looked up through the modules the seal holds, at each call
        self._guards, self._launch_watch = guards, launch_watch
        self._seal = HarnessSeal(owners={
            launch_watch.library_mode(): ("__torch_dispatch__",),
            Evaluator: ("_launch_guarded", "_run_checked", "_check_timed", "_timed_outputs", "_time", "_set", "evaluate",
                        "retime", "handle"),
            Handover: ("note", "register", "submit", "submit_all", "audit", "held", "forget", "guarded", "inputs_for", "_stand"),
            JudgeLink: ("submit", "_send")})
        fds = os.environ.get("KERNELEVOLVE_EVIDENCE_FDS")
        self._judge = JudgeLink(fds, self.device.type == "cuda") if fds else None
        self.handover = Handover(self._judge, self.inputs, guards, self._seal, self._sync)

    # The device, its description and the input cache's budget are found where first needed, not
    # as the process starts: a compile slot's compile on described inputs needs none of them, so
    # it never initialises CUDA (tuner/measure/described.py says why that matters); a lane's
    # first request (its probe) finds them all.
    @functools.cached_property
    def device(self):
        torch = self.torch
        return torch.device("cuda" if torch.cuda.is_available() and not self.interpreter else "cpu")

    @functools.cached_property
    def info(self) -> dict:
        from kernelevolve.tuner.experiment.hardware import detect_device

        return detect_device()

    def _input_budget(self) -> int:
        """Bytes of input sets and references this process keeps: KERNELEVOLVE_INPUT_BYTES, else a
        quarter of the GPU's memory (2 GB on the CPU)."""
        budget = float(os.environ.get("KERNELEVOLVE_INPUT_BYTES", 0)) or (
            0.25 * self.torch.cuda.get_device_properties(0).total_memory if self.device.type == "cuda"
            else 2e9)
        return int(budget)

    # -- helpers ---------------------------------------------------------------------------
    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    @contextmanager
    def _lock(self):
        """Exclusive use of this process's device for verification and timing. On the CPU too:
        concurrent interpreter candidates would otherwise disturb each other's wall time. Once
        held, the parent is told (`progress`), so that the time spent waiting for the device
        (another process timing, a profiler reading a finalist's counters) is not charged to
        this candidate's timeout."""
        from kernelevolve.tuner.measure.clocks import device_lock

        waited = []

        def wait():
            waited.append(True)
            if self.progress is not None:
                self.progress(WAITING)

        with device_lock(self.info["gpu_uuid"], on_wait=wait):
            if waited and self.progress is not None:
                self.progress(LOCKED)
            yield

    def _clock(self, bench: dict) -> str:
        return bench.get("clock", "do_bench") if self.device.type == "cuda" else "wall"

    def _time(self, fn, bench: dict, rep_ms: float | None = None, before=None):
        from kernelevolve.tuner.measure.clocks import measure

        return measure(fn, self._clock(bench), bench.get("warmup_ms", 25), rep_ms or bench.get("rep_ms", 100),
                       bench.get("wall_reps", 3), before=before)

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

    def _out_dtype(self, spec, problem, study, inputs):
        """The study's output dtype, learned from one output made once per study (not one per
        cached set: an embedding bag's gradient output is 2 GB)."""
        if study not in self.out_dtypes:
            self.out_dtypes[study] = spec.make_output(problem, inputs).dtype
        return self.out_dtypes[study]

    def _set(self, spec, problem, study, index, with_ref: bool = True):
        """The study's input set `index` (seeded by it) and, with_ref, its reference. No kernel
        is ever handed these tensors (it gets guarded copies), so the cached reference holds.
        `index` "<i>~moved": set i with one element moved (tuner/measure/guards.perturbed, at a
        position seeded by i), cached with its own reference like the others."""
        if isinstance(index, str):
            base = int(index.split("~")[0])
            make = lambda: self._guards.perturbed(self._set(spec, problem, study, base, with_ref=False)[0],  # noqa: E731
                                                  MOVED_SEED + base)
        else:
            make = lambda: spec.make_inputs(problem, self.device, 1 + index)  # noqa: E731
        inputs, ref = self.inputs.get((study, index), make,
                                      (lambda inp: _compact(spec.reference(inp), self._out_dtype(spec, problem, study, inp)))
                                      if with_ref else None)
        self.handover.note(study, index, inputs, ref)  # the judge fingerprints a set as made
        return inputs, ref

    def _launch_guarded(self, spec, problem, cfg, study, index, what: str = ""):
        """Launch on copies of the study's input set `index` (inside canary bands, with pristine
        copies kept aside) into a poisoned output between poisoned guard zones. Returns the
        compiled kernel and the launch's evidence (Handover._message's arguments): the judge
        checks the output against the reference, the guards, the inputs and the canaries."""
        from kernelevolve.kernels.spec import reduction_length

        pooled, ref = self._set(spec, problem, study, index)
        guarded = self.handover.inputs_for(study, index, pooled)
        shape_of = spec.make_output(problem, guarded.inputs)
        alloc = self.handover.alloc
        buf, out = self.handover.guarded(lambda: guarded_output(shape_of, alloc))
        with self._launch_watch.count_launches(self.interpreter, watch=True) as launches:
            handle = spec.launch(guarded.inputs, out, cfg)
            self._sync()
        return handle, {"kind": "verify", "what": what, "outs": [(buf, None, 0)], "shape_of": shape_of,
                        "sets": [(ref, self.handover.key(study, index))], "guarded": [guarded],
                        "reduction": reduction_length(spec, problem), "launches": launches.n,
                        "stray_launches": launches.stray, "library_calls": sorted(launches.library)}

    def _run_checked(self, spec, problem, cfg, study, index, what: str = ""):
        """One verified launch, judged alone (its buffers free again once it is)."""
        with self.handover.step():
            handle, evidence = self._launch_guarded(spec, problem, cfg, study, index, what)
            return handle, self.handover.submit(**evidence)

    def _timed_inputs(self, spec, problem, study, indices: tuple):
        """What timed calls launch on: guarded copies of the input sets `indices` (two: the calls
        alternate between them, tuner/measure/timed_outputs.py) as [(copies, reference, index)],
        and the output's shape. Copies: the pool stays pristine; the judge checks them after."""
        sets = []
        for index in indices:
            pooled, ref = self._set(spec, problem, study, index)
            sets.append((self.handover.inputs_for(study, index, pooled), ref, index))
        return sets, spec.make_output(problem, sets[0][0].inputs)

    def _timed_outputs(self, spec, cfg, sets, shape_of, bench: dict) -> TimedOutputs:
        """One config's timed calls, each on the input set TimedOutputs picks for it."""
        inputs = [guarded.inputs for guarded, _, _ in sets]
        return self.handover.guarded(lambda: TimedOutputs(
            lambda out, which: spec.launch(inputs[which], out, cfg), shape_of,
            graph=self._clock(bench) == "cudagraph", alloc=self.handover.alloc, watch=True,
            interpreter=self.interpreter))

    def _check_timed(self, spec, problem, study, sets, outputs: TimedOutputs, row=None, audit=False):
        """The judge checks the sampled timed calls' outputs, each against its own set's
        reference (and the inputs they were given); `audit`: the cached sets used so far too."""
        from kernelevolve.kernels.spec import reduction_length

        return self.handover.submit("timed", "timed calls", outputs.samples(), outputs.shape_of,
                                    [(ref, self.handover.key(study, index)) for _, ref, index in sets],
                                    [guarded for guarded, _, _ in sets], reduction_length(spec, problem),
                                    row=row, calls=outputs.total_calls(), audit=audit,
                                    stray_launches=outputs.stray, library_calls=sorted(outputs.library))

    def _baseline_ms(self, spec, problem, study, bench):
        if study not in self.baselines:
            inputs, _ = self._set(spec, problem, study, 0, with_ref=False)
            self.baselines[study] = self._time(lambda: spec.baseline(inputs), bench)
        return self.baselines[study]

    @staticmethod
    def _handle_info(handle, load: bool = True) -> dict:
        """Registers, spills and shared memory of a compiled kernel, where Triton has them.
        `load`: load the binary (a CUDA context's work) for its registers and spills."""
        out = {}
        init = getattr(handle, "_init_handles", None)
        if callable(init) and load:
            init()  # loads the binary: a kernel over the chip's shared memory raises here
        for attr in ("n_regs", "n_spills"):
            if isinstance(getattr(handle, attr, None), int):
                out[attr] = getattr(handle, attr)
        shared = getattr(getattr(handle, "metadata", None), "shared", None)
        if isinstance(shared, int):
            out["shared_bytes"] = shared
        return out

    # -- the four steps --------------------------------------------------------------------
    def evaluate(self, req: dict) -> dict:
        from kernelevolve.kernels.spec import least_bytes

        rec = {"timing": "interpreter" if self.interpreter else "gpu", **self._tags()}
        t_start = time.perf_counter()
        tunable, problem, hw, study = self._load(req)
        spec, cfg, seed = tunable.kernel, req["config"], int(req.get("seed", 0))
        first_set, second_set = seed % INPUT_SETS, (seed + 1) % INPUT_SETS
        timed_sets = ((seed + 2) % INPUT_SETS, (seed + 3) % INPUT_SETS)

        reasons = violations(tunable, problem, hw, cfg)  # 1. constraints
        if reasons:
            return dict(rec, status="invalid", error="; ".join(reasons))

        t0 = time.perf_counter()  # 2. compile (the first launch, or a cache load), also verify set 1
        verified = self.handover.mark()  # the three verified launches' buffers, free once judged
        try:
            handle, first = self._launch_guarded(spec, problem, cfg, study, first_set, "")
        except self.oor_errors as exc:
            return dict(rec, status="out_of_resources", error=short_error(exc))
        except self.compile_errors as exc:
            return dict(rec, status="compile_error", error=short_error(exc))
        rec["load_s" if req.get("compiled") else "compile_s"] = time.perf_counter() - t0
        rec.update(self._handle_info(handle))

        t_wait = time.time()
        with self._lock():  # 3. verify sets 2 and 3, then 4. time; nothing else uses this GPU meanwhile
            rec["timed_from"] = time.time()
            rec["lock_wait_s"] = rec["timed_from"] - t_wait
            second = self._launch_guarded(spec, problem, cfg, study, second_set, "second input set")[1]
            # the first set again with one element moved (fingerprint memoisation)
            third = self._launch_guarded(spec, problem, cfg, study, f"{first_set}~moved",
                                         "first input set, one element moved")[1]
            # all three judged in one message (a candidate wrong on the first is launched twice
            # more for nothing: cheaper than two more round trips for every candidate)
            first, second, third = self.handover.submit_all([first, second, third])
            self.handover.release(verified)
            rec["rel_error"] = max(first.rel_error, second.rel_error, third.rel_error)
            rec["max_error"] = max(first.max_error, second.max_error, third.max_error)
            if not (first.ok and second.ok and third.ok):
                return dict(rec, status="incorrect",
                            error=next(c.reason for c in (first, second, third) if not c.ok))
            sets, shape_of = self._timed_inputs(spec, problem, study, timed_sets)
            outputs = self._timed_outputs(spec, cfg, sets, shape_of, req.get("bench", {}))
            fn, before = outputs.loop()
            t0 = time.perf_counter()
            p20, p50, p80 = self._time(fn, req.get("bench", {}), before=before)
            outputs.end_loop()
            rec.update(clock=self._clock(req.get("bench", {})),
                       latency_p20_ms=p20, latency_ms=p50, latency_p80_ms=p80, time_loop_s=time.perf_counter() - t0,
                       timed_calls=outputs.total_calls(), timed_checked=len(outputs.samples()))
            after = self._check_timed(spec, problem, study, sets, outputs, audit=True)
            sets = outputs = fn = before = None  # the timed buffers go before the peer runs
            if not after.ok:
                return dict(rec, status="incorrect", error=after.reason)
            # on a GPU, no faster than physics; a graph's replays flush no L2, so data a small
            # kernel left there may come back faster than HBM: its bytes are not held to HBM's
            # bandwidth there (its flops still are)
            why = "" if self.interpreter else self._guards.ceiling_violation(
                p20, spec.flops(problem), least_bytes(spec, problem), hw,
                getattr(problem, "dtype", "float32"),
                bandwidth=rec["clock"] != "cudagraph")
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
        transport = self._judge.transport if self._judge is not None else "none"
        return {**{k: self.info[k] for k in keys}, "worker_pid": os.getpid(), "judge_transport": transport}

    def _sealed(self, reply: dict, shared: bool = True) -> dict:
        """A process whose harness a candidate replaced evaluates nothing more: replaced. CUDA
        buffers the judge has let go of are handed back to the allocator (torch's IPC keeps a
        shared buffer until its receiver is done and the sender collects); `shared` False: the
        request shared none (a compile, which must not make a CUDA context for nothing)."""
        if self._seal.broken():
            reply["worker_unusable"] = True
        if shared and self.device.type == "cuda" and self._judge is not None and self._judge.ipc:
            self.torch.cuda.ipc_collect()
        return reply

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        t0 = time.perf_counter()
        self.handover.begin(judging=op in ("evaluate", "retime"))
        begun = time.perf_counter() - t0
        reply = self._handle(req)
        if op == "evaluate":
            reply["request_setup_s"] = begun
        if self.handover.judging:
            audit_s = self.handover.audit()
            if "eval_s" in reply:  # the audit is part of the request's evaluation
                reply["eval_s"] += audit_s
            reply.update(self.handover.cost())
        return reply

    def _handle(self, req: dict) -> dict:
        op = req.get("op")
        try:
            if op == "evaluate":
                return self._sealed(self.evaluate(req))
            if op == "compile":  # steps 1-2 ahead of the GPU's lane (tuner/measure/compile_ahead.py)
                from kernelevolve.tuner.measure.compile_ahead import compile_request

                return self._sealed(compile_request(self, req), shared=False)
            if op == "retime":  # a study's finalists and its peer, interleaved (tuner/measure/retime.py)
                from kernelevolve.tuner.measure.retime import retime_request

                return self._sealed(retime_request(self, req))
            if op == "profile":  # the launches a profiler reads (tuner/profile/launches.py)
                from kernelevolve.tuner.profile.launches import profile_request

                return self._sealed(profile_request(self, req))
            if op == "prepare":  # a study's sets, references and peer timing, ahead of its candidates
                from kernelevolve.tuner.measure.prepare import prepare_request

                return self._sealed(prepare_request(self, req))
            if op == "probe":
                return {"status": "ok", **self.info}
            if op == "release":  # a profile of this GPU ran out of memory (tuner/execution/counters.py)
                return {"status": "ok", "released_bytes": self.release()}
            return {"status": "runtime_error", "error": f"unknown request op {op!r}"}
        except Exception as exc:  # anything the steps did not classify
            reply = {"status": "runtime_error", "error": short_error(exc),
                     "traceback": traceback.format_exc()[-4000:], **self._tags(),
                     "timing": "interpreter" if self.interpreter else "gpu"}
            # A CUDA error (illegal address, ...) can leave the context unusable: be replaced. Running
            # out of memory does not: the allocator's cache is emptied and the process goes on.
            oom = "out of memory" in str(exc).lower()
            if oom:
                self.release()
            reply["worker_unusable"] = self.device.type == "cuda" and not oom
            return reply


    def release(self) -> int:
        """Every cached input set dropped and the allocator's cache handed back to the GPU (they
        are made again on the next request that needs them); the bytes handed back."""
        if self.device.type != "cuda":
            return 0
        before = self.torch.cuda.memory_reserved()
        self.inputs.clear()
        self.handover.forget(self.inputs.take_evicted())
        self.torch.cuda.empty_cache()
        return before - self.torch.cuda.memory_reserved()
