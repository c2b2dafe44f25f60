"""How much of a short memory-bound kernel's measured time is the L2 flush's write-back?

triton.testing.do_bench empties the L2 before each repetition by zeroing a 256 MB buffer: the L2 is
then full of dirty lines, and the timed kernel's misses pay their write-back to HBM. This times the
same callables three ways, in one process, by tuner.measure.clocks' named clocks: `do_bench`
(zeroing flush), `clean` (events after a read-only flush with the callable's own write-back
charged: time_gpu_clean's docstring) and `cudagraph` (CUDA-graph replay, no flush),
for a device copy of 1 GiB (the bandwidth reference: bytes read + written) and the embedding-bag
forward (our best config from docs/results/ops_bench_embedding_bag_fwd.json, and F.embedding_bag),
and torch's softmax over 32768 x 1024 bf16 (64 MB written: what a clock that lets a kernel's own
dirty lines leave the L2 after its end event would flatter).

  python benchmarks/l2_flush_probe.py --out DIR     (writes DIR/l2_flush_probe.json, prints a table)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402

from kernelevolve.tuner.measure.clocks import measure  # noqa: E402
from kernelevolve.tuner.experiment.registry import load, resolve_ref  # noqa: E402
from kernelevolve.tuner.measure.verify import check, poison  # noqa: E402

CLOCKS = {"do_bench (zeroing flush)": "do_bench", "read-only flush, own write-back charged": "clean",
          "cuda graph (no flush)": "cudagraph"}
EB_FWD = dict(num_bags=16384, avg_bag_len=20, dim=128, num_rows=1_000_000, mode="sum", dtype="float32")
EB_BEST = {"BLOCK_D": 64, "BAGS_PER_PROGRAM": 1, "IDS_PER_STEP": 16, "num_warps": 1, "num_stages": 2,
           "PREFETCH": True, "ROW_LOAD": "evict_first"}


def kernel_cases(kernel: str, fields: dict, cfg: dict):
    """(ours, peer, bytes) of one registered kernel and config; ours verified first."""
    spec = load(resolve_ref(kernel)).kernel
    problem = spec.problem(**fields)
    inputs = spec.make_inputs(problem, torch.device("cuda"), 0)
    out = spec.make_output(problem, inputs)
    poison(out)
    spec.launch(inputs, out, cfg)
    verdict = check(out, spec.reference(inputs))
    assert verdict.ok, verdict.reason
    return (lambda: spec.launch(inputs, out, cfg)), (lambda: spec.baseline(inputs)), spec.bytes_moved(problem)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    src = torch.empty(1 << 28, dtype=torch.float32, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    items = [("device copy 1 GiB", "copy", lambda: dst.copy_(src), 2.0 * src.numel() * 4, None)]
    ours, peer, nbytes = kernel_cases("embedding_bag_fwd", EB_FWD, EB_BEST)
    items += [("embedding_bag fwd fp32", "ours", ours, nbytes, EB_BEST),
              ("embedding_bag fwd fp32", "F.embedding_bag", peer, nbytes, None)]
    x = torch.randn(32768, 1024, dtype=torch.bfloat16, device="cuda")  # write-heavy: 64 MB in, 64 MB out
    items.append(("softmax 32768 x 1024 bf16", "torch.softmax", lambda: torch.softmax(x, -1), 2.0 * x.numel() * 2, None))
    rows = []
    for label, impl, fn, nbytes, cfg in items:
        fn()
        torch.cuda.synchronize()
        row = {"label": label, "impl": impl, "bytes": nbytes, "config": cfg}
        for name, clock in CLOCKS.items():
            q = measure(fn, clock, 25, 100)
            row[name] = {"p20_ms": q[0], "p50_ms": q[1], "p80_ms": q[2], "gbps": nbytes / q[1] / 1e6}
        rows.append(row)
    copy = rows[0]
    print("| what | impl | " + " | ".join(f"{c} us (% of copy)" for c in CLOCKS) + " |")
    for r in rows:
        cells = [f"{r[c]['p50_ms'] * 1e3:.1f} ({100 * r[c]['gbps'] / copy[c]['gbps']:.1f}%)" for c in CLOCKS]
        print(f"| {r['label']} | {r['impl']} | " + " | ".join(cells) + " |")
    meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "l2_flush_probe.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
