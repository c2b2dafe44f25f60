"""The benchmarks' one door to the product's engine: build an experiment, sweep it, re-time its winners.

Every benchmark that searches kernels (gemm_suite, ops_bench, dlrm, engine_suite, warm_start,
throughput) searches through `kernelevolve run`'s engine (tuner.execution.sweep.run): Ray Tune +
Optuna over each kernel's space, every candidate verified against the float64 reference in an
isolated worker, the top k re-timed interleaved with the torch peer, every candidate and each
study's parent run in MLflow. This module holds what they share:

  experiment(...)      an experiment dict (the schema of experiments/*.yaml) of all a benchmark's
                       studies: ONE sweep per benchmark, every study at once
  sweep(data)          writes it as exp.yaml into a fresh temp folder, loads it with
                       tuner.experiment.config.load and runs it there; returns a Sweep with the
                       summaries (in the file's study order), the experiment's name and the
                       tracking URI (absolute: sqlite:///<folder>/mlflow.db unless given)
  provenance(...)      what every benchmark row carries: the experiment, the tracking URI, the
                       study's MLflow parent run id, its candidate counts and tuning wall time
  verified_launch(...) the winner's config launched with the kernel's own spec.launch after its
                       output is checked against spec.reference (tuner.measure.verify)

Clocks are not here: tuner.measure.clocks (measure(fn, clock, warmup_ms, rep_ms)) times the
winners and the peers alike.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import yaml

# Per candidate: one CPU core (its compile) and 1/16 of a GPU, so up to 16 compile ahead per GPU
# while the GPU's lane verifies and times one at a time (as experiments/suite-h100.yaml).
GPU_SHARE = 0.0625


def gpu_kind() -> tuple[str, int]:
    """(hardware profile of this machine's GPU: h100 or h200, number of GPUs it may use).

    Read from nvidia-smi, not torch: a sweep's driver never touches the GPU (its lanes and
    trials do), and asking torch for the name would make a CUDA context in the benchmark's
    driver, ~1-3 s of its end-to-end time and GPU memory no `kernelevolve run` spends."""
    import subprocess

    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=60, check=True).stdout.split("\n")
        names = [n.strip() for n in names if n.strip()]
    except (OSError, subprocess.SubprocessError):
        names = []
    if not names:  # no nvidia-smi: torch's word (it makes the context)
        import torch

        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # nvidia-smi lists the node's GPUs, whatever the process may use
        entries = [v.strip() for v in visible.split(",") if v.strip()]
        if all(v.isdigit() for v in entries):
            names = [names[int(v)] for v in entries if int(v) < len(names)]
        else:  # GPU UUIDs: as many as named, of the node's kind
            names = names[:1] * len(entries) if names else []
    if not names:
        raise RuntimeError("no GPU visible to this process (nvidia-smi and torch found none)")
    return ("h200" if "H200" in names[0] else "h100"), len(names)


def target(kind: str | None = None) -> dict:
    """The experiment target: `kind` (h100, h200, cpu-interpreter); None: this machine's GPU."""
    kind = kind or gpu_kind()[0]
    if kind == "cpu-interpreter":
        return {"name": kind, "resources": {"CPU": 1}}
    return {"name": kind, "resources": {"CPU": 1, "GPU": GPU_SHARE}}


def experiment(name: str, kernels: list[dict], tgt: dict, *, samples: int, concurrency: int = 8,
               seed: int = 0, clock: str = "do_bench", timeout_s: float = 120, top_k: int = 3,
               warmup_ms: float = 5, rep_ms: float = 20, retime_rep_ms: float = 100,
               retime_rounds: int = 5, sampler: str = "tpe") -> dict:
    """An experiment dict (`sampler`: tpe by default, as every published figure so far was searched;
    "auto" is the product's default, tuner/search/samplers.py). `kernels`: [{"kernel": name, "problems": [fields, ...]}, ...]; problems
    repeated within a kernel are dropped (one study each). No start points: every config a
    benchmark reports was found by the search itself. `clock`: a name `timing.clock` takes
    (tuner.measure.clocks.TIMING_CLOCKS, `auto` included); any other (the interpreter's `wall`): do_bench."""
    from kernelevolve.tuner.measure.clocks import TIMING_CLOCKS

    entries = []
    for k in kernels:
        problems = []
        for p in k["problems"]:
            if p not in problems:
                problems.append(dict(p))
        entries.append({"kernel": k["kernel"], "problems": problems})
    return {"name": name, "kernels": entries, "targets": [tgt],
            "search": {"sampler": sampler, "samples": samples, "concurrency": max(1, min(concurrency, samples)),
                       "seed": seed, "timeout_s": timeout_s, "top_k": top_k},
            "timing": {"clock": clock if clock in TIMING_CLOCKS else "do_bench", "warmup_ms": warmup_ms,
                       "rep_ms": rep_ms, "retime_rep_ms": retime_rep_ms, "retime_rounds": retime_rounds},
            "tracking": {"uri": "sqlite:///mlflow.db"}}


@dataclass
class Sweep:
    name: str  # the MLflow experiment
    uri: str  # its tracking URI (absolute)
    folder: str  # where the sweep ran: exp.yaml, mlflow.db, .kernelevolve/ (journal, resume)
    summaries: list[dict]  # per study, in the file's order (tuner.execution.sweep.run)
    studies: tuple = ()  # (kernel, problem.model_dump()) per summary, filled by sweep()

    def by_problem(self, kernel: str, problem: dict) -> dict | None:
        """The summary of `kernel`'s study at `problem` (fields as given to experiment())."""
        from kernelevolve.tuner.experiment import registry

        tunable = registry.load(registry.resolve_ref(kernel))
        key = tunable.kernel.problem(**problem).model_dump()
        for s, (k, p) in zip(self.summaries, self.studies):
            if k == kernel and p == key:
                return s
        return None


def load(data: dict, folder: str | None = None, uri: str | None = None):
    """Write `data` as exp.yaml into `folder` (a fresh temp folder by default) and load it with
    the product's loader (every kernel, problem and target validated). `uri`: the MLflow tracking
    URI (absolute; None: sqlite:///<folder>/mlflow.db). (Experiment, folder)."""
    from kernelevolve.tuner.experiment import config

    folder = folder or tempfile.mkdtemp(prefix=f"kernelevolve-{data['name']}-")
    uri = uri or f"sqlite:///{os.path.join(os.path.abspath(folder), 'mlflow.db')}"
    data = dict(data, tracking={"uri": uri})
    path = os.path.join(folder, "exp.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    return config.load(path), folder


def sweep(data: dict, log=print, folder: str | None = None, uri: str | None = None) -> Sweep:
    """Run the experiment `data` through the product's engine, from a fresh folder (the working
    directory is restored afterwards), tracked at `uri` (as load's). Raises what the engine
    raises (ConfigError, Interrupted)."""
    from kernelevolve.tuner.execution import sweep as engine

    exp, folder = load(data, folder, uri)
    here = os.getcwd()
    os.chdir(folder)
    try:
        summaries = engine.run(exp, log=log)
    finally:
        os.chdir(here)
    studies = tuple((st.kernel_name, st.problem.model_dump()) for st in exp.studies())
    return Sweep(exp.name, exp.tracking.uri, folder, summaries, studies)


def provenance(sw: Sweep, summary: dict | None) -> dict:
    """What a row of ours carries: where its config came from and how long finding it took."""
    if summary is None:
        return {"experiment": sw.name, "tracking_uri": sw.uri, "parent_run_id": None,
                "error": "no study of the sweep for this problem"}
    best = summary.get("best") or {}
    return {"experiment": sw.name, "tracking_uri": sw.uri, "study": summary["study"],
            "parent_run_id": summary.get("parent_run_id"), "configs": summary.get("counts"),
            "tuning_s": round(summary.get("wall_s") or 0.0, 2), "sweep_ms": best.get("latency_ms"),
            "sweep_peer_ms": best.get("baseline_ms"), "measured_by": best.get("measured_by")}


def verified_launch(spec, problem, inputs, ref, config: dict):
    """A no-argument launch of `config` with the kernel's own spec.launch, after one launch into a
    NaN-poisoned output has been checked against `ref` (the float64 reference, spec.reference).
    Raises AssertionError if the output is incorrect here."""
    from kernelevolve.tuner.measure.verify import check, poison

    out = spec.make_output(problem, inputs)
    poison(out)
    spec.launch(inputs, out, config)
    verdict = check(out, ref)
    if not verdict.ok:
        raise AssertionError(f"the engine's winner is incorrect here: {verdict.reason}")
    return lambda: spec.launch(inputs, out, config)


def keep_store(sw: Sweep, out_dir: str, stem: str) -> str:
    """Copy the sweep's MLflow store next to a benchmark's outputs (the temp folder does not outlive
    the machine): OUT/<stem>.mlflow.db; open it with `mlflow ui --backend-store-uri sqlite:///...`.
    Returns the copy's file name."""
    from kernelevolve.tuner.records.sqlite_store import copy_store

    name = f"{stem}.mlflow.db"
    copy_store(os.path.join(sw.folder, "mlflow.db"), os.path.join(out_dir, name))
    return name


def write_results(out_dir: str, stem: str, res: dict, text: str) -> None:
    """A benchmark's results: OUT/<stem>.md (its table) and OUT/<stem>.json (every number), and
    the table printed."""
    import json

    with open(os.path.join(out_dir, f"{stem}.md"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(out_dir, f"{stem}.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    print(text)
