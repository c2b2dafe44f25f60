"""Every switch of the GEMM template, on odd and on even shapes, against the float64 reference.

On the CPU the interpreter runs them: tensor descriptors (TMA) run there for real; warp
specialization does not exist there (the loop runs plainly), so WARP_SPECIALIZE is checked here
only for its loop logic, compiled for sm90 in tests/test_gemm_sm90_compile.py, and run ON THE
GPU ONLY (the gpu-marked test below, bf16 too, which the interpreter garbles). On a GPU machine
every test here runs compiled.
"""
import pytest
import torch
from recorded_launches import RecordedLaunches

from kernelevolve.kernels import matmul as mm
from kernelevolve.kernels import gemm_split_tail as split_tail
from kernelevolve.kernels import gemm_tiles
from kernelevolve.kernels.gemm_tiles import launch_options
from kernelevolve.kernels.spec import element_size
from kernelevolve.tuner.measure.verify import check, poison

ODD = (100, 72, 130)  # M, N, K: ragged in every dimension (K*2 bytes is not 16-byte aligned)
TMA_ODD = (100, 72, 136)  # ragged M and tiles, 16-byte aligned rows (what TMA needs)
EVEN = (128, 64, 128)  # every tile full: EVEN_K drops the K masks

# 64x32 tiles: 6 tiles for the odd shapes, more than the interpreter's 4 persistent programs,
# so persistent programs loop; 64 rows keep the configs valid for Hopper's MMA when run on a GPU.
BASE = dict(mm.DEFAULT_CONFIG, BLOCK_M=64, BLOCK_N=32, BLOCK_K=32)
POINTER_SWITCHES = {
    "plain": {},
    "group1": dict(GROUP_M=1),
    "persistent": dict(PERSISTENT=True),
    "splitk3_atomic": dict(SPLIT_K=3, BLOCK_K=16),
    "splitk3_two_pass": dict(SPLIT_K=3, BLOCK_K=16, SPLIT_K_REDUCE="two_pass"),
    "splitk3_in_kernel": dict(SPLIT_K=3, BLOCK_K=16, SPLIT_K_REDUCE="in_kernel"),
}
TMA_SWITCHES = {
    "tma": dict(TMA=True),
    "tma_persistent": dict(TMA=True, PERSISTENT=True),
    "tma_splitk2_atomic": dict(TMA=True, SPLIT_K=2),
    "tma_splitk2_two_pass": dict(TMA=True, SPLIT_K=2, SPLIT_K_REDUCE="two_pass"),
    "tma_splitk2_in_kernel": dict(TMA=True, SPLIT_K=2, SPLIT_K_REDUCE="in_kernel"),
    "tma_splitk3_in_kernel": dict(TMA=True, SPLIT_K=3, SPLIT_K_REDUCE="in_kernel"),  # the slices interleave
    # the descriptors: made on the host by default ("auto", every entry above), asked for by name, or
    # forced back to being built by every program on the device
    "tma_host_descriptors": dict(TMA=True, HOST_DESCRIPTORS=True),
    "tma_device_descriptors": dict(TMA=True, HOST_DESCRIPTORS=False),
    "tma_persistent_device_descriptors": dict(TMA=True, PERSISTENT=True, HOST_DESCRIPTORS=False),
    "tma_splitk2_in_kernel_device_descriptors": dict(TMA=True, SPLIT_K=2, SPLIT_K_REDUCE="in_kernel",
                                                     HOST_DESCRIPTORS=False),
}
WS_SWITCHES = {  # fp16 only: Hopper's warp specialization does not compile for fp32 (tf32)
    "tma_ws": dict(TMA=True, WARP_SPECIALIZE=True),
    "tma_ws_persistent": dict(TMA=True, WARP_SPECIALIZE=True, PERSISTENT=True),
}


def run(device, shape, dtype, cfg, seed=0):
    M, N, K = shape
    problem = mm.MatmulProblem(M=M, N=N, K=K, dtype=dtype)
    inputs = mm.make_inputs(problem, device, seed)
    out = mm.make_output(problem, inputs)
    poison(out)
    mm.launch(inputs, out, cfg)
    return check(out, mm.reference(inputs))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", [ODD, EVEN], ids=["odd", "even"])
@pytest.mark.parametrize("name", sorted(POINTER_SWITCHES))
def test_pointer_switches(device, name, shape, dtype):
    result = run(device, shape, dtype, dict(BASE, **POINTER_SWITCHES[name]))
    assert result.ok, result.reason


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", [TMA_ODD, EVEN], ids=["odd", "even"])
@pytest.mark.parametrize("name", sorted(TMA_SWITCHES))
def test_tma_switches(device, name, shape, dtype):
    result = run(device, shape, dtype, dict(BASE, **TMA_SWITCHES[name]))
    assert result.ok, result.reason


@pytest.mark.parametrize("split_k", [2, 4])
def test_split_k_in_kernel_leaves_its_arrival_counters_at_zero_for_the_next_launch(device, split_k):
    """The last split of each tile resets its counter: launch after launch (of other shapes too,
    sharing the counters) stays right, and no launch needs a zero-fill of its own."""
    cfg = dict(BASE, SPLIT_K=split_k, BLOCK_K=16, SPLIT_K_REDUCE="in_kernel")
    for shape in (ODD, EVEN, ODD):
        result = run(device, shape, "float32", cfg)
        assert result.ok, result.reason
        counters = [c for (dev, _), c in gemm_tiles._ARRIVALS.items() if torch.device(dev).type == torch.device(device).type]
        assert counters and all(int(c.abs().sum()) == 0 for c in counters)


@pytest.mark.parametrize("extra", [{}, dict(TMA=True), dict(TMA=True, EPILOGUE_SUBTILE=True)],
                         ids=["pointers", "tma", "tma_subtiled"])
def test_split_tail_cuts_the_last_wave_into_k_slices(device, extra):
    """SPLIT_TAIL (kernels/gemm_split_tail.py) on 1.5 waves of tiles for this device's programs:
    the half wave is cut into K slices that meet in the kernel, through the fused epilogue, and
    the tiles' arrival counters are left at zero for the next launch."""
    slots = gemm_tiles.program_slots(torch.device(device))
    rows = -(-(slots * 3 // 2) // 6)  # 6 tile columns of 32: 1.5 waves, ragged at the bottom
    M, N, K = 64 * rows - 7, 6 * 32, 136
    tiles = -(-M // 64) * 6
    assert split_tail.tail_plan(tiles, min(tiles, slots), -(-K // 32))[1] >= 2  # the tail does split
    gen = torch.Generator().manual_seed(5)
    a, b = (torch.randn(*s, generator=gen).half().to(device) for s in ((M, K), (K, N)))
    bias, residual = torch.randn(N, generator=gen).to(device), torch.randn(M, N, generator=gen).half().to(device)
    ref = torch.relu(a.double() @ b.double() + bias.double()) + residual.double()
    for launch in range(2):
        out = torch.empty(M, N, device=device, dtype=torch.float16)
        poison(out)
        mm.launch_gemm(a, b, out, dict(BASE, PERSISTENT=True, SPLIT_TAIL=True, **extra),
                       mm.Epilogue(bias=bias, activation="relu", residual=residual))
        assert check(out, ref).ok, (launch, extra)
        counters = [c for (dev, _), c in gemm_tiles._ARRIVALS.items() if torch.device(dev).type == torch.device(device).type]
        assert counters and all(int(c.abs().sum()) == 0 for c in counters)


@pytest.mark.parametrize("extra", [{}, dict(TMA=True, FLATTEN=True), dict(TMA=True, EPILOGUE_SUBTILE=True)],
                         ids=["pointers", "tma_flatten", "tma_subtiled"])
def test_two_persistent_programs_an_sm_compute_the_same_product(device, extra):
    """PROGRAMS_PER_SM=2: twice the persistent programs, each looping over every grid-th tile, on
    more tiles than programs (so each loops) with a ragged last row and column of tiles."""
    slots = 2 * gemm_tiles.program_slots(torch.device(device))
    M, N, K = 64 * (slots // 4 + 1) - 9, 4 * 32 - 8, 136  # (slots / 4 + 1) x 4 tiles of 64 x 32; rows TMA reads
    assert -(-M // 64) * -(-N // 32) > slots
    run_ok = run(device, (M, N, K), "float16", dict(BASE, PERSISTENT=True, PROGRAMS_PER_SM=2, **extra))
    assert run_ok.ok, run_ok.reason


def test_split_tail_plans_only_a_tail_worth_cutting():
    assert split_tail.tail_plan(172, 132, 24) == (40, 3)  # 5472x416 at 128x128: 40 tiles, 3 slices each
    assert split_tail.tail_plan(276, 132, 7) == (12, 3)  # 2944x768x400 at 64x128x64: K allows 3
    assert split_tail.tail_plan(264, 132, 7) == (0, 1)  # two whole waves: nothing idles
    assert split_tail.tail_plan(200, 132, 24) == (0, 1)  # 68 tail tiles on 64 idle programs: one slice each
    assert split_tail.tail_plan(100, 132, 24) == (0, 1)  # under one wave: a persistent loop has no tail
    assert split_tail.tail_plan(140, 132, 3) == (0, 1)  # three K blocks: no two slices of two


def test_split_tail_refuses_what_it_cannot_split():
    with pytest.raises(ValueError, match="PERSISTENT"):
        run("cpu", TMA_ODD, "float16", dict(BASE, SPLIT_TAIL=True))
    with pytest.raises(ValueError, match="WARP_SPECIALIZE"):
        run("cpu", TMA_ODD, "float16", dict(BASE, TMA=True, PERSISTENT=True, WARP_SPECIALIZE=True, SPLIT_TAIL=True))


@pytest.mark.parametrize("extra", [{}, dict(TMA=True), dict(TMA=True, PERSISTENT=True, FLATTEN=True)],
                         ids=["pointers", "tma", "tma_persistent_flatten"])
def test_clusters_of_two_ctas_compute_the_same_product(device, extra):
    """num_ctas=2: each program a cluster of two CTAs sharing its tile (compiled on a GPU; the
    interpreter runs the program whole, so there this checks the launch path only)."""
    cfg = dict(BASE, BLOCK_M=128, BLOCK_N=64, num_ctas=2, **extra)
    for shape in (TMA_ODD, (300, 200, 136)):  # one partial tile; several, so a persistent loop loops
        result = run(device, shape, "float16", cfg)
        assert result.ok, result.reason


def test_clusters_halve_a_persistent_grid_and_refuse_what_counts_programs(monkeypatch):
    kernel = RecordedLaunches()
    monkeypatch.setattr(mm, "matmul_kernel", kernel)
    monkeypatch.setattr(gemm_tiles, "program_slots", lambda device: 132)
    a, b = torch.randn(4096, 64).half(), torch.randn(64, 4096).half()
    # 1024 tiles of 128 x 128: a program per SM, per two SMs in clusters, two per SM with PROGRAMS_PER_SM
    for ctas, per_sm, programs in ((1, 1, 132), (2, 1, 66), (1, 2, 264), (2, 2, 132)):
        mm.launch_gemm(a, b, torch.empty(4096, 4096).half(), dict(BASE, BLOCK_M=128, BLOCK_N=128,
                                                                  PERSISTENT=True, num_ctas=ctas,
                                                                  PROGRAMS_PER_SM=per_sm))
        assert kernel.grids[-1] == (programs,)
    # never more programs than tiles; two per SM only for a persistent loop, and no more than two
    mm.launch_gemm(a, b[:, :256], torch.empty(4096, 256).half(), dict(BASE, BLOCK_M=128, BLOCK_N=128,
                                                                      PERSISTENT=True, PROGRAMS_PER_SM=2))
    assert kernel.grids[-1] == (64,)
    for bad in (dict(PROGRAMS_PER_SM=2), dict(PERSISTENT=True, PROGRAMS_PER_SM=3)):
        with pytest.raises(ValueError, match="PROGRAMS_PER_SM"):
            mm.launch_gemm(a, b, torch.empty(4096, 4096).half(), dict(BASE, **bad))
    assert launch_options(dict(BASE, num_ctas=2))["num_ctas"] == 2 and "num_ctas" not in launch_options(BASE)
    for bad in (dict(SPLIT_K=2, SPLIT_K_REDUCE="in_kernel"), dict(PERSISTENT=True, SPLIT_TAIL=True),
                dict(TMA=True, WARP_SPECIALIZE=True)):
        with pytest.raises(ValueError, match="num_ctas"):
            mm.launch_gemm(a, b, torch.empty(4096, 4096).half(), dict(BASE, num_ctas=2, **bad))


def test_split_k_in_kernel_refuses_warp_specialization():
    with pytest.raises(ValueError, match="arrival counters"):
        run("cpu", TMA_ODD, "float16", dict(BASE, TMA=True, WARP_SPECIALIZE=True, SPLIT_K=2, SPLIT_K_REDUCE="in_kernel"))


@pytest.mark.parametrize("extra", [{}, dict(TMA=True), dict(TMA=True, PERSISTENT=True),
                                   dict(SPLIT_K=3, BLOCK_K=16)], ids=["pointers", "tma", "tma_persistent", "splitk3"])
def test_stage_a_makes_a_misaligned_a_readable(device, extra):
    # K=130 fp16: 260-byte rows of A; the staged copy's rows start 128-byte aligned, so even TMA runs
    result = run(device, ODD, "float16", dict(BASE, STAGE_A=True, **extra))
    assert result.ok, result.reason


ODD_N = (100, 45, 130)  # N=45 fp16: 90-byte rows of B and C; K odd too (STAGE_A for TMA)
ODD_N_ONLY = (100, 37, 136)  # N=37: B and C misaligned, A aligned
STAGE_B_SWITCHES = {
    "pointers": {},
    "persistent": dict(PERSISTENT=True),
    "splitk3_atomic": dict(SPLIT_K=3, BLOCK_K=16),
    "splitk3_two_pass": dict(SPLIT_K=3, BLOCK_K=16, SPLIT_K_REDUCE="two_pass"),
    "tma": dict(TMA=True),
    "tma_persistent": dict(TMA=True, PERSISTENT=True),
    "tma_persistent_subtile": dict(TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True),
    "tma_splitk2_atomic": dict(TMA=True, SPLIT_K=2),
    "tma_splitk2_two_pass": dict(TMA=True, SPLIT_K=2, SPLIT_K_REDUCE="two_pass"),
    "tma_splitk2_in_kernel": dict(TMA=True, SPLIT_K=2, SPLIT_K_REDUCE="in_kernel"),
    "tma_device_descriptors": dict(TMA=True, HOST_DESCRIPTORS=False),  # the above: host-made ("auto")
}


# A staged B's pointer loads read the buffer's unwritten pitch columns into output columns the
# store masks: the interpreter's numpy warns about what it finds there.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("shape", [ODD_N, ODD_N_ONLY], ids=["odd_n_odd_k", "odd_n"])
@pytest.mark.parametrize("name", sorted(STAGE_B_SWITCHES))
def test_stage_b_makes_a_misaligned_b_readable(device, name, shape, dtype):
    # TMA reads B (and A, staged where K is odd) through descriptors; C (odd N) is stored by pointers
    cfg = dict(BASE, STAGE_B=True, **STAGE_B_SWITCHES[name])
    if cfg["TMA"] and (shape[2] * element_size(dtype)) % 16:
        cfg["STAGE_A"] = True
    result = run(device, shape, dtype, cfg)
    assert result.ok, result.reason


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", ["pointers", "splitk3_two_pass"])
def test_stage_b_beside_a_staged_a_on_pointer_loads(device, name):
    # (the TMA cases above stage A where K is odd; these are both copies with pointer loads)
    result = run(device, ODD_N, "float16", dict(BASE, STAGE_A=True, STAGE_B=True, **STAGE_B_SWITCHES[name]))
    assert result.ok, result.reason


@pytest.mark.parametrize("tma", [False, True])
def test_stage_b_keeps_a_k_major_b_k_major(device, tma):
    """B as the transpose of an [N, K] tensor with odd K: staged as [N, K] rows, read as B_KMAJOR."""
    a = torch.randn(100, 130, device=device, dtype=torch.float16)
    b_t = torch.randn(45, 130, device=device, dtype=torch.float16)
    staged, cols = mm.stage_b(b_t.t())
    assert staged.stride(0) == 1 and staged.stride(1) == 192 and cols == 45  # 260 B -> 384 B rows
    out = torch.empty(100, 45, device=device, dtype=torch.float16)
    poison(out)
    mm.launch_gemm(a, b_t.t(), out, dict(BASE, STAGE_A=tma, STAGE_B=True, TMA=tma))
    assert check(out, a.double() @ b_t.double().t()).ok


def test_stage_b_buffer_has_aligned_rows():
    from kernelevolve.kernels.gemm_tiles import tma_compatible
    b = torch.randn(7, 45).half()
    staged, cols = mm.stage_b(b)
    assert staged.shape == b.shape and torch.equal(staged, b)
    # 45 halves (90 B) -> a 64-half (128 B) pitch, which the pointer loads may read and wrap at
    # (tma_compatible checks the base address too: 16-byte aligned, as the allocator gives it)
    assert staged.stride() == (64, 1) and cols == 64 and tma_compatible(staged) is None
    f32 = torch.randn(7, 45)
    assert mm.stage_b(f32)[0].stride() == (64, 1) and mm.stage_b(f32)[1] == 64  # 180 B -> 256 B
    aligned = torch.randn(7, 48).half()
    assert mm.stage_b(aligned)[0] is aligned and mm.stage_b(aligned)[1] == 48


def test_tma_loads_with_a_misaligned_c_store_by_pointers(device):
    """N=45 with B given K-major (aligned 272-byte rows of [N, K]): TMA reads A and B, while C's
    90-byte rows take pointer stores, no staging needed."""
    a = torch.randn(100, 136, device=device, dtype=torch.float16)
    b_t = torch.randn(45, 136, device=device, dtype=torch.float16)
    for extra in ({}, dict(PERSISTENT=True), dict(PERSISTENT=True, EPILOGUE_SUBTILE=True)):
        out = torch.empty(100, 45, device=device, dtype=torch.float16)
        poison(out)
        mm.launch_gemm(a, b_t.t(), out, dict(BASE, TMA=True, **extra))
        assert check(out, a.double() @ b_t.double().t()).ok, extra


def test_tma_stores_a_c_whose_rows_are_padded(device):
    """N=45 with C made as the kernels make it (kernels/gemm_tiles.py output_for: rows of 48): its rows
    are aligned and their padding is C's own, so TMA stores it (on a GPU a TMA store writes on to
    the row's next 16 bytes: the padding, which nothing reads)."""
    a = torch.randn(100, 136, device=device, dtype=torch.float16)
    b_t = torch.randn(45, 136, device=device, dtype=torch.float16)
    for extra in ({}, dict(PERSISTENT=True), dict(PERSISTENT=True, EPILOGUE_SUBTILE=True)):
        out = gemm_tiles.output_for(100, 45, a)
        poison(out.as_strided((100, 48), (48, 1)))
        assert gemm_tiles.tma_storable(out)  # what makes launch_gemm store by TMA
        mm.launch_gemm(a, b_t.t(), out, dict(BASE, TMA=True, **extra))
        assert check(out, a.double() @ b_t.double().t()).ok, extra


def test_a_c_inside_a_wider_buffer_keeps_its_neighbours(device):
    """C = the first 45 columns of a [100, 64] buffer (a slice of a concatenation): a TMA store
    would write columns 45-47 too (gemm_tiles.tma_storable), so C is stored by pointers and the
    buffer's other columns keep what they held."""
    a = torch.randn(100, 136, device=device, dtype=torch.float16)
    b_t = torch.randn(45, 136, device=device, dtype=torch.float16)
    wide = torch.full((100, 64), 7.0, device=device, dtype=torch.float16)
    out = wide[:, :45]
    assert gemm_tiles.tma_compatible(out) is None and not gemm_tiles.tma_storable(out)
    for extra in ({}, dict(PERSISTENT=True)):
        mm.launch_gemm(a, b_t.t(), out, dict(BASE, TMA=True, **extra))
        assert check(out, a.double() @ b_t.double().t()).ok, extra
        assert (wide[:, 45:] == 7.0).all(), extra


def test_tma_usable_follows_the_staging():
    a_odd, b_odd = torch.randn(8, 13).half(), torch.randn(13, 45).half()
    a, b = torch.randn(8, 16).half(), torch.randn(16, 48).half()
    tma = dict(TMA=True)
    assert mm.tma_usable({}, a_odd, b_odd) and mm.tma_usable(tma, a, b)
    assert not mm.tma_usable(tma, a, b_odd) and mm.tma_usable(dict(tma, STAGE_B=True), a, b_odd)
    assert not mm.tma_usable(dict(tma, STAGE_B=True), a_odd, b_odd)
    assert mm.tma_usable(dict(tma, STAGE_A=True, STAGE_B=True), a_odd, b_odd)
    assert not mm.tma_usable(dict(tma, STAGE_A=True, STAGE_B=True), a_odd.t().contiguous().t(), b_odd)


def test_aligned_rows_copies_only_what_needs_it():
    from kernelevolve.kernels.gemm_tiles import aligned_rows, tma_compatible
    odd = torch.randn(5, 13).half()
    staged = aligned_rows(odd)
    assert staged.shape == odd.shape and torch.equal(staged, odd)
    assert staged.stride() == (64, 1) and tma_compatible(staged) is None  # 13 -> 64 halves (128 B)
    even = torch.randn(5, 16).half()
    assert aligned_rows(even) is even


@pytest.mark.parametrize("name", sorted(WS_SWITCHES))
def test_warp_specialize_loop_logic(device, name):
    result = run(device, TMA_ODD, "float16", dict(BASE, num_warps=4, **WS_SWITCHES[name]))
    assert result.ok, result.reason


def test_even_k_is_set_from_the_shape():
    assert mm.even_k(128, BASE) and mm.even_k(64, BASE)
    assert not mm.even_k(130, BASE) and not mm.even_k(16, BASE)


@pytest.mark.parametrize("tma", [False, True])
def test_b_as_transposed_view(device, tma):
    """B given as the transpose of an [N, K] tensor (K contiguous): strides for pointer loads,
    an [N, K] descriptor transposed in registers for TMA."""
    a = torch.randn(100, 136, device=device, dtype=torch.float16)
    b_t = torch.randn(72, 136, device=device, dtype=torch.float16)
    out = torch.empty(100, 72, device=device, dtype=torch.float16)
    poison(out)
    mm.launch_gemm(a, b_t.t(), out, dict(BASE, TMA=tma))
    assert check(out, a.double() @ b_t.double().t()).ok


def test_configs_without_the_new_switches_still_launch(device):
    old = {k: v for k, v in BASE.items() if k not in mm.SWITCH_DEFAULTS}
    assert run(device, ODD, "float16", old).ok
    assert mm.matmul(torch.ones(5, 3, device=device), torch.ones(3, 4, device=device), old).sum() == 60


@pytest.mark.parametrize("cfg,words", [
    (dict(TMA=True), "16 B"),  # ODD: K*2 = 260 bytes per row
    (dict(TMA=True, STAGE_A=True), "cannot read b"),  # ODD_N: N*2 = 90 bytes per row of B
    (dict(PERSISTENT=True, SPLIT_K=2), "SPLIT_K=1"),
    (dict(WARP_SPECIALIZE=True), "needs TMA"),
    (dict(SPLIT_K=2, SPLIT_K_REDUCE="tree"), "SPLIT_K_REDUCE"),
])
def test_launcher_rejects_impossible_switches(device, cfg, words):
    with pytest.raises(ValueError, match=words):
        run(device, ODD_N if cfg.get("STAGE_A") else ODD, "float16", dict(BASE, **cfg))


def test_amd_options_reach_the_launch_only_when_configured():
    assert launch_options(BASE) == {"num_warps": 4, "num_stages": 3}
    amd = dict(BASE, waves_per_eu=2, matrix_instr_nonkdim=16, kpack=2)
    assert launch_options(amd) == {"num_warps": 4, "num_stages": 3, "waves_per_eu": 2,
                                   "matrix_instr_nonkdim": 16, "kpack": 2}


HOPPER_BF16 = [  # (shape, config): every config valid in the h100 space for its shape
    ((1000, 1024, 4000), dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3)),
    ((4000, 4096, 1024), dict(BLOCK_M=128, BLOCK_N=256, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3,
                              TMA=True, PERSISTENT=True)),
    ((1000, 1024, 4000), dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=4,
                              TMA=True, WARP_SPECIALIZE=True)),
    ((4000, 4096, 1024), dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=3,
                              TMA=True, WARP_SPECIALIZE=True, PERSISTENT=True)),
    ((64, 128, 8192), dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, GROUP_M=1, num_warps=4, num_stages=3, SPLIT_K=4,
                           SPLIT_K_REDUCE="two_pass", TMA=True, WARP_SPECIALIZE=True)),
    ((4000, 4096, 1024), dict(BLOCK_M=128, BLOCK_N=256, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3,
                              TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True, HOST_DESCRIPTORS=True)),
    ((1000, 1000, 392), dict(BLOCK_M=64, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=4,
                             TMA=True, HOST_DESCRIPTORS=True)),
]
HOPPER_IDS = ["pointers", "tma-persistent", "tma-ws", "tma-ws-persistent", "tma-ws-splitk-two-pass",
              "tma-persistent-subtile-host-descriptors", "tma-host-descriptors-ragged"]


@pytest.mark.parametrize("shape,cfg", HOPPER_BF16, ids=HOPPER_IDS)
def test_gpu_configs_are_valid_in_the_h100_space(shape, cfg):
    from kernelevolve.search_spaces.matmul import space
    from kernelevolve.tuner.experiment.hardware import profile
    problem = mm.MatmulProblem(M=shape[0], N=shape[1], K=shape[2], dtype="bfloat16")
    assert space(problem, profile("h100")).violations(dict(mm.DEFAULT_CONFIG, **cfg)) == []


@pytest.mark.gpu
@pytest.mark.parametrize("shape,cfg", HOPPER_BF16, ids=HOPPER_IDS)
def test_hopper_switches_bf16_on_gpu(device, shape, cfg):
    result = run(device, shape, "bfloat16", dict(mm.DEFAULT_CONFIG, **cfg))
    assert result.ok, result.reason


def _counted_in_kernel(kind: str):
    """(config, problem) of a GEMM whose partial sums meet in the kernel on arrival counters:
    split-K's in-kernel reduce, or the tail split on 1.5 waves of this GPU's programs."""
    if kind == "split_k":
        return (dict(BASE, BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, SPLIT_K=4, SPLIT_K_REDUCE="in_kernel"),
                mm.MatmulProblem(M=192, N=160, K=2048, dtype="float16"))
    rows = -(-(gemm_tiles.program_slots(torch.device("cuda")) * 3 // 2) // 6)
    return dict(BASE, PERSISTENT=True, SPLIT_TAIL=True), mm.MatmulProblem(M=64 * rows - 7, N=192, K=520, dtype="float16")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["split_k", "split_tail"])
@pytest.mark.parametrize("warm_first", [True, False], ids=["eager-warm-up", "captured-cold"])
def test_split_k_in_kernel_replays_right_in_cuda_graphs(monkeypatch, warm_first, kind):
    """Captured with the counters an eager launch made, or with its own made inside the capture
    (zeroed at each replay): every replay right, and a second graph beside the first too."""
    monkeypatch.setattr(gemm_tiles, "_ARRIVALS", {})
    cfg, problem = _counted_in_kernel(kind)
    inputs = mm.make_inputs(problem, torch.device("cuda"), 0)
    want = mm.reference(inputs)
    outs, graphs = [], []
    for _ in range(2):
        out = mm.make_output(problem, inputs)
        if warm_first:
            mm.launch(inputs, out, cfg)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            mm.launch(inputs, out, cfg)
        outs.append(out)
        graphs.append(graph)
    for _ in range(3):
        for graph, out in zip(graphs, outs):
            poison(out)
            graph.replay()
            torch.cuda.synchronize()
            result = check(out, want)
            assert result.ok, result.reason
