"""conv2d as an NHWC implicit GEMM against F.conv2d in float64: stride, padding, dilation, odd
channel counts, non-square filters, both K-loop shapes (flat and nested), TMA weight tiles,
TMA activation boxes (X_TMA) and split-K; and the search space's rules for the new switches."""
import json
import sys

import pytest
from uninterpreted import run_child
import torch
import triton
import triton.language as tl

from kernelevolve.kernels import conv2d as cv
from kernelevolve.kernels import conv2d_staged as staged
from kernelevolve.kernels.gemm_tiles import tma_allocator
from kernelevolve.search_spaces import conv2d as space_cv
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.measure.verify import check, poison

CFG = dict(cv.DEFAULT_CONFIG, BLOCK_M=32, BLOCK_N=16, BLOCK_K=16)
CASES = {  # name: problem fields
    "stride2_pad1_dil2_odd_channels": dict(N=2, H=9, W=7, C_in=5, C_out=7, stride=2, padding=1, dilation=2),
    "3x3_same": dict(N=1, H=8, W=8, C_in=24, C_out=20),
    "1x1_stride2": dict(N=2, H=7, W=6, C_in=19, C_out=9, R=1, S=1, stride=2, padding=0),
    "5x3_pad2": dict(N=1, H=6, W=9, C_in=3, C_out=5, R=5, S=3, padding=2),
}


# X_TMA needs stride 1 and C_in * 2 B a multiple of 16: C_in = 24 (two BLOCK_K=16 blocks, the
# second half empty), P x Q = 9 x 7 against 4 x 8 boxes (BLOCK_M=32, BLOCK_Q=8), padding 1 and 2
XTMA_CASES = {
    "3x3_pad1_ragged": dict(N=2, H=9, W=7, C_in=24, C_out=20),
    "5x3_pad2": dict(N=2, H=6, W=9, C_in=8, C_out=5, R=5, S=3, padding=2),
    "3x3_pad2_dil2": dict(N=1, H=10, W=11, C_in=24, C_out=7, padding=2, dilation=2),
    "3x3_interior_only": dict(N=1, H=10, W=9, C_in=24, C_out=12, padding=0),  # no box leaves x
}


def run(device, fields, dtype, cfg, out_channels_last=True):
    p = cv.Conv2dProblem(dtype=dtype, **fields)
    inputs = cv.make_inputs(p, device, seed=2)
    out = cv.make_output(p, inputs)
    if not out_channels_last:  # what the tuner's guarded output buffer is: plain NCHW
        out = out.contiguous()
    poison(out)
    cv.launch(inputs, out, cfg)
    return check(out, cv.reference(inputs))


@pytest.mark.parametrize("flat_k", [True, False], ids=["flat", "nested"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_conv_matches_reference(device, case, flat_k):
    result = run(device, CASES[case], "float16", dict(CFG, FLAT_K=flat_k))
    assert result.ok, result.reason


def test_fp32_and_nchw_output(device):
    result = run(device, CASES["stride2_pad1_dil2_odd_channels"], "float32", CFG, out_channels_last=False)
    assert result.ok, result.reason


@pytest.mark.parametrize("flat_k", [True, False], ids=["flat", "nested"])
def test_tma_weight_tiles(device, flat_k):
    # C_in = 24 with BLOCK_K = 16: a K block straddles two taps and meets the masked zeros of x
    result = run(device, CASES["3x3_same"], "float16", dict(CFG, TMA=True, FLAT_K=flat_k))
    assert result.ok, result.reason


def test_tma_rejects_unaligned_weight_rows(device):
    with pytest.raises(ValueError, match="TMA"):
        run(device, CASES["5x3_pad2"], "float16", dict(CFG, TMA=True))  # 5*3*3*2 = 90 B rows


def test_output_size_and_cost_model():
    p = cv.Conv2dProblem(N=32, H=56, W=56, C_in=64, C_out=64)
    assert (p.P, p.Q) == (56, 56)
    assert cv.flops(p) == 2 * 32 * 56 * 56 * 64 * 64 * 9
    odd = cv.Conv2dProblem(N=1, H=9, W=7, C_in=1, C_out=1, R=3, S=2, stride=2, padding=1, dilation=2)
    torch_out = torch.nn.functional.conv2d(torch.zeros(1, 1, 9, 7), torch.zeros(1, 1, 3, 2), stride=2,
                                           padding=1, dilation=2)
    assert (odd.P, odd.Q) == tuple(torch_out.shape[2:])


@triton.jit
def _box_kernel(x_ptr, y_ptr, NB, H, W, C, stride_n, stride_h, stride_w, n, h, w, c,
                BP: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr):
    desc = tl.make_tensor_descriptor(x_ptr, shape=[NB, H, W, C], strides=[stride_n, stride_h, stride_w, 1],
                                     block_shape=[1, BP, BQ, BK])
    a = tl.reshape(desc.load([n, h, w, c]), [BP * BQ, BK])
    tl.store(y_ptr + tl.arange(0, BP * BQ)[:, None] * BK + tl.arange(0, BK)[None, :], a)


@pytest.mark.parametrize("corner", [(-1, -2, 0), (3, 4, 16)], ids=["negative", "past_end"])
def test_descriptor_box_zero_fills_outside(device, corner):
    """What X_TMA relies on: a 4-D box that starts at negative coordinates, or runs past H, W or
    C, reads zeros there (the padding), on the interpreter as on the copy engine."""
    h0, w0, c0 = corner
    x = torch.randn((2, 5, 6, 24), device=device, dtype=torch.float16)  # [N, H, W, C]
    y = torch.empty((16, 16), device=device, dtype=torch.float16)
    tma_allocator(x.device)
    _box_kernel[(1,)](x, y, 2, 5, 6, 24, *x.stride()[:3], 1, h0, w0, c0, BP=4, BQ=4, BK=16)
    want = torch.zeros((4, 4, 16), dtype=torch.float16)
    xs = x[1].cpu()
    for i in range(4):
        for j in range(4):
            if 0 <= h0 + i < 5 and 0 <= w0 + j < 6:
                seg = xs[h0 + i, w0 + j, c0:c0 + 16]
                want[i, j, :seg.numel()] = seg
    assert torch.equal(y.cpu().view(4, 4, 16), want)


@pytest.mark.parametrize("tma", [False, True], ids=["w_pointers", "w_tma"])
@pytest.mark.parametrize("flat_k", [True, False], ids=["flat", "nested"])
@pytest.mark.parametrize("case", sorted(XTMA_CASES))
def test_x_tma_boxes(device, case, flat_k, tma):
    result = run(device, XTMA_CASES[case], "float16", dict(CFG, X_TMA=True, BLOCK_Q=8, TMA=tma, FLAT_K=flat_k))
    assert result.ok, result.reason


@pytest.mark.parametrize("block_q", [4, 16, 32, None], ids=["q4", "q16", "q32", "default"])
def test_x_tma_box_shapes(device, block_q):
    # one box row per tile (BLOCK_Q=32 = BLOCK_M) down to 8 rows of 4 columns; None: the default
    result = run(device, XTMA_CASES["3x3_pad1_ragged"], "float16", dict(CFG, X_TMA=True, BLOCK_Q=block_q))
    assert result.ok, result.reason


def test_x_tma_fp32_and_nchw_output(device):
    result = run(device, XTMA_CASES["5x3_pad2"], "float32", dict(CFG, X_TMA=True, BLOCK_Q=16), out_channels_last=False)
    assert result.ok, result.reason


STAGE_CASES = dict(XTMA_CASES, **{  # + an output larger than the input (padding 2 of a 3x3 filter)
    "3x3_pad2_grows": dict(N=3, H=5, W=4, C_in=16, C_out=9, padding=2),
    "1x1": dict(N=2, H=3, W=5, C_in=40, C_out=24, R=1, S=1, padding=0)})


@pytest.mark.parametrize("block_k", [16, 32])  # 32 > C_in=24 and 8: a ragged channel block
@pytest.mark.parametrize("case", sorted(STAGE_CASES))
def test_staged_input(device, case, block_k):
    result = run(device, STAGE_CASES[case], "float16", dict(CFG, STAGE_X=True, BLOCK_K=block_k))
    assert result.ok, result.reason


@pytest.mark.parametrize("extra", [dict(X_TMA=True, TMA=True, BLOCK_Q=8), dict(X_TMA=True, BLOCK_Q=16, BLOCK_M=16),
                                   dict(TMA=True), dict(X_TMA=True, BLOCK_Q=8, SPLIT_K=3), dict(FLAT_K=False)],
                         ids=["x_tma_rows", "x_tma_one_row_16", "pointers", "split_k", "nested"])
@pytest.mark.parametrize("case", ["3x3_pad1_ragged", "3x3_pad2_dil2"])
def test_swapped_operands(device, case, extra):
    result = run(device, XTMA_CASES[case], "float16", dict(CFG, SWAP_AB=True, **extra))
    assert result.ok, result.reason


IMAGES_CASES = {"4x5x6_pad1": dict(N=4, H=5, W=6, C_in=24, C_out=20),
                "4x9x7_pad2_dil2": dict(N=4, H=9, W=7, C_in=8, C_out=12, padding=2, dilation=2)}


@pytest.mark.parametrize("extra", [dict(BLOCK_I=2, BLOCK_Q=8), dict(BLOCK_I=4, BLOCK_Q=8, SWAP_AB=True),
                                   dict(BLOCK_I=2, BLOCK_Q=16, SWAP_AB=True, TMA=True),
                                   dict(BLOCK_I=4, BLOCK_Q=8, SPLIT_K=2), dict(BLOCK_I=2, BLOCK_Q=8, FLAT_K=False)],
                         ids=["i2", "i4_swap", "i2_swap_w_tma", "i4_split", "i2_nested"])
@pytest.mark.parametrize("case", sorted(IMAGES_CASES))
def test_several_images_per_box(device, case, extra):
    # BLOCK_M=32: e.g. 4 images x 1 row x 8 columns, or 2 x 2 x 8 (5-D descriptor over the batch)
    result = run(device, IMAGES_CASES[case], "float16", dict(CFG, X_TMA=True, **extra))
    assert result.ok, result.reason


@pytest.mark.parametrize("extra", [dict(), dict(X_TMA=True, TMA=True, BLOCK_Q=8, PROGRAMS_PER_SM=2),
                                   dict(X_TMA=True, BLOCK_Q=8, SWAP_AB=True, PROGRAMS_PER_SM=3),
                                   dict(X_TMA=True, BLOCK_Q=8, BLOCK_I=2, SWAP_AB=True, TMA=True)],
                         ids=["pointers", "x_tma_w_tma", "x_tma_swap", "images_swap"])
@pytest.mark.parametrize("case", ["3x3_pad1_ragged", "3x3_pad2_dil2"])
def test_persistent_programs_walk_many_tiles(device, case, extra):
    # the interpreter's program_slots is 4: each of 4..12 programs takes several of the 6..10 tiles,
    # and its flat loop crosses tile boundaries (the store and the accumulator reset in the loop)
    fields = dict(XTMA_CASES[case], N=2) if extra.get("BLOCK_I") else XTMA_CASES[case]
    result = run(device, fields, "float16", dict(CFG, PERSISTENT=True, **extra))
    assert result.ok, result.reason


def test_persistent_rejects_split_and_nested_loops(device):
    for bad in (dict(SPLIT_K=2), dict(FLAT_K=False)):
        with pytest.raises(ValueError, match="PERSISTENT=True walks whole tiles in one flat K loop"):
            run(device, XTMA_CASES["3x3_pad1_ragged"], "float16", dict(CFG, PERSISTENT=True, **bad))


def test_images_per_box_must_divide_the_batch(device):
    with pytest.raises(ValueError, match="BLOCK_I=2 images per box must divide the batch N=1"):
        run(device, XTMA_CASES["3x3_pad2_dil2"], "float16", dict(CFG, X_TMA=True, BLOCK_Q=8, BLOCK_I=2))
    with pytest.raises(ValueError, match="BLOCK_Q and BLOCK_I powers of two"):
        run(device, IMAGES_CASES["4x5x6_pad1"], "float16", dict(CFG, X_TMA=True, BLOCK_Q=16, BLOCK_I=4))


def test_staged_input_fp32_and_nchw_output(device):
    result = run(device, STAGE_CASES["3x3_pad2_grows"], "float32", dict(CFG, STAGE_X=True), out_channels_last=False)
    assert result.ok, result.reason


def test_staged_borders_and_copy():
    # same-padding 3x3: one shared zero column per row, one shared zero row per image
    assert staged.staged_borders(14, 14, 14, 14, 1) == (1, 1)
    assert staged.staged_borders(5, 4, 7, 6, 2) == (2, 2) and staged.staged_borders(9, 9, 7, 7, 0) == (0, 0)
    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 4, 2, 3).to(memory_format=torch.channels_last)
    xp = staged.stage_input(x, (1, 2))
    assert xp.shape == (2, 3, 5, 4) and xp.is_contiguous()
    assert torch.equal(xp[:, :2, :3], x.permute(0, 2, 3, 1))
    assert xp[:, 2].abs().sum() == 0 and xp[:, :, 3:].abs().sum() == 0


def test_staged_input_rejects_what_it_cannot_run(device):
    with pytest.raises(ValueError, match="STAGE_X.*stride 1"):
        run(device, dict(N=1, H=9, W=8, C_in=8, C_out=8, stride=2), "float16", dict(CFG, STAGE_X=True))
    with pytest.raises(ValueError, match="STAGE_X.*16-byte"):
        run(device, dict(CASES["stride2_pad1_dil2_odd_channels"], stride=1), "float16", dict(CFG, STAGE_X=True))
    with pytest.raises(ValueError, match="X_TMA=False, SWAP_AB=False, PERSISTENT=False and SPLIT_K=1"):
        run(device, XTMA_CASES["3x3_pad1_ragged"], "float16", dict(CFG, STAGE_X=True, SPLIT_K=2))


def test_x_tma_rejects_stride_2_unaligned_channels_and_bad_block_q(device):
    with pytest.raises(ValueError, match="X_TMA.*needs stride 1"):
        run(device, dict(N=1, H=9, W=8, C_in=8, C_out=8, stride=2), "float16", dict(CFG, X_TMA=True))
    with pytest.raises(ValueError, match="X_TMA.*16 B"):  # C_in = 5: 10-byte pixels
        run(device, dict(CASES["stride2_pad1_dil2_odd_channels"], stride=1), "float16", dict(CFG, X_TMA=True))
    with pytest.raises(ValueError, match="BLOCK_Q"):
        run(device, XTMA_CASES["3x3_pad1_ragged"], "float16", dict(CFG, X_TMA=True, BLOCK_Q=64))


SPLIT_CASES = dict(CASES, **{"3x3_dil2_pad2_ragged": dict(N=2, H=9, W=10, C_in=24, C_out=20, padding=2, dilation=2)})


@pytest.mark.parametrize("split_k", [2, 3])
@pytest.mark.parametrize("flat_k", [True, False], ids=["flat", "nested"])
@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
def test_split_k(device, case, flat_k, split_k):
    result = run(device, SPLIT_CASES[case], "float16", dict(CFG, SPLIT_K=split_k, FLAT_K=flat_k))
    assert result.ok, result.reason


def test_split_k_more_splits_than_steps_and_nchw_output(device):
    # a 1x1 filter with 19 channels is 2 K steps: splits 3..5 add zeros, the sum stays right
    result = run(device, CASES["1x1_stride2"], "float32", dict(CFG, SPLIT_K=5), out_channels_last=False)
    assert result.ok, result.reason


@pytest.mark.parametrize("flat_k", [True, False], ids=["flat", "nested"])
def test_split_k_with_both_descriptors(device, flat_k):
    cfg = dict(CFG, SPLIT_K=3, X_TMA=True, TMA=True, BLOCK_Q=8, FLAT_K=flat_k)
    result = run(device, XTMA_CASES["3x3_pad2_dil2"], "float16", cfg)
    assert result.ok, result.reason


def test_space_rules_for_x_tma_and_split_k():
    h100 = profile("h100")
    layer = cv.Conv2dProblem(N=32, H=14, W=14, C_in=256, C_out=256, dtype="bfloat16")
    sp = space_cv.space(layer, h100)
    names = {d.name for d in sp.domains}
    assert {"X_TMA", "BLOCK_Q", "SPLIT_K"} <= names
    base = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, FLAT_K=True, TMA=True, X_TMA=True,
                BLOCK_Q=16, SPLIT_K=1, num_warps=8, num_stages=4)

    def why(space, **changes):
        return " ".join(space.violations(dict(base, **changes)))

    assert why(sp) == "" and why(sp, SPLIT_K=3) == ""  # 32 x 2 x 1 boxes x 2 column tiles: 128 tiles
    assert "BLOCK_Q=16 varies only with X_TMA" in why(sp, X_TMA=False)
    assert why(sp, X_TMA=False, BLOCK_Q=8) == ""
    assert "wider than the output row" in why(sp, BLOCK_Q=32)
    assert "taller than the output" in why(sp, BLOCK_Q=8, BLOCK_M=256)
    assert why(sp, SPLIT_K=9, FLAT_K=False) == ""  # the tap loop splits 9 taps 9 ways
    assert why(sp, STAGE_X=True, X_TMA=False, BLOCK_Q=8) == ""  # the staged kernel: one variant per tile
    # swapped operands: pixels are the MMA's N, so a 32-pixel tile is fine and the rows rule moves
    assert "BLOCK_M=32 < 64" in why(sp, BLOCK_M=32) and why(sp, BLOCK_M=32, SWAP_AB=True) == ""
    assert "BLOCK_N=32 < 64" in why(sp, BLOCK_N=32, SWAP_AB=True)
    # several images per box: BLOCK_I divides N and, with BLOCK_Q, BLOCK_M; pinned without X_TMA
    assert why(sp, BLOCK_I=4, SWAP_AB=True) == ""  # 4 images x 2 rows x 16 columns
    assert "does not divide BLOCK_M" in why(sp, BLOCK_I=16, BLOCK_Q=16)
    assert "varies only with X_TMA" in why(sp, X_TMA=False, BLOCK_Q=8, BLOCK_I=2)
    odd_batch = space_cv.space(cv.Conv2dProblem(N=6, H=14, W=14, C_in=256, C_out=256, dtype="bfloat16"), h100)
    assert "does not divide the batch" in " ".join(odd_batch.violations(dict(base, BLOCK_I=4)))
    assert "X_TMA pinned" in why(sp, STAGE_X=True) and "TMA, SPLIT_K pinned" in why(
        sp, STAGE_X=True, X_TMA=False, BLOCK_Q=8, TMA=False, SPLIT_K=3)
    pointwise = space_cv.space(cv.Conv2dProblem(N=32, H=14, W=14, C_in=64, C_out=64, R=1, S=1, padding=0,
                                                dtype="bfloat16"), h100)
    assert "> 1 K steps" in why(pointwise, SPLIT_K=2, BLOCK_N=64, BLOCK_K=64, BLOCK_Q=16, FLAT_K=False)
    wide = space_cv.space(cv.Conv2dProblem(N=32, H=56, W=56, C_in=64, C_out=64, dtype="bfloat16"), h100)
    assert "two waves" in why(wide, SPLIT_K=2, BLOCK_N=64, BLOCK_Q=64, BLOCK_K=64)
    strided = space_cv.space(cv.Conv2dProblem(N=8, H=28, W=28, C_in=64, C_out=64, stride=2, dtype="bfloat16"), h100)
    assert "stride 1" in why(strided, BLOCK_N=64, BLOCK_K=64, BLOCK_Q=8)
    assert "STAGE_X needs stride 1" in why(strided, BLOCK_N=64, BLOCK_K=64, BLOCK_Q=8, X_TMA=False, STAGE_X=True)
    rgb = space_cv.space(cv.Conv2dProblem(N=8, H=28, W=28, C_in=3, C_out=64, dtype="bfloat16"), h100)
    assert "aligned pixels" in why(rgb, BLOCK_N=64, BLOCK_K=16, BLOCK_Q=32, TMA=False)
    for target in ("a100", "cpu-interpreter"):  # X_TMA and BLOCK_Q are Hopper's; SPLIT_K is everyone's
        other = {d.name: d for d in space_cv.space(layer, profile(target)).domains}
        assert not {"X_TMA", "BLOCK_Q", "TMA", "STAGE_X"} & set(other) and "SPLIT_K" in other
    # a sampler's point whose values a switch makes irrelevant lands on its canonical twin
    full = dict(base, STAGE_X=False, SWAP_AB=False, BLOCK_I=1, PERSISTENT=False, PROGRAMS_PER_SM=1)
    assert sp.decode(sp.encode(dict(full, X_TMA=False, BLOCK_Q=32, BLOCK_I=4)))["BLOCK_Q"] == 8
    assert sp.decode(sp.encode(dict(full, PROGRAMS_PER_SM=3)))["PROGRAMS_PER_SM"] == 1
    assert sp.decode(sp.encode(dict(full, PERSISTENT=True, PROGRAMS_PER_SM=3)))["PROGRAMS_PER_SM"] == 3
    assert why(sp, PERSISTENT=True, PROGRAMS_PER_SM=2) == ""
    assert "FLAT_K=True" in why(sp, PERSISTENT=True, FLAT_K=False)
    assert "SPLIT_K=1" in why(sp, PERSISTENT=True, SPLIT_K=3)
    staged = sp.decode(sp.encode(dict(full, STAGE_X=True, SWAP_AB=True, SPLIT_K=3, BLOCK_I=2)))
    assert sp.violations(staged) == [] and (staged["X_TMA"], staged["SWAP_AB"], staged["BLOCK_I"]) == (False, False, 1)
    interp = {d.name: d for d in space_cv.space(layer, profile("cpu-interpreter")).domains}
    assert max(interp["SPLIT_K"].values()) <= 3  # small values: each split is a slow interpreted launch


class _Recorder:
    """Stands in for conv2d_kernel: records the constexprs the launcher chose, runs nothing."""

    def __getitem__(self, grid):
        def call(*args, **kwargs):
            self.kwargs = kwargs
        return call


@pytest.mark.parametrize("block_q, interpreting, want", [(8, False, True), (32, False, False), (8, True, False)],
                         ids=["rows_in_registers", "one_row_in_shared", "interpreter"])
def test_a_sync_set_only_where_mmas_read_a_from_registers(monkeypatch, block_q, interpreting, want):
    rec = _Recorder()
    monkeypatch.setattr(cv, "conv2d_kernel", rec)
    monkeypatch.setenv("TRITON_INTERPRET", "1" if interpreting else "0")
    p = cv.Conv2dProblem(dtype="float16", **XTMA_CASES["3x3_pad1_ragged"])
    inputs = cv.make_inputs(p, torch.device("cpu"), 0)
    cv.launch(inputs, cv.make_output(p, inputs), dict(CFG, X_TMA=True, BLOCK_Q=block_q))  # BLOCK_M = 32
    assert rec.kwargs["A_SYNC"] is want and rec.kwargs["BLOCK_P"] == 32 // block_q
    cv.launch(inputs, cv.make_output(p, inputs), dict(CFG, BLOCK_Q=block_q))
    assert rec.kwargs["A_SYNC"] is False
    cv.launch(inputs, cv.make_output(p, inputs), dict(CFG, X_TMA=True, BLOCK_Q=block_q, SWAP_AB=True))
    assert rec.kwargs["A_SYNC"] is False and rec.kwargs["SWAP_AB"] is True  # the box is the MMA's B
    if block_q == 32:  # one row, but two images: the box is reshaped again (in registers unless swapped)
        two = cv.Conv2dProblem(dtype="float16", **IMAGES_CASES["4x5x6_pad1"])
        inputs = cv.make_inputs(two, torch.device("cpu"), 0)
        cv.launch(inputs, cv.make_output(two, inputs), dict(CFG, BLOCK_M=64, X_TMA=True, BLOCK_Q=32, BLOCK_I=2))
        assert rec.kwargs["A_SYNC"] is (not interpreting) and rec.kwargs["BLOCK_P"] == 1


SM90_CASES = {  # name: config changes on a 28x28x128 bf16 layer
    "x_tma_rows_w8": dict(X_TMA=True, TMA=True, BLOCK_Q=32, num_warps=8, num_stages=4),
    "x_tma_rows_nested_w4": dict(X_TMA=True, TMA=True, BLOCK_Q=16, FLAT_K=False),
    "x_tma_one_row": dict(X_TMA=True, TMA=True, BLOCK_Q=128),
    "split_k_x_tma": dict(X_TMA=True, TMA=True, BLOCK_Q=32, SPLIT_K=3),
    "split_k_pointers": dict(SPLIT_K=2),
    "staged_input": dict(STAGE_X=True, num_warps=8, num_stages=4),
    "x_tma_rows_swapped": dict(X_TMA=True, TMA=True, BLOCK_Q=32, SWAP_AB=True, num_warps=8, num_stages=4),
    "x_tma_images_swapped": dict(X_TMA=True, TMA=True, BLOCK_Q=32, BLOCK_I=2, SWAP_AB=True),
    "x_tma_images_w8": dict(X_TMA=True, TMA=True, BLOCK_Q=32, BLOCK_I=2, num_warps=8),
    "persistent_images_swapped": dict(X_TMA=True, TMA=True, BLOCK_Q=32, BLOCK_I=2, SWAP_AB=True,
                                      PERSISTENT=True, PROGRAMS_PER_SM=2),
    "persistent_rows_w8": dict(X_TMA=True, TMA=True, BLOCK_Q=32, num_warps=8, PERSISTENT=True),
    "persistent_pointers": dict(PERSISTENT=True),
}


def _compile_sm90_child() -> None:
    """Runs without TRITON_INTERPRET: compile each case's launch for sm90, report its TTGIR facts."""
    import re
    from unittest import mock

    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    p = cv.Conv2dProblem(N=4, H=28, W=28, C_in=128, C_out=128, dtype="bfloat16")
    results = {}
    for name, changes in SM90_CASES.items():
        inputs = cv.make_inputs(p, torch.device("cpu"), 0)
        calls = []
        with mock.patch.object(JITFunction, "run", lambda self, *a, grid, warmup, **kw: calls.append((self, a, kw))):
            cv.launch(inputs, cv.make_output(p, inputs), dict(cv.DEFAULT_CONFIG, BLOCK_M=128, BLOCK_N=128,
                                                              BLOCK_K=64, **changes))
        kernel, args, kwargs = calls[0]
        bound = {**dict(zip(kernel.arg_names, args)), **kwargs}
        sig, consts, attrs = {}, {}, {}
        for i, (arg, param) in enumerate(zip(kernel.arg_names, kernel.params)):
            v = bound[arg]  # as Triton's launcher specialises: 1 and constexprs constant, pointers 16-aligned
            if param.is_constexpr or v is None or (type(v) is int and v == 1):
                sig[arg], consts[arg] = "constexpr", v
            elif isinstance(v, torch.Tensor):
                sig[arg], attrs[(i,)] = {torch.bfloat16: "*bf16", torch.float32: "*fp32"}[v.dtype], [["tt.divisibility", 16]]
            else:
                sig[arg] = "i32"
                if v % 16 == 0:
                    attrs[(i,)] = [["tt.divisibility", 16]]
        options = {k: v for k, v in kwargs.items() if k not in kernel.arg_names}
        ttgir = triton.compile(ASTSource(kernel, sig, consts, attrs), target=GPUTarget("cuda", 90, 32),
                               options=options).asm["ttgir"]
        loop = ttgir[ttgir.index("scf.for"):ttgir.index("scf.yield")]
        results[name] = {"pendings_in_loop": sorted({int(n) for n in re.findall(r"pendings = (\d+)", loop)}),
                         "a_from_registers": "ttg.local_load" in loop, "wgmma": "warp_group_dot" in loop}
    print(json.dumps(results))


@pytest.fixture(scope="module")
def sm90():
    return run_child(__file__, "--sm90-child")


@pytest.mark.parametrize("name", sorted(SM90_CASES))
def test_new_paths_compile_for_sm90_and_register_operands_are_waited_for(sm90, name):
    """X_TMA boxes of several rows reach the MMA through registers (Triton 3.6-3.9): every wait in
    the K loop must then be a full one (pendings = 0), or the next step's loads overwrite the A
    registers of MMAs still running (seen on the H100 as wrong, run-to-run varying results)."""
    r = sm90[name]
    assert r["wgmma"]
    if r["a_from_registers"]:
        assert r["pendings_in_loop"] == [0], r
    if name == "x_tma_one_row":  # BLOCK_P = 1: Triton drops the unit dimensions, A stays in shared memory
        assert not r["a_from_registers"]
    if name in ("staged_input", "x_tma_rows_swapped", "x_tma_images_swapped", "persistent_images_swapped"):
        # smem operands, MMAs in flight (the persistent loop too: pipelined across tiles, one
        # full wait before each tile's store)
        assert not r["a_from_registers"] and max(r["pendings_in_loop"]) > 0, r


@pytest.mark.gpu
@pytest.mark.parametrize("tma", [False, True])
def test_resnet_layer_bf16_on_gpu(device, tma):
    fields = dict(N=8, H=28, W=28, C_in=128, C_out=128)
    cfg = dict(cv.DEFAULT_CONFIG, BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, TMA=tma, num_warps=8, num_stages=3)
    result = run(device, fields, "bfloat16", cfg)
    assert result.ok, result.reason


if __name__ == "__main__" and sys.argv[1:] == ["--sm90-child"]:
    _compile_sm90_child()
