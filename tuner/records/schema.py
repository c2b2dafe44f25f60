"""The candidate record: one schema for the worker's reply, the journal, MLflow and the tables.

A record is a flat dict (it crosses process boundaries as a pickle and lands in a JSON-lines
journal). Each field is declared once here with where it goes in MLflow: a *metric* (a number
the UI plots and compares across runs), a *tag* (a string: status, GPU, versions) or a *param*
(the kernel config's values, one param per config key, so the MLflow UI's run comparison shows
tile sizes side by side). Fields not declared here are not recorded.
"""
from __future__ import annotations

from typing import Literal

Kind = Literal["metric", "tag", "text", "config"]

FIELDS: dict[str, tuple[Kind, str]] = {
    # identity
    "candidate_id": ("tag", "stable id of the candidate: its Ray Tune trial id and its place in the trial, <trial id>-<n>"),
    "study": ("text", "the study key: kernel/problem/target"),
    "config": ("config", "the kernel config as launched (MLflow params)"),
    "impl": ("tag", "triton, or vendor: a built-in GEMM's declared vendor config (torch.mm / addmm), "
                    "named so by the trusted parent (tuner/measure/vendor.py)"),
    # outcome
    "status": ("tag", "ok, compile_error, out_of_resources, incorrect, runtime_error, timeout"),
    "error": ("tag", "why a candidate failed (cut to MLflow's tag limit)"),
    "timing": ("tag", "gpu, or interpreter (CPU wall time, never a performance result)"),
    "clock": ("tag", "the named clock that timed it (tuner.measure.clocks)"),
    # measurement
    "latency_ms": ("metric", "median latency of the candidate's own timing"),
    "latency_p20_ms": ("metric", "20th percentile latency"),
    "latency_p80_ms": ("metric", "80th percentile latency"),
    "tflops": ("metric", "TFLOP/s at the median latency"),
    "gbps": ("metric", "GB/s of the fewest bytes a perfect kernel moves"),
    "pct_flops_ceiling": ("metric", "% of the device's FLOP ceiling"),
    "pct_bandwidth_ceiling": ("metric", "% of the device's copy bandwidth"),
    "baseline_ms": ("metric", "the torch peer's median latency, same clock, same process"),
    "speedup": ("metric", "baseline_ms / latency_ms"),
    "rel_error": ("metric", "relative Frobenius error against the reference"),
    "max_error": ("metric", "largest element error over its bound (> 1 fails)"),
    "objective": ("metric", "what the sampler was told (log10 seconds; a penalty for failures)"),
    # compiled kernel
    "n_regs": ("metric", "registers per thread"),
    "n_spills": ("metric", "register spills"),
    "shared_bytes": ("metric", "shared memory per program"),
    # where the time went
    "compile_s": ("metric", "compile time (on a compile slot, ahead of the GPU lane)"),
    "compile_wall_s": ("metric", "the compile request's wall time in the trial: compile_s, plus the compile "
                                 "slot's start on its first candidate"),
    "compiled_on": ("tag", "what the compile slot compiled on: described (meta tensors, no CUDA context) "
                           "or device (the study's input set on the GPU)"),
    "slot_start_s": ("metric", "the compile slot's process start (forked or launched, to ready), paid by "
                               "the slot's first candidate (part of compile_wall_s)"),
    "slot_fork_wait_s": ("metric", "of slot_start_s: from the slot's spawn request to its fork by the node's "
                                   "fork server (whose one loop forks every slot's process in turn)"),
    "slot_child_start_s": ("metric", "of slot_start_s: the forked process's own start, from its fork to ready"),
    "slot_child_setup_s": ("metric", "of slot_child_start_s: from the fork to the child set up (descriptors, "
                                     "environment, threads)"),
    "slot_child_module_s": ("metric", "of slot_child_start_s: the evaluation module's run, to serving"),
    "slot_child_evaluator_s": ("metric", "of slot_child_start_s: the evaluator's start, to ready"),
    "study_load_s": ("metric", "the compile request loading its kernel and problem in the slot (the kernel "
                               "module imported on a study's first; part of compile_wall_s)"),
    "worker_start_s": ("metric", "the evaluation process's start (to ready), paid by the request that found "
                                 "none running"),
    "handoff_s": ("metric", "from the compile's end to the lane's request being sent (finding the lane)"),
    "load_s": ("metric", "the GPU lane's first launch: a load from Triton's cache + verify set 1"),
    "queue_s": ("metric", "time waiting for the GPU lane"),
    "lock_wait_s": ("metric", "time waiting for the device lock"),
    "lane_s": ("metric", "the GPU lane's whole request: its judge's begin, the evaluator's reply, the verdict"),
    "judge_begin_s": ("metric", "the lane waiting for its judge to begin the request (the judge finishing "
                                "what came before)"),
    "request_setup_s": ("metric", "the evaluator's set-up of the request before evaluating it (a new, "
                                  "larger arena handed to the judge)"),
    "eval_s": ("metric", "time in the evaluator (verify + time)"),
    "wall_s": ("metric", "wall time of a failed request"),
    "device_busy_s": ("metric", "the device held for verification and timing"),
    "actor_started": ("metric", "unix time the trial's Ray actor imported the engine"),
    "trial_started": ("metric", "unix time the candidate's trial began"),
    "trial_reported": ("metric", "unix time the trial reported its candidates' results to Ray Tune"),
    "driver_heard": ("metric", "unix time the sweep's driver took in that report (driver_heard - "
                               "trial_reported: Tune's delivery and the driver's own delay)"),
    "lane_ended": ("metric", "unix time the GPU lane finished the candidate's request"),
    "lane_answered": ("metric", "unix time the trial had the lane's reply (lane_answered - lane_ended: Ray's "
                                "return of it)"),
    "timed_from": ("metric", "unix time the timed section began"),
    "timed_to": ("metric", "unix time the timed section ended"),
    # verification's own cost and coverage (tuner/measure/judge.py, timed_outputs.py)
    "verify_s": ("metric", "verification's cost in the evaluator outside the timing loop (part of eval_s): "
                           "every round trip to the judge and the guarded copies it checks"),
    "verify_guard_s": ("metric", "of verify_s: making the guarded input copies and poisoned outputs"),
    "verify_encode_s": ("metric", "of verify_s: encoding the evidence (CUDA IPC handles or host copies)"),
    "verify_decode_s": ("metric", "of verify_s: the judge opening the evidence"),
    "verify_check_s": ("metric", "of verify_s: the judge's checks"),
    "verify_release_s": ("metric", "of verify_s: the judge releasing the evaluator's buffers"),
    "judge_s": ("metric", "time the parent waited for the judge's verdict after the evaluator's reply"),
    "judge_checks": ("metric", "checks the judge ran for this candidate"),
    "time_loop_s": ("metric", "wall time of the candidate's timing loop (its clock's warm-up and repetitions)"),
    "timed_calls": ("metric", "timed calls of the candidate's timing loop"),
    "timed_checked": ("metric", "timed calls whose outputs the judge checked (a random sample)"),
    "judge_transport": ("tag", "how outputs reached the judge: cuda_ipc (in place) or host (copies)"),
    "tampered": ("tag", "what the judge saw of a harness tampered with (its processes were replaced)"),
    # where it ran
    "gpu_name": ("tag", "torch.cuda.get_device_name"),
    "gpu_uuid": ("tag", "the GPU's UUID"),
    "node": ("tag", "host name"),
    "worker_pid": ("tag", "the evaluation process"),
    "worker_replaced": ("tag", "the evaluation process was replaced after this candidate"),
    "retries": ("tag", "re-runs after the evaluation process died"),
    "ray_node_id": ("tag", "the Ray node"),
    "ray_gpu_ids": ("tag", "the GPU Ray gave the trial (its lane)"),
    "torch": ("tag", "torch version"),
    "triton": ("tag", "triton version"),
}

# Hardware counters of a profiled candidate (tuner.profile: Nsight Compute, a separate pass after
# timing, never part of the candidate's own record). Logged on the candidate's child run by
# tuner.records.profile_log; the ncu metric each counter is read from: tuner.profile.metrics.
def _profile_fields() -> dict[str, tuple[Kind, str]]:
    from kernelevolve.tuner.profile.metrics import COUNTERS, LEVELS, STALL_REASONS

    fields: dict[str, tuple[Kind, str]] = {k: ("metric", doc) for k, (_, doc) in COUNTERS.items()}
    fields.update({
        "ncu_kernels": ("metric", "kernel launches per call of the candidate's launcher"),
        "ncu_kernel_share": ("metric", "the kernels' GPU time over the measured latency (launch overhead below 1)"),
        "ncu_dram_gbps": ("metric", "measured DRAM bytes over the kernels' GPU time (GB/s)"),
        "ncu_tflops": ("metric", "the kernel's flops over the kernels' GPU time (TFLOP/s)"),
        "ncu_intensity": ("metric", "the kernel's flops over measured DRAM bytes (the roofline's x)"),
        "profile_latency_ms": ("metric", "the measured latency the counters are read beside"),
        "bottleneck": ("tag", "launch-bound, memory-bound, compute-bound, latency-bound or unknown"),
        "bottleneck_reason": ("tag", "the counters behind the label, one line"),
        "ncu_top_stalls": ("tag", "the top warp-stall reasons, cycles per issued instruction"),
        "ncu_kernel_names": ("tag", "the profiled kernels' names"),
        "ncu_missing": ("tag", "metrics the installed ncu did not report"),
        "ncu_version": ("tag", "the Nsight Compute that read the counters"),
    })
    fields.update({f"ncu_stall_{r}": ("metric", f"warp cycles stalled on {r} per issued instruction")
                   for r in STALL_REASONS})
    for level in LEVELS:  # the hierarchical roofline's memory levels (tuner.profile.parse level_fields)
        name = level.upper()
        fields[f"ncu_{level}_peak_gbps"] = ("metric", f"{name} peak bandwidth at the run's clocks (GB/s)")
        fields[f"ncu_{level}_bw_pct"] = ("metric", f"{name} bytes over what its peak could move in the kernels' time, %")
        if level != "dram":  # DRAM's bytes and intensity: ncu_dram_bytes, ncu_intensity
            fields[f"ncu_{level}_bytes"] = ("metric", f"bytes through the {name}, one call")
            fields[f"ncu_{level}_intensity"] = ("metric", f"the kernel's flops over {name} bytes")
    return fields


PROFILE_FIELDS = _profile_fields()
PROFILE_METRIC_KEYS = tuple(k for k, (kind, _) in PROFILE_FIELDS.items() if kind == "metric")
PROFILE_TAG_KEYS = tuple(k for k, (kind, _) in PROFILE_FIELDS.items() if kind == "tag")

RECORD_KEYS = tuple(k for k, (kind, _) in FIELDS.items() if kind != "config" and k not in ("candidate_id", "study"))
METRIC_KEYS = tuple(k for k, (kind, _) in FIELDS.items() if kind == "metric")
TAG_KEYS = tuple(k for k, (kind, _) in FIELDS.items() if kind == "tag" and k != "error")
STATUSES = ("ok", "invalid", "compile_error", "out_of_resources", "incorrect", "runtime_error", "timeout")


def is_vendor_record(record: dict) -> bool:
    """A candidate that ran the vendor library, not a Triton kernel (records before the field
    existed are all Triton)."""
    return record.get("impl") == "vendor"


def record_of(result: dict, candidate_id: str, study: str, config: dict) -> dict:
    """The journal record of a finished candidate: the declared fields of its result."""
    rec = {k: result[k] for k in RECORD_KEYS if k in result}
    rec.update(candidate_id=candidate_id, study=study, config=dict(config))
    return rec
