"""What a sweep's evaluation processes cost to start, on this machine.

Times, each from its own fresh processes: `import torch, triton`; the same plus a CUDA context;
then N of the engine's evaluation processes (tuner.execution.worker.CandidateWorker, as a trial's
compile slots start them) started at once, each until it says it is ready. The rate of a sweep's
first seconds rests on these: a GPU node starts one evaluation process per compile slot.

    python benchmarks/startup_probe.py --out $OUT/startup.json [--counts 1,16]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _wall(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def _together(n: int, code: str) -> list[float]:
    """n copies of `code` started at once: each one's wall time."""
    def one(_):
        return _wall(code)
    with ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(one, range(n)))


def _workers(n: int, env: dict) -> list[float]:
    """n evaluation processes started at once, each until ready (its probe answered)."""
    from kernelevolve.tuner.execution.worker import CandidateWorker

    def one(_):
        w = CandidateWorker(env=env, cwd=ROOT)
        t0 = time.perf_counter()
        reply = w.request({"op": "probe"}, timeout_s=300)
        took = time.perf_counter() - t0
        w.close()
        if reply.get("status") not in (None, "ok"):
            raise RuntimeError(f"probe failed: {reply}")
        return took
    with ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(one, range(n)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--counts", default="1,16")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    cuda = "import torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize()"
    out: dict = {"python": sys.version.split()[0], "imports_s": _wall("import torch, triton")}
    try:
        out["imports_and_context_s"] = _wall("import triton; " + cuda)
    except subprocess.CalledProcessError:
        out["imports_and_context_s"] = None  # no GPU here
    for n in counts:
        out[f"imports_x{n}_s"] = _together(n, "import torch, triton")
        if out["imports_and_context_s"] is not None:
            out[f"imports_and_context_x{n}_s"] = _together(n, "import triton; " + cuda)
        out[f"workers_x{n}_s"] = _workers(n, {"KERNELEVOLVE_INPUT_BYTES": str(1 << 30)})
        print(json.dumps({k: v for k, v in out.items() if f"x{n}_" in k}), flush=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
