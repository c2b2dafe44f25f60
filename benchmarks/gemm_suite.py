"""The ranking-model GEMM suite on one GPU: our tuned GEMM family beside what a user would pick instead.

Shapes: drawn by benchmarks/gemm_shapes.py's seeded generator, never hand-picked (its docstring
states the distributions): --shapes GEMM shapes (default 24; M log-uniform 64..65536, N and K
log-uniform 128..8192, rounded to multiples of 16 but for a quarter of the shapes left ragged, a
quarter with odd K, half bf16 and half fp16) and --fused fused MLP layers (default 4; the same
distributions, act(A @ B + bias) with relu, gelu and silu in turn, kernels/gemm_epilogue.py), from
--seed (default gemm_shapes.DEFAULT_SEED; also the sweep's and the inputs' seed). --conv adds
the old hand-picked ResNet conv layers (kernels/conv2d.py vs cuDNN); off by default.

  ours            found by the product's engine (`kernelevolve run`: tuner.execution.sweep): ONE
                  experiment holds every shape of the run (or of the shard), one study per shape,
                  all at once; --configs candidates per study, seeded TPE, --threads in flight per
                  study; every candidate verified against the float64 reference in an isolated
                  worker; each study's top 3 re-timed interleaved with the torch peer. No start
                  points. Then, in this process, the study's winner is launched with the kernel's
                  own spec.launch, verified again (output poisoned with NaN first) and timed beside
                  the peers by the row's clock. Where the candidates' records carry an
                  implementation (impl = triton or vendor), "ours" is the dispatched winner (the
                  fastest of both) and "ours best Triton" the fastest Triton config, timed too.
  cuBLAS          torch.matmul (no tuning); fused layers: torch eager's separate ops
  torch.compile   torch.compile(mode="max-autotune") of a @ b (of act(a @ b + bias) for the fused
                  layers), dynamo reset per shape; tuning = its first call; candidates = the
                  choices inductor precompiled (counters["inductor"]["select_algorithm_num_precompiles"])
  triton autotune @triton.autotune over the config list of Triton's tutorial
                  python/tutorials/03-matrix-multiplication.py, get_cuda_autotune_config()
                  (values copied; the tutorial is MIT-licensed, Copyright 2018-2020 Philippe
                  Tillet, 2020-2022 OpenAI); tuning = its first call; candidates = its 16 configs
  Helion          benchmarks/helion_peer.py: Helion's examples/matmul.py kernel, its autotuner run
                  per shape with autotune_effort=--helion-effort (default "quick": helion 1.2.0's
                  LFBO tree search, initial population 30, at most 5 generations; "full" took about
                  300 s per shape), on the GEMM shapes whose index is below --helion-shapes
                  (default 4: the first 4 of the suite; with --shard i/n, n >= 4, one per shard, run
                  first in it);
                  tuning = its autotune() wall time; candidates = configs its search tested.
                  Without helion: a row "not run: helion not installed".

Every row carries its own tuning wall time and candidates, and ours beside them (ours_tuning_s:
the study's wall time in the sweep; the studies of a run are concurrent, so these overlap, and
the table also gives the sweep's wall over its studies). Rows also carry `experiment`,
`tracking_uri` and `parent_run_id` (the MLflow parent run of the study that found the config; its
child runs are every candidate tried). The MLflow store is copied next to the tables.

Clocks (tuner.measure.clocks, by name): --clock is the experiment's `timing.clock`, `auto` by
default: each study's clock is fixed before its search by clocks.choose_clock, `cudagraph` where
the shape's roofline time is under clocks.SHORT_KERNEL_US (50 us), else `clean`; --clock clean or
do_bench times every study with that clock. The study's candidates, its re-timed finalists and
its peer are timed with the clock it resolved, and so are the side-by-side rows of its shape: ours
and every peer, by the clock the study's summary names (the row's `clock`, and in `clock_from`
where it came from). So the winner is reported on the clock it was chosen on. A shape's rows are
made and verified first, then timed together in interleaved rounds (benchmarks/side_by_side.py).
Graph-timed rows also keep the event-timed p50 and the host's cost per call; `clean` rows
do_bench's p50.

Geomeans (gemm_report.py): ours / each peer (throughput) over the GEMM shapes (cuBLAS, compile
max-autotune, triton autotune, Helion on its shapes) and over the fused layers; for "ours best
Triton" too where impl is recorded. --budget-s is the time left after the sweep for the peers
(their tuning included): a peer that no longer fits is skipped with that reason. A failing shape,
peer or config prints its error and the run goes on.

Sharding, so that a GPU run fits 600-second device calls: --shard i/n runs the jobs at positions
j (GEMM shapes first, then the fused layers) with j % n == i - 1, one sweep per shard, and writes
OUT/gemm_suite_shard<i>of<n>.md/.json/.mlflow.db; `--merge FILES... --out DIR` merges shards'
JSONs into DIR/gemm_suite.md/.json (a shard's .partial.json, the rows of a shard cut short, merges
too). Time per shape, estimated from the 2026-11-26 H100 run of the earlier suite (14 studies x 40
candidates: sweep 241 s including ~25 s of Ray start-up, peers 213 s): 15-25 s of sweep per study
(the studies of a shard run at once) and 15-40 s of peers (torch.compile max-autotune 5-32 s, the
tutorial autotune 1-30 s, the timings a few s) per shape, plus ~30 s of imports per shard and,
on each shard with a Helion shape, one Helion quick tune (not measured yet: estimated 60-150 s;
"full" took ~300 s). The default 24 + 4 jobs in 7 shards (4 jobs each, Helion in shards 1-4):
~30 + 4 x 25 + 25 + 4 x 30 + 150 = ~425 s per shard. --budget-s 380 bounds the peers; `timeout
580` around the command leaves the .partial.json of a shard that still runs long.

On the GPU machine, from the project root (.devbundle and .whl carried):
    source .devbundle/activate.sh
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH
    timeout 580 python3 benchmarks/gemm_suite.py --out "$OUT" --shard 1/7 --budget-s 380   # ... 7/7
    python3 benchmarks/gemm_suite.py --merge SHARDS/gemm_suite_shard*of7.json --out MERGED
On a node of several GPUs the whole suite is one run: one shard per GPU, all at once, each on its
own GPU and cores, merged at the end (benchmarks/gemm_suite_node.sh; on a 4 x H200 node the
whole suite took 374 s without Helion, 644 s with it on 4 shapes):
    SHARD_TIMEOUT=490 bash benchmarks/gemm_suite_node.sh "$OUT" --helion-shapes 0 --budget-s 250
.whl/ holds helion-1.2.0-py3-none-any.whl and filecheck-1.0.6-py3-none-any.whl (1.4 MB; the
image has helion's other requirements: numpy, psutil, rich, scikit-learn, typing-extensions):
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 -d .whl helion==1.2.0 filecheck
On a CPU (the plumbing only: the Triton interpreter, tiny float16 shapes from the same generator,
wall clock; torch.compile and the tutorial autotune not run, Helion with its default config):
    python benchmarks/gemm_suite.py --out /tmp/gs --target cpu-interpreter
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__" and any(a.endswith("cpu-interpreter") for a in sys.argv[1:]):
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the first @triton.jit (gemm_peers)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402

from benchmarks import engine, gemm_peers as peers, gemm_report as report, gemm_shapes as shapes  # noqa: E402
from benchmarks.side_by_side import Pending, time_together  # noqa: E402
from kernelevolve.tuner.experiment import hardware, registry  # noqa: E402
from kernelevolve.tuner.experiment.config import Timing  # noqa: E402
from kernelevolve.tuner.search.samplers import SAMPLERS  # noqa: E402
from kernelevolve.tuner.measure.clocks import AUTO, LONG_CLOCKS, SHORT_KERNEL_US, choose_clock  # noqa: E402
from kernelevolve.tuner.measure.verify import check  # noqa: E402

CONV_LAYERS = [  # --conv only (hand-picked): ResNet-style 3x3, stride 1, padding 1, batch 32
    ("conv 56x56x64->64 3x3", dict(N=32, H=56, W=56, C_in=64, C_out=64)),
    ("conv 28x28x128->128 3x3", dict(N=32, H=28, W=28, C_in=128, C_out=128)),
    ("conv 14x14x256->256 3x3", dict(N=32, H=14, W=14, C_in=256, C_out=256)),
]
GPU_DEFAULTS = dict(shapes=24, fused=4, configs=40, threads=8, helion_shapes=4)
CPU_DEFAULTS = dict(shapes=4, fused=1, configs=2, threads=1, helion_shapes=1)


# ---- jobs: the generated suite, its shard ------------------------------------------------------
@dataclass
class Job:
    label: str
    section: str  # gemm, fused, conv
    kernel: str  # the registry's kernel
    fields: dict  # its problem fields
    index: int  # position in its section (the generator's index)
    shape: dict = field(default_factory=dict)  # the generator's draw (M, N, K, dtype, ragged, odd_k, ...)


def all_jobs(args) -> list[Job]:
    """Every job of the run before sharding: GEMM shapes, fused layers, then (--conv) conv layers."""
    if args.target == "cpu-interpreter":
        gemm, fused = shapes.cpu_suite(args.shapes, args.fused, args.seed)
    else:
        gemm, fused = shapes.generate(args.shapes, args.seed), shapes.fused_layers(args.fused, args.seed)
    out = [Job(s.label, "gemm", "matmul", s.fields(), s.index, s.as_dict()) for s in gemm]
    out += [Job(s.label, "fused", "gemm_epilogue", s.fields(), s.index, s.as_dict()) for s in fused]
    if getattr(args, "conv", False):
        out += [Job(lbl, "conv", "conv2d", dict(f, dtype="bfloat16"), i, {}) for i, (lbl, f) in enumerate(CONV_LAYERS)]
    return out


def jobs(args) -> list[Job]:
    """This shard's jobs (--shard i/n), filtered by --only (sections or parts of labels)."""
    i, n = shapes.parse_shard(args.shard)
    out = shapes.shard(all_jobs(args), i, n)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        out = [j for j in out if any(w == j.section or w in j.label for w in wanted)]
    return out


def build(todo: list[Job], args, tgt: dict) -> dict:
    """The run's one experiment: every shape a study of its kernel."""
    kernels = {}
    for j in todo:
        kernels.setdefault(j.kernel, []).append(j.fields)
    cpu = tgt["name"] == "cpu-interpreter"
    extra = dict(top_k=1, retime_rounds=1, timeout_s=600) if cpu else {}
    return engine.experiment("gemm-suite", [{"kernel": k, "problems": p} for k, p in kernels.items()], tgt,
                             samples=args.configs, concurrency=args.threads, seed=args.seed, clock=args.clock,
                             sampler=args.sampler, **extra)


# ---- timing, verification, rows -----------------------------------------------------------------
def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def row(section, shape, impl, flops, times=None, tuning_s=None, **extra) -> dict:
    """One row; tuning_s None where the impl did not run."""
    r = {"section": section, "shape": shape, "impl": impl,
         "tuning_s": round(tuning_s, 2) if tuning_s is not None else None, **extra}
    if times:
        r.update(latency_p20_ms=times[0], latency_ms=times[1], latency_p80_ms=times[2],
                 tflops=flops / (times[1] * 1e-3) / 1e12)
    return r


def timed_peer(section, shape, impl, make, inputs, ref, flops, deadline, need_s, prov) -> dict | Pending:
    """Make the peer (Helion tunes here), call it once (its tuning, if any) and verify it: a row
    to time with the shape's others (side_by_side); skip it if it no longer fits, say why if it
    cannot run here."""
    if deadline - time.perf_counter() < need_s:
        return row(section, shape, impl, flops, error=f"skipped: less than {need_s} s of the time budget left", **prov)
    try:
        t0 = time.perf_counter()
        peer = make(inputs)
        out = peer["fn"]()
        sync()
        tuning_s = peer.get("tuning_s")
        tuning_s = time.perf_counter() - t0 if tuning_s is None else tuning_s
        cand = peer.get("candidates")
        cand = cand() if callable(cand) else cand
        verdict = check(out, ref)
        return Pending(peer["fn"], dict(section=section, shape=shape, impl=impl, flops=flops, tuning_s=tuning_s,
                                        candidates=cand, verified=verdict.ok,
                                        error=None if verdict.ok else verdict.reason, **peer.get("extra", {}), **prov))
    except peers.NotRun as why:
        return row(section, shape, impl, flops, error=str(why), **prov)
    except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
        traceback.print_exc()
        return row(section, shape, impl, flops, error=f"{type(exc).__name__}: {exc}"[:500], **prov)


# ---- ours: the study's winner (and, where impl is recorded, the best Triton config) -------------
def impl_of(record: dict | None) -> str | None:
    """triton or vendor where a record says which implementation it ran, else None."""
    if not record:
        return None
    cfg = record.get("config") or {}
    for v in (record.get("impl"), (record.get("tags") or {}).get("impl"), (record.get("params") or {}).get("impl"),
              cfg.get("IMPL"), cfg.get("impl")):
        if v:
            return str(v).lower()
    return None


def study_records(sw: engine.Sweep, summary: dict | None) -> list[dict]:
    """The study's candidate records from the sweep's journal (empty if not found)."""
    if not summary or not summary.get("study"):
        return []
    try:
        from kernelevolve.tuner.execution.sweep import slug
        from kernelevolve.tuner.records.journal import SweepState, unique_by_candidate

        state = SweepState.latest(os.path.join(sw.folder, ".kernelevolve", sw.name))
        return unique_by_candidate(state.journal(slug(summary["study"])).records()) if state else []
    except Exception as exc:  # noqa: BLE001 - the split is extra: its absence is not a failure
        print(f"  (records of {summary.get('study')} not read: {type(exc).__name__}: {exc})", flush=True)
        return []


def ours_rows(job, spec, problem, inputs, ref, flops, summary, prov, base, records) -> list:
    """The study's winner ("ours"); where the records carry impl and the winner is not Triton, the
    best Triton config too ("ours best Triton"). Each launched here and verified again: rows to
    time with the shape's others (side_by_side), or rows saying why not."""
    best = (summary or {}).get("best")
    if best is None:
        return [row(job.section, job.label, report.OURS, flops, tuning_s=prov.get("tuning_s", 0.0),
                    **{**base, "error": prov.get("error") or "the sweep found no config verified correct"})]
    dispatched = best_triton = None
    if any(impl_of(r) for r in records) or impl_of(best):
        dispatched = impl_of(best) or "triton"
        if dispatched != "triton":  # the engine's summary names its fastest Triton record
            best_triton = (summary or {}).get("best_triton")
            if best_triton is None:
                ok = [r for r in records if r.get("status") == "ok" and impl_of(r) in (None, "triton")]
                best_triton = min(ok, key=lambda r: r["latency_ms"]) if ok else None
    out = []
    todo = [(report.OURS, best["config"])] + ([(report.BEST_TRITON, best_triton["config"])] if best_triton else [])
    for impl, cfg in todo:
        try:
            fn = engine.verified_launch(spec, problem, inputs, ref, cfg)
            out.append(Pending(fn, dict(section=job.section, shape=job.label, impl=impl, flops=flops,
                                        tuning_s=prov["tuning_s"], verified=True, config=cfg,
                                        dispatched_impl=dispatched if impl == report.OURS else None, **base)))
        except Exception as exc:  # noqa: BLE001 - incorrect here, or failing: a result
            out.append(row(job.section, job.label, impl, flops, tuning_s=prov["tuning_s"], config=cfg,
                           **{**base, "error": f"{type(exc).__name__}: {exc}"[:500]}))
    return out


def study_clock(summary: dict | None, spec, problem, args) -> tuple[str, str]:
    """(the clock of a shape's rows, where it came from): the one its study was timed with, as
    its summary names it (tuner.execution.study_end; `auto` resolved before the search). Without a
    study summary (the sweep has none for this problem), the same rule on the same target."""
    if summary and summary.get("clock"):
        return summary["clock"], f"study: {summary.get('clock_rule') or 'its clock'}"
    target = hardware.profile(args.target or engine.gpu_kind()[0])
    choice = choose_clock(args.clock, Timing().long_clock, spec, problem, target)
    return choice.clock, f"no study summary; rule: {choice.rule}"


def is_slow_peer(impl: str) -> bool:
    """Helion's autotune: minutes a shape (its full effort ran past 15 on three shapes of a 4 x
    H200 node), so its rows come after every other row of the shard (`late`): a shard cut short
    then loses those rows only, not the rest of its shapes' peers behind it."""
    return impl.startswith("Helion")


def shape_rows(job: Job, sw: engine.Sweep, args, deadline, late: bool = False) -> list[dict]:
    """Ours (the study's winner, verified again here) and the section's peers, by one clock;
    `late`: the slow peers alone (is_slow_peer), after every shape's other rows."""
    spec = registry.load(registry.resolve_ref(job.kernel)).kernel
    problem = spec.problem(**job.fields)
    summary = sw.by_problem(job.kernel, job.fields)
    prov = engine.provenance(sw, summary)
    counts = (summary or {}).get("counts") or {}
    where = {"experiment": prov["experiment"], "tracking_uri": prov["tracking_uri"],
             "parent_run_id": prov["parent_run_id"]}
    extra = {"index": job.index, "shard": args.shard or "1/1", "problem": job.fields, "draw": job.shape}
    ours_of = {"ours_tuning_s": prov.get("tuning_s"), "ours_candidates": sum(counts.values()) if counts else None}
    cpu = args.target == "cpu-interpreter"
    inputs = spec.make_inputs(problem, torch.device("cpu" if cpu else "cuda"), args.seed)
    ref, flops = spec.reference(inputs), spec.flops(problem)
    todo = [p for p in peers.of(job, args) if is_slow_peer(p[0]) == late]
    clock, clock_from = study_clock(summary, spec, problem, args)
    extra["clock_from"] = clock_from
    tags = {k: v for k, v in prov.items() if k not in ("tuning_s", "configs")}
    rows = [] if late else ours_rows(job, spec, problem, inputs, ref, flops, summary, prov,
                                     {**tags, **ours_of, **extra, "candidates": ours_of["ours_candidates"]},
                                     study_records(sw, summary))
    for impl, make, need_s in todo:
        rows.append(timed_peer(job.section, job.label, impl, make, inputs, ref, flops, deadline, need_s,
                               {**where, **ours_of, **extra}))
    return time_together(rows, clock, row)


# ---- the run --------------------------------------------------------------------------------------
def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the tables, the JSON and the MLflow store")
    ap.add_argument("--target", choices=["h100", "h200", "cpu-interpreter"],
                    help="default: this machine's GPU; cpu-interpreter: the CPU smoke run")
    ap.add_argument("--seed", type=int, default=shapes.DEFAULT_SEED, help="the shapes', the sweep's and the inputs' seed")
    ap.add_argument("--shapes", type=int, help="generated GEMM shapes (default 24; CPU 4)")
    ap.add_argument("--fused", type=int, help="generated fused MLP layers (default 4; CPU 1)")
    ap.add_argument("--conv", action="store_true", help="add the three hand-picked ResNet conv layers")
    ap.add_argument("--helion-shapes", type=int, help="Helion on the GEMM shapes of index below this (default 4; CPU 1)")
    ap.add_argument("--helion-effort", default="quick", choices=["quick", "full"], help="Helion's autotune_effort")
    ap.add_argument("--shard", help="i/n: this run's share of the jobs (positions j with j %% n == i - 1)")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="merge these shards' JSONs into OUT/gemm_suite.*")
    ap.add_argument("--budget-s", type=float, default=300.0, help="time for the peers after the sweep")
    ap.add_argument("--configs", type=int, help="candidates per shape (search.samples; default 40, CPU 2)")
    ap.add_argument("--threads", type=int, help="candidates in flight per shape (default 8, CPU 1)")
    ap.add_argument("--clock", choices=[AUTO, *LONG_CLOCKS], default=AUTO,
                    help="timing.clock of the sweep, whose studies' clocks time the rows too (default auto: "
                         f"cudagraph for a shape whose roofline time is under {SHORT_KERNEL_US:g} us, else clean)")
    ap.add_argument("--sampler", default="tpe", choices=sorted(SAMPLERS),
                    help="the sweep's sampler (default tpe, as the recorded shards; auto: the product's default)")
    ap.add_argument("--only", help="comma-separated sections (gemm, fused, conv) or parts of shape labels")
    args = ap.parse_args(argv)
    defaults = CPU_DEFAULTS if args.target == "cpu-interpreter" else GPU_DEFAULTS
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    shapes.parse_shard(args.shard)  # fails early on a bad --shard
    return args


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    if args.merge:
        print(report.merge(args.merge, out))
        return 0
    cpu = args.target == "cpu-interpreter"
    if not cpu and not torch.cuda.is_available():
        print("gemm_suite: needs a CUDA GPU (or --target cpu-interpreter for the CPU smoke run)", file=sys.stderr)
        return 2
    if cpu and os.environ.get("TRITON_INTERPRET") != "1":
        print("gemm_suite: --target cpu-interpreter needs TRITON_INTERPRET=1 before triton is imported", file=sys.stderr)
        return 2
    todo = jobs(args)
    if not todo:
        print(f"gemm_suite: no job in shard {args.shard} (--only {args.only!r})", file=sys.stderr)
        return 2
    i, n = shapes.parse_shard(args.shard)
    stem = "gemm_suite" if n == 1 else f"gemm_suite_shard{i}of{n}"
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    kind = args.target or engine.gpu_kind()[0]
    print(f"{stem}: {len(todo)} jobs: " + "; ".join(j.label for j in todo), flush=True)
    sw = engine.sweep(build(todo, args, engine.target(kind)), log=lambda m: print(m, flush=True))
    sweep_s = time.perf_counter() - start
    # the engine's records kept as soon as its sweep ends (the peers write none): a shard cut short
    # later still brings back every candidate
    mlflow_db = engine.keep_store(sw, str(out), stem)
    deadline = time.perf_counter() + args.budget_s
    rows = []
    for late in (False, True):
        for job in todo:
            if late and not any(is_slow_peer(p[0]) for p in peers.of(job, args)):
                continue
            print(f"[{time.perf_counter() - start:6.1f} s] {job.label}: side by side{' (slow peers)' * late}",
                  flush=True)
            try:
                rows += shape_rows(job, sw, args, deadline, late)
            except Exception as exc:  # noqa: BLE001 - one shape's failure is reported and the run goes on
                traceback.print_exc()
                prov = engine.provenance(sw, sw.by_problem(job.kernel, job.fields))
                rows.append(row(job.section, job.label, report.OURS, 0.0, index=job.index,
                                shard=args.shard or "1/1",
                                **{**prov, "tuning_s": None, "error": f"{type(exc).__name__}: {exc}"[:500]}))
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            (out / f"{stem}.partial.json").write_text(json.dumps(rows, indent=1, default=str))
    helion_version = None
    if any(r["impl"].startswith("Helion") for r in rows):
        try:
            from benchmarks import helion_peer

            helion_version = helion_peer.version()
        except Exception:  # noqa: BLE001
            pass
    meta = {"target": kind, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)",
            "torch": torch.__version__, "triton": triton.__version__, "helion": helion_version,
            "experiment": sw.name, "tracking_uri": sw.uri, "mlflow_db": mlflow_db,
            "sweep_s": sweep_s, "wall_s": time.perf_counter() - start, "shard": f"{i}/{n}", "studies": len(todo),
            "jobs": [j.label for j in todo], "args": vars(args)}
    print(report.write(out, rows, [meta], stem))
    (out / f"{stem}.partial.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
