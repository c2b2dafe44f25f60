"""A GEMM start's pipeline depth on a short K loop (search_spaces/gemm_starts.py
short_loop_depth): at most 3 stages, 2 where 2 fit more programs an SM; long loops and persistent
loops keep theirs; and the claim its comment makes of the H200 probe it rests on."""
import json
from collections import defaultdict
from pathlib import Path

import pytest

from kernelevolve.kernels.matmul import MatmulProblem
from kernelevolve.search_spaces.gemm_starts import (SHORT_LOOP_MAX_STEPS, as_config, gemm_starts, k_loop_steps,
                                                    programs_per_sm, short_loop_depth)
from kernelevolve.search_spaces.matmul import shape_of, space
from kernelevolve.tuner.experiment.hardware import profile

H200 = profile("h200")
PROBE = Path(__file__).resolve().parents[1] / "docs/results/gemm_short_k_depths_1xh200/probe.json"
TMA_TILE = {"TMA": True, "BLOCK_K": 64, "GROUP_M": 8}


def _config(problem, **tile):
    cfg = as_config(space(problem, H200), {**TMA_TILE, **tile})
    assert cfg is not None, tile
    return cfg


def test_the_k_loop_counts_whole_blocks_and_split_slices():
    assert k_loop_steps({"BLOCK_K": 64}, 256) == 4
    assert k_loop_steps({"BLOCK_K": 64}, 257) == 5
    assert k_loop_steps({"BLOCK_K": 64, "SPLIT_K": 4}, 5456) == 22  # 86 blocks in 4 slices


def test_a_short_loop_trades_stages_for_programs_an_sm():
    problem = MatmulProblem(M=4096, N=4096, K=256, dtype="bfloat16")  # 4 steps of 64
    sp, shape = space(problem, H200), shape_of(problem)
    deep = _config(problem, BLOCK_M=128, BLOCK_N=128, num_stages=4, num_warps=4)
    shallow = short_loop_depth(sp, H200, shape, deep)
    # 4 stages of 128x128x64 bf16 take 128 KiB: one program an SM; 2 take 64 KiB: three
    assert shallow["num_stages"] == 2
    assert programs_per_sm(deep, shape, H200) == 1 and programs_per_sm(shallow, shape, H200) == 3
    assert {k: v for k, v in shallow.items() if k != "num_stages"} == {k: v for k, v in deep.items() if k != "num_stages"}
    # 128x256 in 8 warps fits one program an SM at any depth (registers): capped at 3, not 2
    wide = _config(problem, BLOCK_M=128, BLOCK_N=256, num_stages=4, num_warps=8)
    assert short_loop_depth(sp, H200, shape, wide)["num_stages"] == 3
    # never deeper than the start was
    two = _config(problem, BLOCK_M=128, BLOCK_N=256, num_stages=2, num_warps=8)
    assert short_loop_depth(sp, H200, shape, two)["num_stages"] == 2


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
def test_every_start_is_valid_once_and_no_short_loop_runs_deeper_than_3(M, N, K, dtype):
    problem = MatmulProblem(M=M, N=N, K=K, dtype=dtype)
    sp, shape = space(problem, H200), shape_of(problem)
    starts = gemm_starts(sp, H200, shape, dtype)
    assert starts and all(not sp.violations(c) for c in starts)
    assert len({json.dumps(c, sort_keys=True) for c in starts}) == len(starts)
    for cfg in starts:
        if not cfg.get("PERSISTENT") and k_loop_steps(cfg, K) <= SHORT_LOOP_MAX_STEPS:
            assert cfg["num_stages"] <= 3, cfg


def test_the_probe_it_rests_on():
    """The comment above SHORT_LOOP_MAX_STEPS says: on the probe's 24 (tile, shape) pairs the
    depth short_loop_depth picks from a 4-stage tile ran within 1% of the tile's fastest depth
    in 23, and where it moved to more programs an SM 1.06-1.58x faster than 4 stages in 17 of 18."""
    data = json.loads(PROBE.read_text())
    plan = json.loads((Path(__file__).resolve().parents[1]
                       / "benchmarks/data/probe_short_k_depths_heldout.json").read_text())
    timed = defaultdict(dict)
    for row in data["rows"]:
        cfg = row["config"]
        if row["status"] == "ok" and "BLOCK_M" in cfg:
            tile = (row["item"], cfg["BLOCK_M"], cfg["EXTRA_M"], cfg["BLOCK_N"], cfg["num_warps"])
            timed[tile][cfg["num_stages"]] = (row["latency_ms"], cfg)
    assert len(timed) == 24 and all(set(depths) == {2, 3, 4} for depths in timed.values())
    close, gains = 0, []
    for (item, *_), depths in timed.items():
        problem = MatmulProblem(**plan[item]["problem"])
        sp, shape = space(problem, H200), shape_of(problem)
        four = as_config(sp, depths[4][1])
        picked = short_loop_depth(sp, H200, shape, four)
        fastest = min(t for t, _ in depths.values())
        close += depths[picked["num_stages"]][0] <= 1.01 * fastest
        if programs_per_sm(picked, shape, H200) > programs_per_sm(four, shape, H200):
            gains.append(depths[4][0] / depths[picked["num_stages"]][0])
    assert close == 23
    gains.sort()
    assert len(gains) == 18 and 0.96 <= gains[0] < 1 <= 1.06 <= gains[1] and gains[-1] < 1.59  # one lost 4%
