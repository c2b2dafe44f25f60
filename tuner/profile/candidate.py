"""`kernelevolve profile RUN_ID`, and the end-of-study profile of a study's top-k: logged
candidates under Nsight Compute, their counters parsed, labelled and logged to MLflow.

The candidate is rebuilt from its run exactly as `kernelevolve reproduce` rebuilds it
(tuner.deploy.reproduce.logged_candidate: config, kernel, problem, hardware from MLflow) and
its request comes from the one request builder (tuner.execution.worker.make_request). Profiling
is a separate pass, after the candidate's timing: the latency beside the counters is the
logged one, never a latency measured under the profiler.

A study's finalists share one ncu run (profile_many; tuner.profile.batch tells their launches
apart): each is still verified before its launches are profiled, and each has its own outcome,
counters or the reason it has none.
"""
from __future__ import annotations

import os
import tempfile

from kernelevolve.tuner.profile import batch, bottleneck, ncu, parse

DEFAULT_CALLS = 3  # launcher calls profiled (their counters averaged per call)
DEFAULT_TIMEOUT_S = 900.0  # ncu replays each kernel once per metric pass: minutes for a big GEMM
START_S = 120.0  # a run's own start on top of its candidates' limits: ncu, Python, torch, CUDA
KEEP_REPORT_BYTES = 64 << 20  # a larger .ncu-rep is not copied to the MLflow artifacts


class ProfileError(Exception):
    """An unknown run, an interpreter run, no ncu, a failed profile: one line, exit 2."""


def profile_request(logged: dict, calls: int, timeout_s: float | None = None) -> dict:
    from kernelevolve.tuner.execution.worker import make_request

    extra = {"timeout_s": timeout_s} if timeout_s else {}  # the target's limit for this candidate
    return make_request("profile", logged["kernel_ref"], logged["problem"], logged["hardware"],
                        logged["bench"], config=logged["config"], calls=calls, **extra)


def counters(launches: list, reply: dict, dropped: list[str], latency_ms: float | None) -> dict:
    """The profile fields (tuner.records.schema PROFILE_FIELDS) of one candidate's launches, labelled."""
    if not launches:
        raise ProfileError("ncu profiled no kernel launch of the candidate (is its launcher a Triton "
                           "kernel on this GPU?)")
    fields = parse.summarize(launches, reply.get("calls", 1), latency_ms=latency_ms, flops=reply.get("flops"))
    missing = parse.missing_metrics(launches, [m for m in ncu.ncu_metrics() if m not in dropped])
    if missing or dropped:
        fields["ncu_missing"] = ",".join(dropped + missing)
    if latency_ms:
        fields["profile_latency_ms"] = latency_ms
    fields["bottleneck"], fields["bottleneck_reason"] = bottleneck.label(fields)
    return fields


def counters_of(run: ncu.NcuRun, latency_ms: float | None) -> dict:
    """The profile fields of a run of one candidate."""
    return counters(parse.parse_raw_csv(run.csv) if run.csv else [], run.reply, run.dropped, latency_ms)


def _interpreted(logged: dict) -> str:
    return (f"run {logged.get('run_id')} was timed in the Triton interpreter: Nsight Compute reads a "
            "GPU's counters; profile a GPU study's candidate")


def _outcome(run: ncu.NcuRun, reply: dict, launches: list, logged: dict, folder: str, version: str) -> dict:
    """One candidate of a run: {"fields", "files"} or {"error"}."""
    if reply.get("status") != "ok":  # a report of a candidate that failed to verify counts nothing
        return {"error": f"the candidate did not run under ncu: {reply.get('status', 'no reply')}: "
                         f"{str(reply.get('error') or 'no message')[:400]}"}
    try:
        fields = counters(launches, reply, run.dropped, logged.get("latency_ms"))
    except ProfileError as exc:
        return {"error": str(exc)}
    fields["ncu_version"] = version
    os.makedirs(folder, exist_ok=True)
    own = os.path.join(folder, "profile.csv")  # its rows of the run's raw page
    with open(own, "w", encoding="utf-8") as fh:
        fh.write(batch.rows_of(run.csv, launches))
    files = [own, os.path.join(os.path.dirname(folder), "ncu.log")]
    if run.report and os.path.getsize(run.report) <= KEEP_REPORT_BYTES:
        files.append(run.report)  # the run's report: the candidate's launches are its NVTX range
    return {"fields": fields, "files": files}


def profile_many(logged: list[dict], workdir: str, calls: int = DEFAULT_CALLS,
                 timeout_s: float = DEFAULT_TIMEOUT_S, env: dict | None = None) -> list[dict]:
    """Logged candidates profiled in one ncu run on this machine's GPU, in order: per candidate
    {"fields", "files"} (local paths under `workdir`) or {"error"}. `timeout_s` is each
    candidate's limit; the run's is theirs together and its start."""
    from kernelevolve.tuner.experiment import hardware

    out: list[dict | None] = [None] * len(logged)
    todo = []
    for i, lg in enumerate(logged):
        if hardware.profile(lg["hardware"]).interpreter:
            out[i] = {"error": _interpreted(lg)}
        else:
            todo.append(i)
    if not todo:
        return out
    requests = batch.tagged([profile_request(logged[i], calls, timeout_s) for i in todo])
    try:
        run = ncu.run(requests, workdir, timeout_s * len(todo) + START_S, env=env)
        ran = any(r.get("status") == "ok" for r in run.replies)  # else no launch to read: each says why
        parts = batch.split(parse.parse_raw_csv(run.csv) if ran else [], run.replies)
    except (ncu.NcuFailed, parse.NcuParseError) as exc:
        for i in todo:
            out[i] = {"error": str(exc)}
        return out
    version = ncu.version() if run.csv else ""
    # what the run cost, for the sweep's log: the profiling step, each candidate's part of it in
    # the target (the first one with the evaluator's start), ncu's replay passes per kernel
    cost = {"candidates": len(todo), "wall_s": run.wall_s, "passes": run.passes,
            "served_s": [r.get("served_s") for r in run.replies]}
    for j, i in enumerate(todo):
        reply = run.replies[j]
        if parts is None and reply.get("status") == "ok":  # no NVTX ranges to tell them apart
            out[i] = profile_many([logged[i]], os.path.join(workdir, f"alone{j}"), calls, timeout_s, env)[0]
            if "run" in out[i]:
                out[i]["run"] = dict(out[i]["run"], alone=True)
        else:
            out[i] = _outcome(run, reply, parts[j] if parts else [], logged[i], os.path.join(workdir, str(j)),
                              version)
            out[i]["run"] = cost
    return out


def profile_logged(logged: dict, workdir: str, calls: int = DEFAULT_CALLS,
                   timeout_s: float = DEFAULT_TIMEOUT_S, env: dict | None = None) -> tuple[dict, list[str]]:
    """(profile fields, files to log) of a logged candidate, profiled on this machine's GPU."""
    from kernelevolve.tuner.experiment import hardware

    if hardware.profile(logged["hardware"]).interpreter:
        raise ProfileError(_interpreted(logged))
    [res] = profile_many([logged], workdir, calls, timeout_s, env)
    if "error" in res:
        raise ProfileError(f"profiling run {logged['run_id']} failed: {res['error']}")
    return res["fields"], res["files"]


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
