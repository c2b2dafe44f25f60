"""A compile slot's request: steps 1 and 2 of a candidate ahead of its GPU's lane.

A GPU sweep's trial compiles each candidate in an evaluation process of its own (a compile slot,
tuner.execution.trial) while the GPU's lane verifies and times others: constraints first, then
Triton's compile into its on-disk cache, where the lane's first launch of the same config finds
it. Nothing is launched on the GPU. The compile runs on described inputs (meta tensors:
tuner/measure/described.py says why) where the study's launcher allows, else on the study's input
set on the device, as every compile did before.
"""
from __future__ import annotations

import os
import time

from kernelevolve.tuner.measure.constraints import is_vendor_config, violations
from kernelevolve.tuner.measure.launch_failures import compile_only, short_error

# What a compile slot compiles on: "described" (meta tensors), or "device" (the study's input set
# on the GPU; kept for comparison: benchmarks/startup_probe.py --compile-slots times both)
COMPILE_ON = os.environ.get("KERNELEVOLVE_COMPILE_ON", "described")


def compile_request(ev, req: dict) -> dict:
    """Steps 1 and 2 of `req`'s candidate in the evaluator `ev`; its record (status, compile_s,
    compiled_on, the compiled kernel's registers and shared memory where known).

    A compile on described inputs touches no GPU, not even to describe it: the target's profile
    answers what the compile asks (tuner/measure/described.py). So the record of a compile that
    succeeds carries no device tags (the lane's reply, which becomes the candidate's record, has
    them), and the device is described (Evaluator.info: CUDA initialised, no context) only for a
    record that ends here, a failure's."""
    rec = {"timing": "interpreter" if ev.interpreter else "gpu"}
    t0 = time.perf_counter()
    tunable, problem, hw, study = ev._load(req)
    rec["study_load_s"] = time.perf_counter() - t0
    spec, cfg = tunable.kernel, req["config"]
    reasons = violations(tunable, problem, hw, cfg)
    if reasons:
        return dict(rec, status="invalid", error="; ".join(reasons), **ev._tags())
    if ev.interpreter:  # nothing to compile ahead: the interpreter runs the source
        return dict(rec, status="ok")
    if is_vendor_config(spec, problem, cfg):  # torch's GEMM: nothing to compile, and a compile slot
        return dict(rec, status="ok")  # must put no work on the GPU the lane is timing
    t0 = time.perf_counter()
    try:
        handle = (ev.described.compile(spec, problem, study, cfg, ev.oor_errors + ev.compile_errors, hw)
                  if ev.described.usable(study) and COMPILE_ON != "device" else None)
        if handle is not None:
            rec["compiled_on"] = "described"
            rec.update(ev._handle_info(handle, load=False))  # loading it would make a CUDA context
        else:
            inputs, _ = ev._set(spec, problem, study, 0, with_ref=False)
            with compile_only():
                handle = spec.launch(inputs, spec.make_output(problem, inputs), cfg)
            rec["compiled_on"] = "device"
            rec.update(ev._handle_info(handle))
    except ev.oor_errors as exc:
        return dict(rec, status="out_of_resources", error=short_error(exc), **ev._tags())
    except ev.compile_errors as exc:
        return dict(rec, status="compile_error", error=short_error(exc), **ev._tags())
    rec["compile_s"] = time.perf_counter() - t0
    return dict(rec, status="ok")
