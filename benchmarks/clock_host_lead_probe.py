"""Does the host's launch cost leak into an event clock? The suite's clean-clock rows, re-timed.

Events time the GPU's timeline: where the GPU idles waiting for Python to launch the next call,
the idle time is in the call's time. The event clocks (`clean`, `do_bench`) start their loop
behind a GPU wait sized from the host's measured cost of a repetition (tuner/measure/host_lead.py);
this re-times the
configs a GEMM suite run reported on the `clean` clock (its "ours" and "ours best Triton" rows:
cuBLAS through a padded copy, staged Triton kernels, ...), each launched by the kernel's own
spec.launch and verified first, four ways in one process for each --clock (default `clean`): the
lead as the clock takes it, and the lead forced to zero (host_lead.lead_s replaced for the
measurement, the clock as it was before), each with the host idle and with the host loaded (one
busy process per core, as the suite's other work can load it), beside `cudagraph` (replayed in a
CUDA graph: no host at all).

  python benchmarks/clock_host_lead_probe.py --suite RUN/gemm_suite.json [--suite ...] [--clock do_bench] --out DIR
      (writes DIR/clock_host_lead_probe.json, prints a table)
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402

from benchmarks import engine  # noqa: E402
from kernelevolve.tuner.experiment.registry import load, resolve_ref  # noqa: E402
from kernelevolve.tuner.measure import clocks, host_lead  # noqa: E402

MATMUL = "kernelevolve.search_spaces.matmul:TUNABLE"
IMPLS = ("ours", "ours best Triton")


def _spin(until: float) -> None:
    while time.time() < until:
        pass


@contextmanager
def host_load(busy: bool, seconds: float = 600.0):
    """One spinning process per core while the block runs (none when not busy)."""
    procs = []
    if busy:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_spin, args=(time.time() + seconds,), daemon=True)
                 for _ in range(os.cpu_count() or 1)]
        for p in procs:
            p.start()
        time.sleep(1.0)
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


@contextmanager
def no_lead(off: bool):
    """The event clocks without their lead: host_lead.lead_s answering 0 for the block."""
    real = host_lead.lead_s
    if off:
        host_lead.lead_s = lambda *a, **k: 0.0
    try:
        yield
    finally:
        host_lead.lead_s = real


def suite_cases(paths: list[str]) -> list[dict]:
    """The GEMM rows of suite runs timed on `clean`, ours and our best Triton kernel, each shape
    and config once (the first run's row)."""
    out, seen = [], set()
    for path in paths:
        for r in json.loads(Path(path).read_text())["rows"]:
            key = (r["shape"], json.dumps(r.get("config"), sort_keys=True))
            if (r["section"] == "gemm" and r["impl"] in IMPLS and r.get("clock") == "clean" and r.get("config")
                    and key not in seen):
                seen.add(key)
                out.append(dict(r, suite=path))
    return out


def launcher(row: dict):
    """The row's config launched by the kernel's own spec.launch, verified first (engine.verified_launch)."""
    spec = load(resolve_ref(MATMUL)).kernel
    problem = spec.problem(**row["problem"])
    inputs = spec.make_inputs(problem, torch.device("cuda"), 0)
    return engine.verified_launch(spec, problem, inputs, spec.reference(inputs), row["config"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", required=True, action="append",
                    help="a gemm_suite.json whose clean-clock rows to re-time (repeatable)")
    ap.add_argument("--clock", action="append", choices=("clean", "do_bench"),
                    help="the event clock to re-time with (repeatable; default clean)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cases = [(r, launcher(r)) for r in suite_cases(args.suite)]
    ways = [(clock, busy, off) for clock in (args.clock or ["clean"]) for busy in (False, True) for off in (True, False)]
    results = {id(r): {"shape": r["shape"], "impl": r["impl"], "config": r["config"], "suite": r["suite"],
                       "suite_p20_p50_p80_ms": [r["latency_p20_ms"], r["latency_ms"], r["latency_p80_ms"]]}
               for r, _ in cases}
    for r, fn in cases:
        results[id(r)]["cudagraph"] = list(clocks.measure(fn, "cudagraph", 25, 100))
    names = ["cudagraph"]
    for clock, busy, off in ways:
        name = f"{clock}, {'no lead' if off else 'lead'}, host {'loaded' if busy else 'idle'}"
        names.append(name)
        with host_load(busy):
            for r, fn in cases:
                with no_lead(off):
                    results[id(r)][name] = list(clocks.measure(fn, clock, 25, 100))
    rows = list(results.values())
    print("| shape | impl | suite p50 us | " + " | ".join(f"{n}: p50 us (p80/p20)" for n in names) + " |")
    for row in rows:
        cells = [f"{row[n][1] * 1e3:.1f} ({row[n][2] / max(row[n][0], 1e-9):.2f})" for n in names]
        print(f"| {row['shape']} | {row['impl']} | {row['suite_p20_p50_p80_ms'][1] * 1e3:.1f} | " + " | ".join(cells) + " |")
    meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "cpus": os.cpu_count(), "suite": args.suite}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "clock_host_lead_probe.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
