"""Does a deeper software pipeline help a GEMM? Checked on recorded sweeps, offline.

A config's num_stages is how many shared-memory buffers its K loop's loads cycle through (they
run up to num_stages - 1 steps ahead of the MMAs), so a deeper pipeline leaves room for fewer
programs an SM. Where the K loop has few steps, the loads the extra stages would hold are few,
and the programs an SM lose their overlap. This reads the candidates of recorded sweeps (the
`runs.jsonl.gz` exports of benchmarks/export_runs.py), pairs each verified Triton config with
the same config at another depth timed in the same sweep (same study, same export), and reports,
by the K loop's steps per program (ceil(ceil(K / BLOCK_K) / SPLIT_K)) and by whether the
shallower depth lets an SM run more of the launch's programs at once (search_spaces/gemm_starts.py
programs_running, on the --target's profile: the fitted starts' short-loop rule), how often and
by how much the shallower one was faster. Flattened persistent loops (FLATTEN) are left out: their
pipeline runs across tiles, so their K loop's length is not the tile's.

  python benchmarks/pipeline_depth_check.py docs/results/<run>/gemm_suite.runs.jsonl.gz [...] [--target h200]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import recorded_gemm  # noqa: E402
from kernelevolve.search_spaces.gemm_starts import k_loop_steps, programs_running  # noqa: E402
from kernelevolve.search_spaces.matmul import shape_of  # noqa: E402
from kernelevolve.tuner.experiment.hardware import profile  # noqa: E402

BUCKETS = ((1, 2), (3, 4), (5, 8), (9, None))  # K steps per program, inclusive


def bucket(steps: int) -> str:
    lo, hi = next(b for b in BUCKETS if steps >= b[0] and (b[1] is None or steps <= b[1]))
    return f"{lo}-{hi}" if hi else f">={lo}"


def pairs(paths: list[str], hw) -> dict[tuple, list[tuple[float, str]]]:
    """{(K-steps bucket, shallower, deeper, the shallower runs more programs an SM):
    [(deeper's time / shallower's, problem key)]}: per config timed at both depths in one sweep,
    each depth's fastest timing; programs counted on `hw` (a Hardware profile)."""
    timed = defaultdict(dict)  # (export, problem, config without num_stages) -> {stages: best s}
    configs = {}
    for path, key, cfg, lat in recorded_gemm.candidates(paths):
        if cfg["FLATTEN"]:
            continue
        rest = {k: v for k, v in cfg.items() if k != "num_stages"}
        at = (path, key, json.dumps(rest, sort_keys=True, default=str))
        depth = timed[at]
        depth[cfg["num_stages"]] = min(lat, depth.get(cfg["num_stages"], math.inf))
        configs[at] = rest
    out = defaultdict(list)
    for at, depth in timed.items():
        shape = shape_of(recorded_gemm.problem_of(at[1]))
        running = {d: programs_running({**configs[at], "num_stages": d}, shape, hw) for d in depth}
        steps = bucket(k_loop_steps(configs[at], shape.K))
        for shallow in depth:
            for deep in depth:
                if deep > shallow:
                    more = running[shallow] > running[deep]
                    out[(steps, shallow, deep, more)].append((depth[deep] / depth[shallow], at[1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="runs.jsonl.gz exports of GEMM sweeps")
    ap.add_argument("--target", default="h200", help="the hardware profile the sweeps ran on")
    args = ap.parse_args()
    found = pairs(args.runs, profile(args.target))
    order = {bucket(lo): i for i, (lo, _) in enumerate(BUCKETS)}
    print("| K steps a program | stages | shallower runs more programs an SM | pairs | shallower faster in | "
          "deeper's time / shallower's (geomean) | shapes |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (b, shallow, deep, more), got in sorted(found.items(), key=lambda kv: (order[kv[0][0]], kv[0][1:])):
        ratios = [r for r, _ in got]
        g = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"| {b} | {shallow} against {deep} | {'yes' if more else 'no'} | {len(got)} | "
              f"{sum(r > 1 for r in ratios)} | {g:.3f} | {len({k for _, k in got})} |")


if __name__ == "__main__":
    main()
