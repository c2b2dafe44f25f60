"""The GEMM-family search spaces depend on the target, and every constraint says why it rejects.

No kernel runs here: spaces are built for each hardware profile (AMD's included: its space is
built and listed, never run, since the project has no AMD machine).
"""
import itertools

import pytest

from kernelevolve.kernels.bmm import BmmProblem
from kernelevolve.kernels.conv2d import Conv2dProblem
from kernelevolve.kernels.gemm_epilogue import FusedGemmProblem
from kernelevolve.kernels.gemm_fp8 import Fp8GemmProblem
from kernelevolve.kernels.gemm_tiles import HAS_TENSOR_DESCRIPTORS, HAS_WARP_SPECIALIZE
from kernelevolve.kernels.matmul import DEFAULT_CONFIG, MatmulProblem
from kernelevolve.search_spaces import bmm, conv2d, gemm_epilogue, gemm_fp8, matmul
from kernelevolve.search_spaces.gemm_resources import shared_memory_bytes
from kernelevolve.search_spaces.gemm_starts import programs_per_sm
from kernelevolve.tuner.experiment.hardware import PROFILES, profile
from kernelevolve.tuner.experiment.registry import BUILTIN, load
from kernelevolve.tuner.search.space import Const

BIG = MatmulProblem(M=4096, N=4096, K=4096, dtype="bfloat16")
H100 = profile("h100")
GOOD = dict(DEFAULT_CONFIG, BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_warps=4, num_stages=3)


def names(sp):
    return {d.name for d in sp.domains}


def reasons(sp, **cfg):
    return " ".join(sp.violations(dict(GOOD, **cfg)))


def test_hopper_switches_exist_only_on_sm90():
    h100 = names(matmul.space(BIG, H100))
    assert ("TMA" in h100) == HAS_TENSOR_DESCRIPTORS
    assert ("WARP_SPECIALIZE" in h100) == (HAS_TENSOR_DESCRIPTORS and HAS_WARP_SPECIALIZE)
    for target in ("a100", "mi300x", "cpu-interpreter"):
        assert not names(matmul.space(BIG, profile(target))) & {"TMA", "WARP_SPECIALIZE"}, target
    assert {"PERSISTENT", "SPLIT_K_REDUCE"} <= h100


def test_amd_profile_and_its_launch_options():
    hw = PROFILES["mi300x"]
    assert (hw.vendor, hw.arch) == ("amd", "gfx942")
    sp = matmul.space(BIG, hw)
    assert {"waves_per_eu", "matrix_instr_nonkdim", "kpack"} <= names(sp)
    assert "NOT tested" in sp.notes
    assert not names(matmul.space(BIG, H100)) & {"waves_per_eu", "matrix_instr_nonkdim", "kpack"}
    # 64 KiB of LDS: the H100-sized pipeline does not fit
    assert "shared memory" in " ".join(sp.violations(dict(GOOD, num_stages=3, BLOCK_N=256, waves_per_eu=0,
                                                          matrix_instr_nonkdim=16, kpack=1)))


def test_warp_specialization_rules():
    sp = matmul.space(BIG, H100)
    assert reasons(sp, TMA=True, WARP_SPECIALIZE=True) == ""
    assert "needs TMA" in reasons(sp, WARP_SPECIALIZE=True)
    assert "num_warps=4" in reasons(sp, TMA=True, WARP_SPECIALIZE=True, num_warps=8)
    assert "BLOCK_N" in reasons(sp, TMA=True, WARP_SPECIALIZE=True, BLOCK_M=64, BLOCK_N=256)
    fp32 = matmul.space(MatmulProblem(M=4096, N=4096, K=4096, dtype="float32"), H100)
    assert "float32" in reasons(fp32, TMA=True, WARP_SPECIALIZE=True, num_stages=2)
    few_tiles = matmul.space(MatmulProblem(M=128, N=128, K=8192, dtype="bfloat16"), H100)
    assert "two_pass" in reasons(few_tiles, TMA=True, WARP_SPECIALIZE=True, SPLIT_K=4)
    assert reasons(few_tiles, TMA=True, WARP_SPECIALIZE=True, SPLIT_K=4, SPLIT_K_REDUCE="two_pass") == ""
    # seen leaving outputs unwritten on the H100: 5 stages of 128-row tiles; 64-row tiles pass
    assert "left outputs unwritten" in reasons(sp, TMA=True, WARP_SPECIALIZE=True, BLOCK_M=128, BLOCK_N=128,
                                               BLOCK_K=64, num_stages=5)
    assert reasons(sp, TMA=True, WARP_SPECIALIZE=True, BLOCK_M=64, BLOCK_N=128, BLOCK_K=64, num_stages=5) == ""


def test_clusters_of_two_ctas_on_hopper_only_and_their_rules(monkeypatch):
    sp = matmul.space(BIG, H100)
    assert "num_ctas" not in names(sp) and not matmul.SEARCH_CLUSTERS  # measured, not searched
    assert reasons(sp, num_ctas=2) == ""  # a plug-in space may search it: the rules hold for it
    monkeypatch.setattr(matmul, "SEARCH_CLUSTERS", True)  # where it would be searched
    assert "num_ctas" in names(matmul.space(BIG, H100))
    for target in ("a100", "mi300x", "cpu-interpreter"):
        assert "num_ctas" not in names(matmul.space(BIG, profile(target))), target
    assert "num_ctas" not in names(bmm.space(BmmProblem(B=4, M=1024, N=1024, K=1024, dtype="bfloat16"), H100))
    assert "num_ctas" in names(gemm_epilogue.space(FusedGemmProblem(M=4096, N=4096, K=4096), H100))
    assert "fails to compile" in reasons(sp, num_ctas=2, TMA=True, WARP_SPECIALIZE=True)
    assert "fails to compile" in reasons(sp, num_ctas=2, TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True)
    few_tiles = matmul.space(MatmulProblem(M=128, N=128, K=8192, dtype="bfloat16"), H100)
    assert "SPLIT_K=1" in reasons(few_tiles, num_ctas=2, BLOCK_M=128, SPLIT_K=4, SPLIT_K_REDUCE="two_pass")
    # the tile is split along its longer side (rows on a tie): 128 rows halved to 64 pass, 64 to 32 not
    assert "wants 64" in reasons(sp, num_ctas=2, BLOCK_M=64, BLOCK_N=64)
    assert reasons(sp, num_ctas=2, BLOCK_M=128, BLOCK_N=64) == ""
    assert reasons(sp, num_ctas=2, BLOCK_M=64, BLOCK_N=128) == ""
    # a persistent loop of clusters runs one program per two SMs: 100 tiles loop there
    h = matmul.space(MatmulProblem(M=1280, N=1280, K=1024, dtype="bfloat16"), H100)
    assert "every program gets one tile" in reasons(h, PERSISTENT=True)
    assert reasons(h, PERSISTENT=True, num_ctas=2) == ""


def test_shared_memory_and_registers_are_counted_per_cta_in_a_cluster():
    from kernelevolve.search_spaces.gemm_resources import accumulator_regs, cta_tile
    # compiled for sm90 (triton 3.6 and 3.9, tests/test_gemm_sm90_compile.py re-checks): 73,728 B
    # a CTA for 128x128x64 in 3 stages, 90,136 persistent with TMA; 64x256 splits its columns
    assert cta_tile(dict(GOOD, num_ctas=2)) == (64, 128)
    assert cta_tile(dict(GOOD, BLOCK_M=64, BLOCK_N=256, num_ctas=2)) == (64, 128)
    assert shared_memory_bytes(dict(GOOD, num_ctas=2), 2) == 73728
    assert shared_memory_bytes(dict(GOOD, num_ctas=2, TMA=True, PERSISTENT=True), 2) == 73728 + 1024 + 64 * 128 * 2
    assert accumulator_regs(dict(GOOD, num_ctas=2)) == accumulator_regs(GOOD) / 2


def test_the_tail_split_is_not_searched_but_a_config_may_set_it():
    sp = matmul.space(MatmulProblem(M=5472, N=416, K=1488, dtype="float16"), H100)
    assert "SPLIT_TAIL" not in names(sp) and not matmul.SEARCH_SPLIT_TAIL
    assert not any(t.get("SPLIT_TAIL") for t in matmul.GENERIC_TILES)
    # its rule still holds for a plug-in space that searches it
    assert "PERSISTENT=True" in reasons(sp, SPLIT_TAIL=True)
    assert reasons(sp, SPLIT_TAIL=True, PERSISTENT=True, BLOCK_K=64) == ""


def test_tma_needs_aligned_rows():
    odd = matmul.space(MatmulProblem(M=30000, N=768, K=383, dtype="bfloat16"), H100)
    assert "16-byte" in reasons(odd, TMA=True)
    assert reasons(odd, TMA=False) == ""
    # a staged A (copied to aligned rows) lifts the rule for A only
    assert "STAGE_A" in names(odd) and reasons(odd, TMA=True, STAGE_A=True) == ""
    odd_n = matmul.space(MatmulProblem(M=1000, N=383, K=384, dtype="bfloat16"), H100)
    assert "STAGE_A" not in names(odd_n) and "B rows" in reasons(odd_n, TMA=True, STAGE_A=True)
    assert "STAGE_A" not in names(matmul.space(BIG, H100)) and "STAGE_A" not in names(bmm.space(
        BmmProblem(B=2, M=64, N=64, K=383, dtype="bfloat16"), H100))
    # a staged B lifts it for B; C's rows are padded (kernels/gemm_tiles.py output_for), odd N too
    assert "STAGE_B" in names(odd_n) and reasons(odd_n, TMA=True, STAGE_B=True) == ""
    assert "A rows" in reasons(odd, TMA=True, STAGE_B=True)


ODD_N = MatmulProblem(M=1000, N=383, K=384, dtype="bfloat16")  # B's and C's rows: 766 B


def test_stage_b_only_where_b_rows_are_misaligned():
    for target in ("h100", "a100", "cpu-interpreter"):
        hw = profile(target)
        assert "STAGE_B" in names(matmul.space(ODD_N, hw)), target
        assert "STAGE_B" in names(gemm_epilogue.space(FusedGemmProblem(M=1000, N=383, K=384), hw)), target
        assert "STAGE_B" not in names(matmul.space(BIG, hw)), target
        assert "STAGE_B" not in names(matmul.space(MatmulProblem(M=1000, N=384, K=383, dtype="bfloat16"), hw))
    assert "STAGE_B" not in names(bmm.space(BmmProblem(B=2, M=64, N=383, K=64, dtype="bfloat16"), H100))
    # an aligned problem's space is the one built without the switch: same domains, same size
    aligned, without = matmul.space(BIG, H100), matmul.gemm_space(matmul.shape_of(BIG), H100, stage_a=True)
    assert aligned.domains == without.domains and aligned.size() == without.size()


def test_stage_b_space_adds_staged_configs_and_keeps_the_raw_size():
    sp = matmul.space(ODD_N, H100)
    without = matmul.gemm_space(matmul.shape_of(ODD_N), H100, stage_a=True)
    # odd N: EPILOGUE_SUBTILE is pinned off and STAGE_B takes its factor of two: the raw space
    # (what decides enumeration) keeps its size
    assert {d.name: d for d in sp.domains}["EPILOGUE_SUBTILE"] == Const("EPILOGUE_SUBTILE", False)
    assert sp.size() == matmul.space(BIG, H100).size() == 2 * without.size()
    staged = [c for c in sp.valid_configs() if c["STAGE_B"]]
    unstaged = [{k: v for k, v in c.items() if k != "STAGE_B"} for c in sp.valid_configs() if not c["STAGE_B"]]
    assert unstaged == without.valid_configs()  # unstaged configs are the space without the switch
    assert not any(c["TMA"] for c in unstaged) and any(c["TMA"] for c in staged)
    assert any(c["TMA"] and c["PERSISTENT"] for c in staged) and not any(c["EPILOGUE_SUBTILE"] for c in staged)
    # a config written before the switch ran B unstaged: that is how the space reads it
    assert sp.complete({"BLOCK_M": 64})["STAGE_B"] is False
    # (a config naming it is not refused: C's padded rows are stored by their descriptor)
    assert "EPILOGUE_SUBTILE" not in reasons(sp, TMA=True, STAGE_B=True, PERSISTENT=True, EPILOGUE_SUBTILE=True)


def test_shared_memory_model_without_a_staged_c_tile():
    # a C stored by pointers (one of misaligned rows, not as the kernels make C) stages no output
    # tile in a persistent TMA kernel; warp specialization keeps its upper bound
    cfg = dict(GOOD, TMA=True, PERSISTENT=True)
    assert shared_memory_bytes(cfg, "bfloat16", c_aligned=False) == 3 * (128 + 128) * 64 * 2 + 1024
    ws = dict(GOOD, TMA=True, WARP_SPECIALIZE=True)
    assert shared_memory_bytes(ws, "bfloat16", c_aligned=False) == shared_memory_bytes(ws, "bfloat16")


def test_persistent_and_split_k_rules():
    sp = matmul.space(BIG, H100)
    assert reasons(sp, PERSISTENT=True) == ""  # 1024 tiles > 132 SMs
    small = matmul.space(MatmulProblem(M=512, N=512, K=4096, dtype="bfloat16"), H100)
    assert "every program gets one tile" in reasons(small, PERSISTENT=True)
    assert "SPLIT_K=1" in reasons(small, PERSISTENT=True, SPLIT_K=2)
    assert "only with SPLIT_K > 1" in reasons(sp, SPLIT_K_REDUCE="two_pass")
    # split counts between powers of two: only the one that fills a wave. 128x672 in 64x64 tiles is
    # 22 tiles: 6 slices each are 132 programs, one per SM of the H100
    few = matmul.space(MatmulProblem(M=128, N=672, K=5456, dtype="float16"), H100)
    split = dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128, SPLIT_K_REDUCE="in_kernel")
    assert reasons(few, **split, SPLIT_K=6) == "" and reasons(few, **split, SPLIT_K=8) == ""
    assert "fills one wave" in reasons(few, **split, SPLIT_K=5)
    assert sorted({c["SPLIT_K"] for c in few.valid_configs()}) == [1, 2, 3, 4, 6, 8]  # 3: 42 tiles of 64x32


def test_two_persistent_programs_an_sm_only_where_both_fit():
    sp = matmul.space(BIG, H100)
    assert "PROGRAMS_PER_SM" in names(sp)
    # 128x128x32 in 4 stages with its staged tile: 2 x 97 KiB fit an SM, 4 warps of 128+40 registers too
    two = dict(BLOCK_K=32, num_stages=4, TMA=True, PERSISTENT=True, PROGRAMS_PER_SM=2)
    assert reasons(sp, **two) == ""
    assert "PERSISTENT=True" in reasons(sp, **dict(two, PERSISTENT=False))
    assert "shared memory" in reasons(sp, **dict(two, BLOCK_K=64))  # 2 x 129 KiB
    # 128x256 in 8 warps: 128 accumulator registers a thread, 2 x 256 threads x 168 > 64K
    assert "registers" in reasons(sp, **dict(two, BLOCK_N=256, num_warps=8, num_stages=2))
    assert "WARP_SPECIALIZE" in reasons(sp, **dict(two, WARP_SPECIALIZE=True))
    # 2560 x 1280 in 128 x 128 tiles: 200 tiles loop over 132 programs, not over 264
    mid = matmul.space(MatmulProblem(M=2560, N=1280, K=1024, dtype="bfloat16"), H100)
    assert reasons(mid, **dict(two, PROGRAMS_PER_SM=1)) == ""
    assert "every program gets one tile" in reasons(mid, **two)
    for target in ("cpu-interpreter", "mi300x"):  # AMD's registers are not modelled for two
        assert "PROGRAMS_PER_SM" not in names(matmul.space(BIG, profile(target))), target
    assert "PROGRAMS_PER_SM" in names(matmul.space(BIG, profile("a100")))
    assert "PROGRAMS_PER_SM" not in names(bmm.space(BmmProblem(B=4, M=1024, N=1024, K=1024, dtype="bfloat16"), H100))


def test_the_fitted_starts_count_two_programs_an_sm_where_the_rule_lets_two_run():
    """One home for what fits an SM (gemm_resources.programs_by_smem / programs_by_regs): the wave
    model's occupancy and the programs_per_sm rule agree on every tile, stage count and warp
    count, the 1 KiB each CTA reserves counted by both (no config of these spaces needs within 1 KiB
    of half an SM today, where counting it or not would part them; this keeps them from drifting)."""
    sp = matmul.space(BIG, H100)
    shape = matmul.shape_of(BIG)
    checked = 0
    for bm, bn, bk, warps, stages in itertools.product((64, 128, 256), (64, 128, 256), (32, 64), (4, 8),
                                                       (2, 3, 4, 5)):
        cfg = dict(GOOD, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=stages, TMA=True,
                   PERSISTENT=True)
        if sp.violations(cfg):
            continue
        checked += 1
        two = dict(cfg, PROGRAMS_PER_SM=2)
        assert (programs_per_sm(two, shape, H100) == 2) == (not sp.violations(two)), (cfg, sp.violations(two))
    assert checked > 20


def test_a_flattened_subtiled_store_of_64_rows_in_8_warps_counts_its_relayout():
    # compiled for sm90 (triton 3.6 and 3.9): 131,088 B for 64x256x64 in 2 stages, 32 KiB over the
    # pipeline and staged half; one such config ran out of shared memory on the H200
    cfg = dict(GOOD, BLOCK_M=64, BLOCK_N=256, num_warps=8, num_stages=2, TMA=True, PERSISTENT=True,
               EPILOGUE_SUBTILE=True)
    unflattened = shared_memory_bytes(cfg, "bfloat16")
    assert shared_memory_bytes(dict(cfg, FLATTEN=True), "bfloat16") == unflattened + 64 * 128 * 4
    assert shared_memory_bytes(dict(cfg, FLATTEN=True, BLOCK_M=128), "bfloat16") == \
        shared_memory_bytes(dict(cfg, BLOCK_M=128), "bfloat16")  # 128 rows: one warpgroup's 64 each


def test_shared_memory_model_counts_the_staged_epilogue_tile():
    base = shared_memory_bytes(GOOD, "bfloat16")
    assert base == 3 * (128 + 128) * 64 * 2
    assert shared_memory_bytes(dict(GOOD, TMA=True, PERSISTENT=True), "bfloat16") == base + 1024 + 128 * 128 * 2
    assert shared_memory_bytes(dict(GOOD, TMA=True, WARP_SPECIALIZE=True, BLOCK_M=64), "bfloat16") \
        == 3 * (64 + 128) * 64 * 2 + 1024 + 128 * 128 * 2  # warp specialization stages 128 rows
    sp = matmul.space(BIG, H100)  # 4 stages of 128x256x64 + the staged tile: past 227 KiB
    assert "shared memory" in reasons(sp, BLOCK_N=256, num_warps=8, num_stages=4, TMA=True, PERSISTENT=True)
    assert "shared memory" not in reasons(sp, BLOCK_N=256, num_warps=8, num_stages=4)


def test_fp8_space_exists_only_for_sm90():
    p = Fp8GemmProblem(M=4096, N=4096, K=4096)
    hopper = gemm_fp8.space(p, H100)
    assert hopper.violations(dict(GOOD, BLOCK_K=128, TMA=True)) == []
    for target in ("a100", "mi300x", "cpu-interpreter"):
        sp = gemm_fp8.space(p, profile(target))
        assert sp.size() == 1 and sp.valid_configs() == []
        assert "needs Hopper" in " ".join(sp.violations(dict(DEFAULT_CONFIG)))


def test_bmm_space_has_no_split_k_or_persistent_loop():
    sp = bmm.space(BmmProblem(B=8, M=512, N=512, K=512, dtype="bfloat16"), H100)
    assert not names(sp) & {"SPLIT_K", "SPLIT_K_REDUCE", "PERSISTENT"}
    assert not any("SPLIT_K" in (c.__doc__ or "") for c in sp.constraints)


def test_conv_space_rules():
    p = Conv2dProblem(N=32, H=56, W=56, C_in=64, C_out=64, dtype="bfloat16")
    sp = conv2d.space(p, H100)
    cfg = dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=64, GROUP_M=8, FLAT_K=True, TMA=True, num_warps=4, num_stages=3)
    assert sp.violations(cfg) == []
    assert "BLOCK_K=128 exceeds" in " ".join(sp.violations(dict(cfg, BLOCK_K=128)))  # C_in is 64
    one_by_one = conv2d.space(Conv2dProblem(N=1, H=8, W=8, C_in=16, C_out=16, R=1, S=1, padding=0), H100)
    assert "single K step" in " ".join(one_by_one.violations(dict(cfg, BLOCK_M=64, BLOCK_N=16, BLOCK_K=16)))
    odd = conv2d.space(Conv2dProblem(N=1, H=8, W=8, C_in=3, C_out=16, R=1, S=1, padding=0), H100)
    assert "16-byte aligned weight rows" in " ".join(odd.violations(dict(cfg, BLOCK_M=64, BLOCK_N=16, BLOCK_K=16)))
    assert "TMA" not in names(conv2d.space(p, profile("a100")))


@pytest.mark.parametrize("kernel", ["matmul", "gemm_epilogue", "gemm_fp8", "bmm", "conv2d"])
@pytest.mark.parametrize("target", sorted(PROFILES))
def test_every_space_builds_on_every_target_with_documented_rules(kernel, target):
    tunable = load(BUILTIN[kernel])
    example = {"matmul": BIG, "gemm_epilogue": FusedGemmProblem(M=512, N=512, K=512),
               "gemm_fp8": Fp8GemmProblem(M=512, N=512, K=512),
               "bmm": BmmProblem(B=4, M=128, N=128, K=128),
               "conv2d": Conv2dProblem(N=2, H=14, W=14, C_in=32, C_out=32)}[kernel]
    sp = tunable.space(example, profile(target))
    assert sp.size() >= 1 and sp.notes
    assert all(getattr(c, "__doc__", None) for c in sp.constraints)
    if target == "cpu-interpreter" and kernel != "gemm_fp8":
        assert len(sp.valid_configs()) > 10


def test_generic_start_configs_are_valid_shape_generic_and_can_be_turned_off(tmp_path):
    """The GEMM template's own starting configs (Tunable.start, search_spaces/matmul.py
    GENERIC_TILES): on Hopper, TMA tiles with exactly the operands the space stages; pointer tiles
    with B staged, never A; off Hopper no TMA tile; none on the interpreter; each one a complete,
    valid config of the study's space, for every shape of the generated suite; a sweep's study
    starts from them after the file's own start points, unless `search.kernel_starts: false`."""
    import json
    import sys
    from pathlib import Path

    from kernelevolve.kernels.matmul import MatmulProblem
    from kernelevolve.search_spaces import gemm_epilogue, matmul as msp
    from kernelevolve.tuner.execution.studies import _start_points
    from kernelevolve.tuner.experiment import config as config_mod
    from kernelevolve.tuner.experiment.hardware import profile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gemm_shapes

    for hw_name in ("h100", "a100"):
        hw = profile(hw_name)
        for shape in gemm_shapes.generate():
            problem = MatmulProblem(M=shape.M, N=shape.N, K=shape.K, dtype=shape.dtype)
            space = msp.space(problem, hw)
            starts = msp.start(problem, hw)
            assert starts and len(starts) == len({str(sorted(c.items())) for c in starts})
            staged = {d.name for d in space.domains if d.name in ("STAGE_A", "STAGE_B")}
            for cfg in starts:
                assert set(cfg) == {d.name for d in space.domains} and not space.violations(cfg)
                if cfg.get("TMA"):
                    assert hw_name == "h100" and all(cfg[s] for s in staged)
                else:
                    assert not cfg.get("STAGE_A", False) and cfg.get("STAGE_B", True)
    assert msp.start(MatmulProblem(M=64, N=64, K=64, dtype="float16"), profile("cpu-interpreter")) == []
    # few tiles, long K: the generic split start is offered (the fitted ones split too), reduced
    # in the kernel (one launch)
    split = [c for c in msp.start(MatmulProblem(M=128, N=672, K=5456, dtype="float16"), profile("h100"))
             if c["SPLIT_K"] > 1]
    assert (4, 128) in [(c["SPLIT_K"], c["BLOCK_K"]) for c in split]
    assert {c["SPLIT_K_REDUCE"] for c in split} == {"in_kernel"}
    fused = gemm_epilogue.SPEC.problem(M=331, N=6458, K=5985, dtype="bfloat16", activation="relu")
    assert gemm_epilogue.start(fused, profile("h100"))

    import textwrap

    first = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 1, "num_warps": 4, "num_stages": 2,
             "SPLIT_K": 1, "SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "TMA": False,
             "WARP_SPECIALIZE": False, "STAGE_A": False}

    class State:
        def study(self, key):
            return {}
    for off in (False, True):
        path = tmp_path / f"starts_{off}.yaml"
        path.write_text(textwrap.dedent(f"""\
            name: starts
            kernels:
              - kernel: matmul
                problems: [{{M: 684, N: 5145, K: 3282, dtype: bfloat16}}]
            targets: [{{name: h100}}]
            search: {{samples: 8, kernel_starts: {str(not off).lower()}, start_points: [{json.dumps(first)}]}}
            """))
        study = next(iter(config_mod.load(str(path)).studies()))
        points, _ = _start_points(study, State(), print)
        assert points[0]["BLOCK_K"] == 32  # the file's own first
        assert points[1:] == ([] if off else msp.start(study.problem, study.target.profile))
