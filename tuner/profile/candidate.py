"""`kernelevolve profile RUN_ID`, and the end-of-study profile of a study's top-k: one logged
candidate under Nsight Compute, its counters parsed, labelled and logged to MLflow.

The candidate is rebuilt from its run exactly as `kernelevolve reproduce` rebuilds it
(tuner.deploy.reproduce.logged_candidate: config, kernel, problem, hardware from MLflow) and
its request comes from the one request builder (tuner.execution.worker.make_request). Profiling
is a separate pass, after the candidate's timing: the latency beside the counters is the
logged one, never a latency measured under the profiler.
"""
from __future__ import annotations

import os
import tempfile

from kernelevolve.tuner.profile import bottleneck, ncu, parse

DEFAULT_CALLS = 3  # launcher calls profiled (their counters averaged per call)
DEFAULT_TIMEOUT_S = 900.0  # ncu replays each kernel once per metric pass: minutes for a big GEMM
KEEP_REPORT_BYTES = 64 << 20  # a larger .ncu-rep is not copied to the MLflow artifacts


class ProfileError(Exception):
    """An unknown run, an interpreter run, no ncu, a failed profile: one line, exit 2."""


def profile_request(logged: dict, calls: int) -> dict:
    from kernelevolve.tuner.execution.worker import make_request

    return make_request("profile", logged["kernel_ref"], logged["problem"], logged["hardware"],
                        logged["bench"], config=logged["config"], calls=calls)


def counters_of(run: ncu.NcuRun, latency_ms: float | None) -> dict:
    """The profile fields (tuner.records.schema PROFILE_FIELDS) of one ncu run, labelled."""
    launches = parse.parse_raw_csv(run.csv)
    if not launches:
        raise ProfileError("ncu profiled no kernel launch of the candidate (is its launcher a Triton "
                           "kernel on this GPU?)")
    reply = run.reply
    fields = parse.summarize(launches, reply.get("calls", 1), latency_ms=latency_ms, flops=reply.get("flops"))
    missing = parse.missing_metrics(launches, [m for m in ncu.ncu_metrics() if m not in run.dropped])
    if missing or run.dropped:
        fields["ncu_missing"] = ",".join(run.dropped + missing)
    if latency_ms:
        fields["profile_latency_ms"] = latency_ms
    fields["bottleneck"], fields["bottleneck_reason"] = bottleneck.label(fields)
    return fields


def profile_logged(logged: dict, workdir: str, calls: int = DEFAULT_CALLS,
                   timeout_s: float = DEFAULT_TIMEOUT_S, env: dict | None = None) -> tuple[dict, list[str]]:
    """(profile fields, files to log) of a logged candidate, profiled on this machine's GPU."""
    from kernelevolve.tuner.experiment import hardware

    if hardware.profile(logged["hardware"]).interpreter:
        raise ProfileError(f"run {logged['run_id']} was timed in the Triton interpreter: Nsight Compute "
                           "reads a GPU's counters; profile a GPU study's candidate")
    try:
        run = ncu.run(profile_request(logged, calls), workdir, timeout_s, env=env)
    except ncu.NcuFailed as exc:
        raise ProfileError(f"profiling run {logged['run_id']} failed: {exc}") from None
    fields = counters_of(run, logged.get("latency_ms"))
    fields["ncu_version"] = ncu.version()
    files = [os.path.join(workdir, "profile.csv"), os.path.join(workdir, "ncu.log")]
    if os.path.getsize(run.report) <= KEEP_REPORT_BYTES:
        files.append(run.report)
    return fields, files


def profile(run_id: str, uri: str, calls: int = DEFAULT_CALLS, timeout_s: float = DEFAULT_TIMEOUT_S,
            trust_code: bool = False) -> dict:
    """Profile one logged candidate (or a study's best) and log its counters to MLflow."""
    from kernelevolve.tuner.deploy import reproduce
    from kernelevolve.tuner.records.profile_log import log_candidate_profile, log_study_profile
    from kernelevolve.tuner.records.tracking import resolve_uri
    from kernelevolve.tuner.review.report import UnknownExperiment, open_store, resolve_run_id

    try:
        ncu.find_ncu()  # before anything is read or imported: a machine without ncu hears it at once
    except ncu.NcuUnavailable as exc:
        raise ProfileError(str(exc)) from None
    uri = resolve_uri(uri)
    try:
        client = open_store(uri)
        run_id = resolve_run_id(client, run_id, uri)
        logged = reproduce.logged_candidate(client, run_id, uri)
    except (UnknownExperiment, reproduce.ReproduceError) as exc:
        raise ProfileError(str(exc)) from None
    why = reproduce.untrusted_code(logged["kernel_ref"])  # as reproduce: the store's tags choose the import
    if why and not trust_code:
        raise ProfileError(f"run {run_id} names kernel {logged['kernel_ref']!r}: {why}; "
                           "pass --trust-code to import and run it")
    if logged["status"] != "ok":
        raise ProfileError(f"run {logged['run_id']} ended {logged['status']}: only a correct candidate "
                           "is profiled")
    with tempfile.TemporaryDirectory(prefix="kernelevolve-ncu-") as tmp:
        fields, files = profile_logged(logged, tmp, calls, timeout_s)
        log_candidate_profile(client, logged["run_id"], fields, files)
    notes = log_study_profile(client, logged["parent_run_id"])
    return {"logged": logged, "counters": fields, "study_notes": notes}


def _f(v, unit="", digits=3) -> str:
    return f"{v:.{digits}g}{unit}" if isinstance(v, (int, float)) else "-"


def format_result(res: dict) -> str:
    lg, c = res["logged"], res["counters"]
    lines = [f"profile run {lg['run_id']}: candidate {lg['candidate_id']} of study {lg['study']}",
             f"  bottleneck  {c['bottleneck']}: {c['bottleneck_reason']}",
             f"  latency     {_f(lg.get('latency_ms'), ' ms', 4)} measured; kernels {_f(c.get('ncu_duration_ms'), ' ms', 4)} "
             f"GPU time under ncu ({_f(c.get('ncu_kernels'))} launch(es) per call)",
             f"  throughput  SM {_f(c.get('ncu_sm_pct'), '%')}   memory {_f(c.get('ncu_memory_pct'), '%')}   "
             f"DRAM {_f(c.get('ncu_dram_pct'), '%')} ({_f(c.get('ncu_dram_gbps'), ' GB/s')})   "
             f"tensor pipe {_f(c.get('ncu_tensor_pct'), '%')}",
             f"  occupancy   {_f(c.get('ncu_occupancy_pct'), '%')} achieved   L2 hit {_f(c.get('ncu_l2_hit_pct'), '%')}   "
             f"registers {_f(c.get('ncu_registers'))}   waves {_f(c.get('ncu_waves'))}",
             f"  stalls      {c.get('ncu_top_stalls', '-')}  (cycles per issued instruction)",
             f"  instructions {_f(c.get('ncu_instructions'), '', 4)} per call"]
    if c.get("ncu_missing"):
        lines.append(f"  not reported by this ncu: {c['ncu_missing']}")
    lines.append(f"  logged to run {lg['run_id']} (metrics ncu_*, tags bottleneck*, files profile/); "
                 f"study table profile/finalists.csv on run {lg['parent_run_id'][:12]}")
    for name, why in res.get("study_notes", {}).items():
        lines.append(f"  {name}: {why}")
    return "\n".join(lines)
