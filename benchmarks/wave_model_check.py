"""How well does the wave model rank tilings? Checked on recorded GEMM sweeps, offline.

kernels/gemm_waves.py ranks output tilings for the fitted starts (search_spaces/gemm_starts.py).
This reads the candidates of recorded sweeps (the `runs.jsonl.gz` exports of benchmarks/export_runs.py:
each verified TMA candidate of a `matmul` study, its config and latency; no GPU needed), keeps
each tiling's best measured latency per shape (tile, split, persistent loop), and reports:
  * regret: the best measured latency among the model's three best-ranked tilings, over the
    shape's best measured one (geomean over shapes; and the worst), as the fitted starts use it;
  * a refit: the model's four constants (MMA_EFFICIENCY, TILE_OVERHEAD_S,
    PERSISTENT_TILE_OVERHEAD_S, PROGRAMS_PER_SM_MAX) chosen on a grid to minimise that regret on
    all shapes but one, and the regret on the one left out, for each shape in turn.

  python benchmarks/wave_model_check.py docs/results/<run>/gemm_suite.runs.jsonl.gz [...] --target h200
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import recorded_gemm  # noqa: E402
from kernelevolve.kernels import gemm_waves  # noqa: E402
from kernelevolve.kernels.gemm_tile_parts import tile_size  # noqa: E402
from kernelevolve.search_spaces.gemm_starts import modelled_time_s  # noqa: E402
from kernelevolve.search_spaces.matmul import shape_of  # noqa: E402
from kernelevolve.tuner.experiment.hardware import profile  # noqa: E402

CONSTANTS = ("MMA_EFFICIENCY", "TILE_OVERHEAD_S", "PERSISTENT_TILE_OVERHEAD_S", "PROGRAMS_PER_SM_MAX")
GRID = list(itertools.product((0.6, 0.7, 0.8, 0.9, 0.975), (2e-6, 2.7e-6, 3.5e-6, 4.5e-6, 6e-6),
                              (1e-6, 1.5e-6, 2.5e-6, 3.5e-6), (2, 3, 4)))
TOP = 3  # the fitted starts' count (gemm_starts.FITTED_STARTS)


def read(paths: list[str]) -> dict[str, list[tuple[dict, float]]]:
    """{problem key: [(config, latency s)]} of the verified TMA candidates of matmul studies (the
    tilings the model ranks are TMA ones; no warp specialization or clusters, which it ignores)."""
    out = defaultdict(list)
    for _, key, cfg, lat in recorded_gemm.candidates(paths):
        if cfg["TMA"] and not cfg["WARP_SPECIALIZE"] and cfg["num_ctas"] == 1:
            out[key].append((cfg, lat))
    return out


def regrets(data: dict, hw, constants: tuple, keys) -> list[float]:
    """Per shape: the best measured latency of the model's TOP tilings over the best measured."""
    saved = [getattr(gemm_waves, c) for c in CONSTANTS]
    for name, value in zip(CONSTANTS, constants):
        setattr(gemm_waves, name, value)
    try:
        out = []
        for key in keys:
            problem = recorded_gemm.problem_of(key)
            shape = shape_of(problem)
            best: dict = {}  # tiling -> (modelled s, best measured s)
            for cfg, lat in data[key]:
                tiling = (tile_size(cfg), cfg["SPLIT_K"], bool(cfg["PERSISTENT"]))
                t = modelled_time_s(cfg, shape, hw, problem.dtype)
                if tiling not in best or lat < best[tiling][1]:
                    best[tiling] = (t, lat)
            ranked = sorted(best.values())
            out.append(min(lat for _, lat in ranked[:TOP]) / min(lat for _, lat in ranked))
        return out
    finally:
        for name, value in zip(CONSTANTS, saved):
            setattr(gemm_waves, name, value)


def geomean(xs) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="runs.jsonl.gz exports of GEMM sweeps")
    ap.add_argument("--target", default="h200", help="the hardware profile the sweeps ran on")
    args = ap.parse_args()
    hw = profile(args.target)
    data = read(args.runs)
    keys = [k for k, v in data.items() if len({tile_size(c) for c, _ in v}) > TOP]
    current = tuple(getattr(gemm_waves, c) for c in CONSTANTS)
    now = regrets(data, hw, current, keys)
    print(f"{sum(len(data[k]) for k in keys)} TMA candidates, {len(keys)} shapes; constants {current}")
    print(f"regret of the model's {TOP} best-ranked tilings: geomean {geomean(now):.3f}, worst {max(now):.3f}")
    held = []
    for i, key in enumerate(keys):
        train = keys[:i] + keys[i + 1:]
        fit = min(GRID, key=lambda g: geomean(regrets(data, hw, g, train)))
        held.append(regrets(data, hw, fit, [key])[0])
        print(f"  {key}: now {now[i]:.3f}, refit on the others {held[-1]:.3f} {fit}")
    print(f"left out in turn: now {geomean(now):.3f}, refit {geomean(held):.3f} (geomean regret)")


if __name__ == "__main__":
    main()
