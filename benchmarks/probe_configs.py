"""Time an explicit list of configs of one kernel, each verified, beside the kernel's library peer.

For questions a search answers badly ("does switch X help on this layer at all?"): every config of
the plan runs on the same inputs, is checked against the float64 reference (output poisoned first)
and timed three ways by tuner.measure.clocks' named clocks, `do_bench` (events, L2 flushed by
zeroing), `clean` (events, L2 flushed by reading, the call's own write-back charged) and
`cudagraph` (no launch cost), as is the kernel's baseline (its library peer: cuBLAS, cuDNN, ...), and the host's cost per launch is
measured. A failing config is recorded with its error, and the plan goes on. Nothing is searched
here: the configs are the plan's (a search is the product's engine: `kernelevolve run`).

  python benchmarks/probe_configs.py --plan plan.json --out DIR
plan.json: [{"kernel": "conv2d", "label": "...", "problem": {...}, "configs": [{...}, ...]}, ...]
Writes DIR/probe.json (every row) and prints one line per config.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import triton  # noqa: E402

from kernelevolve.tuner.measure.clocks import host_us, measure  # noqa: E402
from kernelevolve.tuner.experiment.registry import load, resolve_ref  # noqa: E402
from kernelevolve.tuner.measure.verify import check, poison  # noqa: E402


def timings(fn) -> dict:
    """do_bench (events, L2 flushed, p20/p50/p80), the clean clock's p50, the cudagraph clock's p50
    (GPU time without launch cost; the probes on record before the clocks were named give the mean)
    and the host's launch cost per call."""
    q = measure(fn, "do_bench", 25, 100)
    clean = measure(fn, "clean", 25, 100)[1]
    graph = measure(fn, "cudagraph", rep_ms=100)[1]
    return {"p20_ms": float(q[0]), "ms": float(q[1]), "p80_ms": float(q[2]), "clean_ms": clean, "graph_ms": float(graph),
            "host_us": host_us(fn, calls=200)}


def probe(item: dict) -> list[dict]:
    spec = load(resolve_ref(item["kernel"])).kernel
    problem = spec.problem(**item["problem"])
    inputs = spec.make_inputs(problem, torch.device("cuda"), 0)
    ref = spec.reference(inputs)
    label = item.get("label", item["kernel"])
    peer = {"label": label, "impl": "peer (kernel baseline)", **timings(lambda: spec.baseline(inputs))}
    rows = [peer]
    print(f"{label}: peer {peer['ms'] * 1e3:.1f} us (clean {peer['clean_ms'] * 1e3:.1f}, graph {peer['graph_ms'] * 1e3:.1f}, "
          f"host {peer['host_us']:.0f})", flush=True)
    for cfg in item["configs"]:
        row = {"label": label, "impl": "ours", "config": cfg}
        try:
            out = spec.make_output(problem, inputs)
            poison(out)
            spec.launch(inputs, out, cfg)
            torch.cuda.synchronize()
            verdict = check(out, ref)
            row["verified"] = bool(verdict.ok)
            if not verdict.ok:
                row["error"] = f"incorrect: {verdict.reason}"
            else:
                row.update(timings(lambda: spec.launch(inputs, out, cfg)))
                row["vs_peer"] = peer["ms"] / row["ms"]
                row["graph_vs_peer"] = peer["graph_ms"] / row["graph_ms"]
                row["clean_vs_peer"] = peer["clean_ms"] / row["clean_ms"]
        except Exception as exc:  # noqa: BLE001 - a failing config is a result, recorded
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        rows.append(row)
        what = (f"{row['ms'] * 1e3:7.1f} us  {row['vs_peer']:.2f}x  clean {row['clean_ms'] * 1e3:7.1f} us "
                f"{row['clean_vs_peer']:.2f}x  graph {row['graph_ms'] * 1e3:6.1f} us "
                f"{row['graph_vs_peer']:.2f}x host {row['host_us']:4.0f} us" if "ms" in row else row["error"][:120])
        print(f"  {what}  {cfg}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("probe_configs: needs a CUDA GPU", file=sys.stderr)
        return 2
    plan = json.loads(Path(args.plan).read_text())
    t0 = time.perf_counter()
    rows = []
    for item in plan:
        rows += probe(item)
        torch.cuda.empty_cache()
    meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "wall_s": time.perf_counter() - t0, "plan": args.plan}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
