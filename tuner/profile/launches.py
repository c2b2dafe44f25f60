"""The `profile` request of an evaluation process: a finalist's launches, for a profiler to read.

The evaluation process (tuner/measure/evaluate.py) serves it like `evaluate`; what profiles it, and
how its counters are read, is the rest of this package (ncu.py runs Nsight Compute on a process that
makes this request, parse.py reads what it wrote).
"""
from __future__ import annotations

from kernelevolve.tuner.measure.constraints import violations


def _kernel_name(handle) -> str | None:
    """A compiled Triton kernel's name (what Nsight Compute lists), where the launch returned one."""
    name = getattr(handle, "name", None) or getattr(getattr(handle, "metadata", None), "name", None)
    return name if isinstance(name, str) else None


def profile_request(ev, req: dict) -> dict:
    """The launches a profiler reads (tuner/profile), a separate pass after timing: the candidate
    verified once (which compiles it), one warm call, then `calls` calls between
    cudaProfilerStart and cudaProfilerStop, so a profiler started with --profile-from-start
    off sees the candidate's own kernels only (no reference, verification or torch peer), inside
    the NVTX range the request names, if any.
    Nothing is timed here; the device lock, held throughout, keeps other candidates' timings
    undisturbed."""
    rec = {"timing": "interpreter" if ev.interpreter else "gpu", **ev._tags()}
    tunable, problem, hw, study = ev._load(req)
    spec, cfg, calls = tunable.kernel, req["config"], max(1, int(req.get("calls", 1)))
    reasons = violations(tunable, problem, hw, cfg)
    if reasons:
        return dict(rec, status="invalid", error="; ".join(reasons))
    cuda = ev.device.type == "cuda"
    handles = []
    # the lock from the first launch: during a sweep this process shares the GPU with a lane
    # that is timing other candidates, and the verification's reference runs on the GPU too
    with ev._lock():
        handle, first = ev._run_checked(spec, problem, cfg, study, 0)
        if not first.ok:
            return dict(rec, status="incorrect", error=first.reason)
        inputs, _ = ev._set(spec, problem, study, 0, with_ref=False)
        out = spec.make_output(problem, inputs)
        spec.launch(inputs, out, cfg)  # warm: nothing is compiled or loaded inside the range
        ev._sync()
        # the request's NVTX range (`nvtx`, tuner.profile.batch) around its launches: ncu
        # (--nvtx) records it with each launch, which tells apart the candidates one process profiles
        tag = req.get("nvtx") if cuda else None
        if cuda:
            ev.torch.cuda.profiler.start()
        if tag:
            ev.torch.cuda.nvtx.range_push(tag)
        for _ in range(calls):
            handles.append(spec.launch(inputs, out, cfg))
        ev._sync()
        if tag:
            ev.torch.cuda.nvtx.range_pop()
        if cuda:
            ev.torch.cuda.profiler.stop()
    names = sorted({n for n in (_kernel_name(h) for h in [handle, *handles]) if n})
    return dict(rec, status="ok", calls=calls, kernel_names=names, flops=float(spec.flops(problem)),
                bytes_moved=float(spec.bytes_moved(problem)), **ev._handle_info(handle))

