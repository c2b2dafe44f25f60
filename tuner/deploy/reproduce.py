"""`kernelevolve reproduce RUN_ID`: run one logged candidate again, here, and say how it compares.

Everything comes from MLflow: the candidate's config (its child run's params), and from its study
(the parent run) the kernel reference, the problem (`problem.*` params), the hardware profile and
the timing settings of the resolved experiment YAML. The candidate goes through the same path as
in the sweep (tuner.execution.worker.CandidateWorker -> tuner.measure.evaluate: constraints, compile, verify on
fresh inputs, time), on this machine's device. The output gives the ratio of the latency now to the
logged one and, never hidden, every difference in what produced the two: the kernel's source
(sha256 of its kernel and search-space modules, the `kernel_source_sha` tag of the study),
Triton, torch and the GPU.
"""
from __future__ import annotations

import json
import os
import tempfile

import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kernelevolve.tuner.experiment import config as config_mod
from kernelevolve.tuner.experiment.registry import current_ref, kernel_source_sha
from kernelevolve.tuner.records.tracking import ROLE, _value, resolve_uri

# A progress bar for the one small artifact read here would only clutter the report.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class ReproduceError(Exception):
    """An unknown run, a run that is not a candidate, hardware this machine lacks: exit 2."""


# -- what was logged ------------------------------------------------------------------------
def _get_run(client: MlflowClient, run_id: str, uri: str):
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise ReproduceError(f"no run '{run_id}' in {uri}") from None
        raise ReproduceError(f"cannot read run '{run_id}' from {uri}: {exc}") from None


def _timing(client: MlflowClient, parent) -> tuple[dict, float]:
    """(bench settings, per-candidate timeout) from the study's resolved experiment YAML, timed by
    the clock the study was timed with (its `clock_resolved` param: `timing.clock: auto` resolves
    per study; studies logged before that param named their clock in the YAML); the defaults where
    that artifact cannot be read (a study logged without it)."""
    data = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(parent.info.run_id, "experiment.yaml", tmp)
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
    except Exception:
        pass
    t = config_mod.Timing(**(data.get("timing") or {}))
    timeout = (data.get("search") or {}).get("timeout_s") or config_mod.Search().timeout_s
    return t.bench_settings(parent.data.params.get("clock_resolved", t.clock)), float(timeout)


def logged_candidate(client: MlflowClient, run_id: str, uri: str) -> dict:
    """The candidate run (or, given a study run, its best candidate) and its study."""
    run = _get_run(client, run_id, uri)
    role = run.data.tags.get(ROLE)
    if role == "study":  # a study: reproduce its best candidate
        best = run.data.tags.get("best_candidate_id")
        kids = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{run_id}' and "
                                                f"tags.candidate_id = '{best}'") if best else []
        if not kids:
            raise ReproduceError(f"run '{run_id}' is a study with no best candidate logged; "
                                 "pass a candidate (child) run id")
        run, role = kids[0], "candidate"
    if role != "candidate":
        raise ReproduceError(f"run '{run_id}' is not a kernelevolve candidate or study run")
    parent = _get_run(client, run.data.tags.get("mlflow.parentRunId", ""), uri)
    ptags, ctags = parent.data.tags, run.data.tags
    bench, timeout_s = _timing(client, parent)
    return {
        "run_id": run.info.run_id, "parent_run_id": parent.info.run_id,
        "study": ptags.get("kernelevolve.study", ""), "candidate_id": ctags.get("candidate_id", ""),
        "kernel_ref": current_ref(ptags["kernel_ref"]), "hardware": ptags["hardware"],
        "problem": {k[len("problem."):]: _value(v) for k, v in parent.data.params.items()
                    if k.startswith("problem.")},
        "config": {k: _value(v) for k, v in run.data.params.items()},  # typed: 512, True
        "bench": bench, "timeout_s": timeout_s,
        "status": ctags.get("status", ""), "timing": ctags.get("timing", ptags.get("timing", "")),
        "latency_ms": run.data.metrics.get("latency_ms"),
        # a candidate's own tags say what measured it; the study's where a candidate lacks one
        "versions": {k: ctags.get(k, ptags.get(k)) for k in ("gpu_name", "triton", "torch")},
        "kernel_source_sha": ptags.get("kernel_source_sha"),
    }


# -- whose code runs -------------------------------------------------------------------------
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def kernel_file(kernel_ref: str) -> str | None:
    """The file a kernel reference would import (without importing it); None if not found."""
    import importlib.util

    target = kernel_ref.rpartition(":")[0] or kernel_ref
    if target.endswith(".py"):
        return os.path.realpath(target)
    try:
        spec = importlib.util.find_spec(target)  # imports parent packages only
    except (ImportError, ValueError):
        return None
    return os.path.realpath(spec.origin) if spec is not None and spec.origin else None


def untrusted_code(kernel_ref: str) -> str:
    """Why reproducing this reference would run code from outside this checkout ('' if it would
    not): a kernel file outside the repository root and the current directory."""
    path = kernel_file(kernel_ref)
    if path is None:
        return ""  # nothing found to import: loading it fails with its own message
    for root in {os.path.realpath(REPO_ROOT), os.path.realpath(os.getcwd())}:
        if os.path.commonpath([path, root]) == root:
            return ""
    return f"its kernel module {path} is outside this checkout ({REPO_ROOT}) and the current directory"


# -- run it again ---------------------------------------------------------------------------
def evaluate_here(logged: dict, seed: int) -> dict:
    """The candidate through the sweep's own evaluation path, on this machine's device."""
    from kernelevolve.tuner.experiment import hardware
    from kernelevolve.tuner.execution.worker import CandidateWorker, make_request

    hw = hardware.profile(logged["hardware"])
    env = {"TRITON_DEFAULT_FP_FUSION": "1"}  # as tuner.execution.sweep sets it for every candidate
    if hw.interpreter:
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    else:
        import torch

        if not torch.cuda.is_available():
            raise ReproduceError(f"run {logged['run_id']} was measured on {hw.name} (a GPU); torch "
                                 "sees no GPU on this machine")
        env["TRITON_INTERPRET"] = "0"
    worker = CandidateWorker(env=env, cwd=os.getcwd())
    try:
        return worker.request(make_request("evaluate", logged["kernel_ref"], logged["problem"], hw.name,
                                           logged["bench"], config=logged["config"], seed=seed),
                              logged["timeout_s"])
    finally:
        worker.close()


def _check(logged, now) -> str:
    if logged in (None, ""):
        return "not logged"
    if now in (None, ""):
        return "unknown now"
    return "match" if str(logged) == str(now) else "MISMATCH"


def reproduce(run_id: str, uri: str, seed: int = 0, trust_code: bool = False) -> dict:
    from kernelevolve.tuner.experiment import hardware, registry

    from kernelevolve.tuner.review.report import UnknownExperiment, open_store, resolve_run_id

    uri = resolve_uri(uri)
    try:  # no store is created where there is none; a unique prefix of a run id is enough
        client = open_store(uri)
        run_id = resolve_run_id(client, run_id, uri)
    except UnknownExperiment as exc:
        raise ReproduceError(str(exc)) from None
    logged = logged_candidate(client, run_id, uri)
    # The kernel reference comes from a tag of the tracking store: whoever can write that store
    # chooses what is imported here. Code outside this checkout runs only when asked for.
    why = untrusted_code(logged["kernel_ref"])
    if why and not trust_code:
        raise ReproduceError(f"run {run_id} names kernel {logged['kernel_ref']!r}: {why}; "
                             "pass --trust-code to import and run it")
    try:
        sha_now = kernel_source_sha(logged["kernel_ref"], registry.load(logged["kernel_ref"]))
    except registry.KernelNotFound as exc:
        raise ReproduceError(f"the kernel of run {run_id} ({logged['kernel_ref']}) cannot be "
                             f"loaded here: {exc}") from None
    now = evaluate_here(logged, seed)
    checks = {"kernel_source_sha": (logged["kernel_source_sha"], sha_now)}
    checks.update({k: (logged["versions"].get(k), now.get(k)) for k in ("triton", "torch", "gpu_name")})
    checks["timing"] = (logged["timing"], now.get("timing"))
    hw = hardware.profile(logged["hardware"])
    ratio = None
    if now.get("status") == "ok" and logged["latency_ms"]:
        ratio = now["latency_ms"] / logged["latency_ms"]
    return {"logged": logged, "now": {k: v for k, v in now.items() if k != "traceback"},
            "seed": seed, "ratio": ratio,
            "same_hardware_kind": hardware.matches(hw, now) if now.get("gpu_name") else None,
            "checks": {k: {"logged": a, "now": b, "result": _check(a, b)} for k, (a, b) in checks.items()},
            "reproduced": now.get("status") == logged["status"]}


def _ms(v) -> str:
    return f"{v:.4g} ms" if isinstance(v, (int, float)) else "-"


def format_result(res: dict) -> str:
    lg, now = res["logged"], res["now"]
    lines = [f"reproduce run {lg['run_id']}: candidate {lg['candidate_id']} of study {lg['study']} "
             f"(study run {lg['parent_run_id'][:12]})",
             f"  config   {json.dumps(lg['config'])}",
             f"  logged   {lg['status']:<16} {_ms(lg['latency_ms']):>12}   {lg['timing']}",
             f"  now      {now.get('status', '?'):<16} {_ms(now.get('latency_ms')):>12}   "
             f"{now.get('timing', '')}   (fresh inputs, seed {res['seed']})"]
    if now.get("status") != "ok" and now.get("error"):
        lines.append(f"  error    {str(now['error'])[:600]}")
    lines.append(f"  ratio    {res['ratio']:.3f} (now / logged)" if res["ratio"] is not None
                 else "  ratio    - (no latency on one side)")
    if res["same_hardware_kind"] is False:
        lines.append(f"  ! this device is not a {lg['hardware']}: latencies are not comparable")
    lines.append("  provenance:")
    for k, c in res["checks"].items():
        detail = c["now"] if c["result"] == "match" else f"logged {c['logged']!r}, now {c['now']!r}"
        lines.append(f"    {k:<18} {c['result']:<10} {detail}")
    if "interpreter" in (lg["timing"], now.get("timing")):
        lines.append("  (interpreter: CPU wall time in Triton's interpreter, not GPU performance)")
    return "\n".join(lines)
