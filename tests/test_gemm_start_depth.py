"""A GEMM start's pipeline depth on a short K loop (search_spaces/gemm_starts.py
short_loop_depth): 3 or 2 stages where the shallower pipeline lets an SM run more of the launch's
programs at once, else as it was; long and persistent loops keep theirs; and the claims its
comment makes of the H200 probes it rests on."""
import json
from collections import defaultdict
from pathlib import Path

import pytest

from kernelevolve.kernels.matmul import MatmulProblem
from kernelevolve.search_spaces.gemm_starts import (SHORT_LOOP_MAX_STEPS, as_config, fitted_starts, gemm_starts,
                                                    generic_starts, k_loop_steps, programs_running, short_loop_depth)
from kernelevolve.search_spaces.matmul import shape_of, space
from kernelevolve.tuner.experiment.hardware import profile

H200 = profile("h200")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/results/gemm_short_k_depths_1xh200"
PLANS = ROOT / "benchmarks/data"
TMA_TILE = {"TMA": True, "BLOCK_K": 64, "GROUP_M": 8}


def _config(problem, **tile):
    cfg = as_config(space(problem, H200), {**TMA_TILE, **tile})
    assert cfg is not None, tile
    return cfg


def test_the_k_loop_counts_whole_blocks_and_split_slices():
    assert k_loop_steps({"BLOCK_K": 64}, 256) == 4
    assert k_loop_steps({"BLOCK_K": 64}, 257) == 5
    assert k_loop_steps({"BLOCK_K": 64, "SPLIT_K": 4}, 5456) == 22  # 86 blocks in 4 slices


def test_a_short_loop_trades_stages_for_programs_an_sm_runs():
    problem = MatmulProblem(M=4096, N=4096, K=256, dtype="bfloat16")  # 4 steps of 64, 1,024 tiles
    sp, shape = space(problem, H200), shape_of(problem)
    deep = _config(problem, BLOCK_M=128, BLOCK_N=128, num_stages=4, num_warps=4)
    shallow = short_loop_depth(sp, H200, shape, deep)
    # 4 stages of 128x128x64 bf16 take 128 KiB: one program an SM; 2 take 64 KiB: three
    assert shallow["num_stages"] == 2
    assert programs_running(deep, shape, H200) == 1 and programs_running(shallow, shape, H200) == 3
    assert {k: v for k, v in shallow.items() if k != "num_stages"} == {k: v for k, v in deep.items() if k != "num_stages"}
    # 128x256 in 8 warps: its registers hold one program an SM at any depth: left as it is
    wide = _config(problem, BLOCK_M=128, BLOCK_N=256, num_stages=4, num_warps=8)
    assert short_loop_depth(sp, H200, shape, wide) == wide


def test_a_launch_of_too_few_programs_keeps_its_depth():
    # 160x1872 in 64x64 tiles: 90 programs on 132 SMs, one an SM whatever its depth
    problem = MatmulProblem(M=160, N=1872, K=144, dtype="float16")
    sp, shape = space(problem, H200), shape_of(problem)
    cfg = _config(problem, BLOCK_M=64, BLOCK_N=64, num_stages=4, num_warps=4)
    assert programs_running(cfg, shape, H200) == 1
    assert short_loop_depth(sp, H200, shape, cfg) == cfg
    # and none of its starts moves (nor 2944x768x400's fitted ones: 96-128 tiles)
    starts = fitted_starts(sp, H200, shape, "float16") + generic_starts(sp, H200)
    assert gemm_starts(sp, H200, shape, "float16") == [c for i, c in enumerate(starts) if c not in starts[:i]]
    p2944 = MatmulProblem(M=2944, N=768, K=400, dtype="float16")
    sp2944, shape2944 = space(p2944, H200), shape_of(p2944)
    fitted = fitted_starts(sp2944, H200, shape2944, "float16")
    assert gemm_starts(sp2944, H200, shape2944, "float16")[:len(fitted)] == fitted


def test_long_and_persistent_loops_keep_their_depth():
    long_k = MatmulProblem(M=4096, N=4096, K=64 * (SHORT_LOOP_MAX_STEPS + 1), dtype="bfloat16")
    cfg = _config(long_k, BLOCK_M=128, BLOCK_N=128, num_stages=4, num_warps=4)
    assert short_loop_depth(space(long_k, H200), H200, shape_of(long_k), cfg) == cfg
    short = MatmulProblem(M=16384, N=4096, K=128, dtype="bfloat16")
    loop = _config(short, BLOCK_M=128, BLOCK_N=256, num_stages=4, num_warps=8, PERSISTENT=True, FLATTEN=True,
                   EPILOGUE_SUBTILE=True)
    assert short_loop_depth(space(short, H200), H200, shape_of(short), loop) == loop


@pytest.mark.parametrize("M,N,K,dtype", [(3600, 2448, 256, "bfloat16"), (2944, 768, 400, "float16"),
                                         (20640, 2448, 128, "bfloat16"), (128, 672, 5456, "float16")])
def test_every_start_is_valid_and_once(M, N, K, dtype):
    problem = MatmulProblem(M=M, N=N, K=K, dtype=dtype)
    sp, shape = space(problem, H200), shape_of(problem)
    starts = gemm_starts(sp, H200, shape, dtype)
    assert starts and all(not sp.violations(c) for c in starts)
    assert len({json.dumps(c, sort_keys=True) for c in starts}) == len(starts)


def _timed_by_tile(probe: str) -> dict:
    """{(item, tile): {stages: (latency ms, config)}} of a probe's verified Triton rows."""
    timed = defaultdict(dict)
    for row in json.loads((RESULTS / probe).read_text())["rows"]:
        cfg = row["config"]
        if row["status"] == "ok" and "BLOCK_M" in cfg:
            tile = (row["item"], cfg["BLOCK_M"], cfg["EXTRA_M"], cfg["BLOCK_N"], cfg["num_warps"], cfg["TMA"])
            timed[tile][cfg["num_stages"]] = (row["latency_ms"], cfg)
    return timed


def _moved_speedups(probe: str, plan: str) -> tuple[list[float], int]:
    """For each tile timed at 4 stages: its time at 4 over its time at the depth short_loop_depth
    gives it, where that moved it; and how many tiles there were."""
    items = json.loads((PLANS / plan).read_text())
    timed, gains = _timed_by_tile(probe), []
    for (item, *_), depths in timed.items():
        problem = MatmulProblem(**items[item]["problem"])
        sp, shape = space(problem, H200), shape_of(problem)
        four = as_config(sp, depths[4][1])
        depth = short_loop_depth(sp, H200, shape, four)["num_stages"]
        if depth != 4:
            gains.append(depths[4][0] / depths[depth][0])
    return sorted(gains), len(timed)


def test_the_probes_it_rests_on():
    """The comment above SHORT_LOOP_MAX_STEPS: the held-out probe's moved pairs 1.06-1.58x faster
    in 17 of 18 (4% slower in one) of 24; the bounds probe's 1.03-1.76x in 4 of 4 (of 6: its
    9-step shape is left); the suite starts' 1.06-1.41x in 14 of 14."""
    gains, tiles = _moved_speedups("probe.json", "probe_short_k_depths_heldout.json")
    assert tiles == 24 and len(gains) == 18
    assert 0.96 <= gains[0] < 1 and 1.06 <= gains[1] and gains[-1] < 1.59
    gains, tiles = _moved_speedups("bounds/probe.json", "probe_short_k_depths_bounds.json")
    assert tiles == 6 and len(gains) == 4 and round(gains[0], 2) >= 1.03 and gains[-1] < 1.77
    gains, tiles = _moved_speedups("suite_starts/probe.json", "probe_short_k_depths_suite_starts.json")
    assert tiles == 14 and len(gains) == 14 and 1.06 <= gains[0] and gains[-1] < 1.42
