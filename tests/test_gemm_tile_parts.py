"""Tiles widened past a power of two (EXTRA_M / EXTRA_N, kernels/gemm_tile_parts.py), against the
float64 reference: every part (main, extra rows, extra columns, corner), on ragged and even
shapes, with pointer and descriptor loads and stores, a fused epilogue, a staged B (odd N), a
K-major B and fp8 scales; the launcher's refusals and the rules that keep the search to what
compiles. On the CPU the interpreter runs them; on a GPU every test here runs compiled, and the
gpu-marked ones run Hopper-sized tiles in bf16 (which the interpreter garbles)."""
import pytest
import torch
from recorded_launches import RecordedLaunches

from kernelevolve.kernels import matmul as mm
from kernelevolve.kernels import gemm_tiles
from kernelevolve.kernels.gemm_tile_parts import extra_size, tile_size
from kernelevolve.search_spaces.gemm_resources import accumulator_regs, shared_memory_bytes
from kernelevolve.search_spaces.gemm_rules import GemmShape, Rule
from kernelevolve.search_spaces.matmul import space
from kernelevolve.tuner.experiment.hardware import profile
from kernelevolve.tuner.measure.verify import check, poison

BASE = dict(mm.DEFAULT_CONFIG, BLOCK_M=32, BLOCK_N=32, BLOCK_K=16)
PARTS = {  # (EXTRA_M, EXTRA_N, block changes): which parts exist
    "rows": (0.5, 0, {}), "cols": (0, 0.5, {}), "both": (0.5, 0.5, {}),
    "quarter-rows-half-cols": (0.25, 0.5, dict(BLOCK_M=64)),  # 64 + 16 rows
}
RAGGED = (100, 72, 48)  # neither side a multiple of the widened tile; rows of 16-byte multiples (TMA)
EVEN = (96, 96, 64)  # 48 x 48 tiles fill it exactly


def run(device, shape, dtype, cfg):
    M, N, K = shape
    problem = mm.MatmulProblem(M=M, N=N, K=K, dtype=dtype)
    inputs = mm.make_inputs(problem, device, 0)
    out = mm.make_output(problem, inputs)
    poison(out)
    mm.launch(inputs, out, cfg)
    return check(out, mm.reference(inputs))


@pytest.mark.parametrize("tma", [False, True], ids=["pointers", "tma"])
@pytest.mark.parametrize("shape", [RAGGED, EVEN], ids=["ragged", "even"])
@pytest.mark.parametrize("parts", sorted(PARTS))
def test_every_part_of_a_widened_tile_is_computed_and_stored(device, parts, shape, tma):
    extra_m, extra_n, blocks = PARTS[parts]
    cfg = dict(BASE, TMA=tma, EXTRA_M=extra_m, EXTRA_N=extra_n, **blocks)
    assert min(extra_size(cfg["BLOCK_M"], extra_m) or 16, extra_size(cfg["BLOCK_N"], extra_n) or 16) >= 16
    result = run(device, shape, "float16", cfg)
    assert result.ok, result.reason


@pytest.mark.parametrize("tma", [False, True], ids=["pointers", "tma"])
@pytest.mark.parametrize("loop", [dict(PERSISTENT=True), dict(PERSISTENT=True, FLATTEN=True)],
                         ids=["persistent", "flattened"])
def test_a_persistent_loop_of_widened_tiles_computes_every_tile(device, loop, tma):
    """More tiles than programs (a persistent loop's whole point): 100 x 72 in 48 x 40 tiles is
    3 x 2 = 6 tiles, looped over by the interpreter's 4 programs (one per SM on a GPU: there the
    gpu-marked test below gives each program several)."""
    cfg = dict(BASE, TMA=tma, EXTRA_M=0.5, EXTRA_N=0.25, BLOCK_N=32, **loop)
    result = run(device, RAGGED, "float16", cfg)
    assert result.ok, result.reason


def test_a_widened_tile_covers_the_output_in_fewer_programs(monkeypatch):
    """The grid counts widened tiles: 100 x 72 in 48 x 48 tiles is 3 x 2 programs, not 4 x 3."""
    from kernelevolve.kernels import gemm_tile_parts

    kernel = RecordedLaunches()
    monkeypatch.setattr(gemm_tile_parts, "parted_kernel", kernel)
    a, b = torch.randn(100, 48).half(), torch.randn(48, 72).half()
    mm.launch_gemm(a, b, torch.empty(100, 72).half(), dict(BASE, EXTRA_M=0.5, EXTRA_N=0.5))
    assert kernel.grids == [(3 * 2,)]
    monkeypatch.setattr(gemm_tiles, "program_slots", lambda device: 2)  # 2 SMs: persistent, one each
    mm.launch_gemm(a, b, torch.empty(100, 72).half(), dict(BASE, EXTRA_M=0.5, EXTRA_N=0.5, PERSISTENT=True))
    assert kernel.grids[-1] == (2,) and kernel.launches[-1][1]["PERSISTENT"]
    mm.launch_gemm(a, b, torch.empty(100, 72).half(), dict(BASE, EXTRA_M=0.5, EXTRA_N=0.5, PERSISTENT=True,
                                                           PROGRAMS_PER_SM=2))
    assert kernel.grids[-1] == (4,)
    assert tile_size(dict(BASE, EXTRA_M=0.5, EXTRA_N=0.25)) == (48, 40)


@pytest.mark.parametrize("tma", [False, True], ids=["pointers", "tma"])
def test_the_fused_epilogue_runs_on_every_part(device, tma):
    torch.manual_seed(0)
    M, N, K = RAGGED
    x = torch.randn(M, K, device=device).half()
    w = torch.randn(N, K, device=device).half()  # the layer's weight: B is its K-major view
    bias = torch.randn(N, device=device).half()
    residual = torch.randn(M, N, device=device).half()
    cfg = dict(BASE, TMA=tma, EXTRA_M=0.5, EXTRA_N=0.5)
    out = torch.empty(M, N, device=device).half()
    mm.launch_gemm(x, w.t(), out, cfg, mm.Epilogue(bias=bias, activation="gelu", residual=residual))
    want = torch.nn.functional.gelu(x.double() @ w.double().t() + bias.double()) + residual.double()
    assert check(out, want).ok


@pytest.mark.parametrize("tma", [False, True], ids=["pointers", "tma"])
def test_a_staged_b_of_odd_n_and_a_k_major_b(device, tma):
    assert run(device, (100, 71, 48), "float16", dict(BASE, TMA=tma, STAGE_B=True, EXTRA_N=0.5)).ok
    torch.manual_seed(1)
    a = torch.randn(100, 48, device=device).half()
    b_t = torch.randn(72, 48, device=device).half()
    out = torch.empty(100, 72, device=device).half()
    mm.launch_gemm(a, b_t.t(), out, dict(BASE, TMA=tma, EXTRA_M=0.5, EXTRA_N=0.5))
    assert check(out, a.double() @ b_t.double().t()).ok


@pytest.mark.parametrize("bad", [dict(SPLIT_K=2), dict(TMA=True, WARP_SPECIALIZE=True),
                                 dict(TMA=True, PERSISTENT=True, EPILOGUE_SUBTILE=True), dict(num_ctas=2)],
                         ids=["split-k", "warp-specialized", "subtiled", "clusters"])
def test_the_launcher_refuses_what_widened_tiles_leave_out(bad):
    a, b = torch.randn(64, 64).half(), torch.randn(64, 64).half()
    with pytest.raises(ValueError, match="EXTRA_M / EXTRA_N widen"):
        mm.launch_gemm(a, b, torch.empty(64, 64).half(), dict(BASE, EXTRA_M=0.5, **bad))
    with pytest.raises(ValueError, match="must be one of"):
        mm.launch_gemm(a, b, torch.empty(64, 64).half(), dict(BASE, EXTRA_M=0.3))


HOPPER = profile("h100")
SHAPE = GemmShape(5472, 416, 1488, 2, 2)
GOOD = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, SPLIT_K=1, num_warps=4, num_stages=4,
            TMA=True, EXTRA_M=0.5)


def verdict(cfg, kind, shape=SHAPE):
    return Rule(kind, shape, HOPPER)(cfg)


def test_the_rules_count_the_widened_tile_and_keep_it_whole(monkeypatch):
    # the models see the whole 192 x 128 tile: its stages, its accumulator
    assert shared_memory_bytes(GOOD, 2, 2) == 4 * (192 + 128) * 64 * 2 + 1024
    assert accumulator_regs(GOOD) == 192 * 128 / 128
    assert verdict(GOOD, "registers") is None  # 192 registers: compiled without spills (gemm_rules)
    assert "registers" in verdict(dict(GOOD, EXTRA_N=0.5), "registers")  # 192 x 192 in 4 warps: 288
    assert verdict(GOOD, "tile_parts") is None
    for bad in (dict(SPLIT_K=2), dict(WARP_SPECIALIZE=True), dict(EPILOGUE_SUBTILE=True),
                dict(num_ctas=2), dict(SPLIT_TAIL=True)):
        assert "widen whole tiles" in verdict(dict(GOOD, **bad), "tile_parts")
    # in a persistent loop too, where it has widened tiles to share out: 5472 x 416 in 192 x 128
    # tiles is 29 x 4 = 116 <= 132 SMs, nothing to loop over
    # the launcher takes them in a persistent loop; the search does not (gemm_rules
    # SEARCH_PERSISTENT_PARTS: measured slower in every pair)
    assert "36 of 36" in verdict(dict(GOOD, PERSISTENT=True, FLATTEN=True), "tile_parts")
    assert "116 tiles" in verdict(dict(GOOD, PERSISTENT=True), "persistent")
    from kernelevolve.search_spaces import gemm_rules
    monkeypatch.setattr(gemm_rules, "SEARCH_PERSISTENT_PARTS", True)  # a plug-in space that searches them
    assert verdict(dict(GOOD, PERSISTENT=True, FLATTEN=True), "tile_parts") is None
    assert "needs TMA" in verdict(dict(GOOD, PERSISTENT=True, FLATTEN=True, TMA=False), "tile_parts")
    assert verdict(dict(GOOD, PERSISTENT=True), "persistent", GemmShape(16624, 4048, 144, 2, 2)) is None
    # a persistent TMA loop keeps the whole widened tile of C staged: 3 stages of 192 + 128 rows
    assert shared_memory_bytes(dict(GOOD, PERSISTENT=True, num_stages=3), 2, 2) == (
        3 * (192 + 128) * 64 * 2 + 1024 + 192 * 128 * 2)
    assert "smallest side" in verdict(dict(GOOD, BLOCK_M=32, EXTRA_M=0.25), "tile_parts")  # 8 rows
    assert "mma.sync" in verdict(dict(GOOD, EXTRA_M=0.25), "tile_parts")  # 32 rows: no wgmma on Hopper
    assert verdict(dict(GOOD, EXTRA_M=0, EXTRA_N=0.25), "tile_parts") is None  # 32 columns: wgmma takes them
    assert verdict(dict(GOOD, BLOCK_M=256, EXTRA_M=0.25, num_warps=8), "tile_parts") is None
    # a block as long as the problem leaves the extra part empty
    assert "would hold nothing" in verdict(dict(GOOD, EXTRA_M=0, EXTRA_N=0.5, BLOCK_N=512), "tile_parts")
    assert "would hold nothing" in verdict(GOOD, "tile_parts", GemmShape(128, 416, 1488, 2, 2))


def test_hopper_spaces_search_widened_tiles_only_when_switched_on_and_bmm_never(monkeypatch):
    from kernelevolve.kernels.bmm import BmmProblem
    from kernelevolve.search_spaces import matmul as matmul_space
    from kernelevolve.search_spaces.bmm import space as bmm_space

    problem = mm.MatmulProblem(M=5472, N=416, K=1488, dtype="float16")
    monkeypatch.setattr(matmul_space, "SEARCH_TILE_PARTS", False)
    assert "EXTRA_M" not in [d.name for d in space(problem, HOPPER).domains]
    monkeypatch.setattr(matmul_space, "SEARCH_TILE_PARTS", True)
    sp = space(problem, HOPPER)
    names = [d.name for d in sp.domains]
    assert "EXTRA_M" in names and "EXTRA_N" in names
    assert sp.enumerable()  # 11M raw points, the tree walk prunes them where excluded (ENUMERATE_MAX)
    assert not sp.violations(sp.complete(GOOD))
    bmm = bmm_space(BmmProblem(B=2, M=256, N=256, K=256), HOPPER)
    assert "EXTRA_M" not in [d.name for d in bmm.domains]
    assert not [r for r in bmm.constraints if r.kind in ("tile_parts", "host_descriptors")]  # not its switches
    assert "EXTRA_M" not in [d.name for d in space(mm.MatmulProblem(M=64, N=64, K=64), profile("a100")).domains]


@pytest.mark.parametrize("changes, host", [(dict(TMA=True), True), (dict(TMA=True, EXTRA_M=0.5), True),
                                           (dict(TMA=True, WARP_SPECIALIZE=True), False), (dict(TMA=True, num_ctas=2), False),
                                           ({}, False), (dict(TMA=True, HOST_DESCRIPTORS=False), False)],
                         ids=["tma", "widened", "warp-specialized", "clusters", "pointers", "forced-device"])
def test_descriptors_are_made_on_the_host_wherever_they_compile(monkeypatch, changes, host):
    """HOST_DESCRIPTORS 'auto' (the default) was as fast or faster in 27 of 28 pairs timed
    (kernels/matmul.py): the launcher makes them on the host unless that does not compile."""
    from kernelevolve.kernels import gemm_tile_parts

    kernel = RecordedLaunches()  # either kernel: the template's or the widened tiles'
    monkeypatch.setattr(mm, "matmul_kernel", kernel)
    monkeypatch.setattr(gemm_tile_parts, "parted_kernel", kernel)
    a, b = torch.randn(256, 64).half(), torch.randn(64, 256).half()
    mm.launch_gemm(a, b, torch.empty(256, 256).half(), dict(BASE, BLOCK_M=64, **changes))
    assert [kwargs["HOST_DESCRIPTORS"] for _, kwargs in kernel.launches] == [host]
    with pytest.raises(ValueError, match="no WARP_SPECIALIZE"):
        mm.launch_gemm(a, b, torch.empty(256, 256).half(), dict(BASE, TMA=True, WARP_SPECIALIZE=True,
                                                                HOST_DESCRIPTORS=True))
    assert "fails to compile" in verdict(dict(GOOD, EXTRA_M=0, WARP_SPECIALIZE=True, HOST_DESCRIPTORS=True),
                                         "host_descriptors")
    assert verdict(dict(GOOD, EXTRA_M=0, WARP_SPECIALIZE=True), "host_descriptors") is None  # auto: on the device


HOPPER_TILES = {  # the tiles cuBLAS ran the suite's aligned GEMMs with, in bf16, compiled
    "192x128-tma": dict(BLOCK_M=128, BLOCK_N=128, EXTRA_M=0.5, TMA=True, num_warps=4, num_stages=4),
    "128x192-tma": dict(BLOCK_M=128, BLOCK_N=128, EXTRA_N=0.5, TMA=True, num_warps=8, num_stages=3),
    "160x128-pointers": dict(BLOCK_M=128, BLOCK_N=128, EXTRA_M=0.25, num_warps=4, num_stages=3),
    "192x96-tma": dict(BLOCK_M=128, BLOCK_N=64, EXTRA_M=0.5, EXTRA_N=0.5, TMA=True, num_warps=4, num_stages=4),
    "256x160-tma": dict(BLOCK_M=256, BLOCK_N=128, EXTRA_N=0.25, TMA=True, num_warps=8, num_stages=3),
    "256x160-tma-persistent-flattened": dict(BLOCK_M=256, BLOCK_N=128, BLOCK_K=32, EXTRA_N=0.25, TMA=True,
                                             num_warps=8, num_stages=4, PERSISTENT=True, FLATTEN=True),
    "192x192-tma-persistent": dict(BLOCK_M=128, BLOCK_N=128, EXTRA_M=0.5, EXTRA_N=0.5, TMA=True, num_warps=8,
                                   num_stages=3, PERSISTENT=True),
    "192x128-pointers-persistent-flattened": dict(BLOCK_M=128, BLOCK_N=128, EXTRA_M=0.5, num_warps=4,
                                                  num_stages=3, PERSISTENT=True, FLATTEN=True),
}


@pytest.mark.gpu
@pytest.mark.parametrize("host", [False, True], ids=["device-descriptors", "host-descriptors"])
@pytest.mark.parametrize("shape", [(5472, 416, 1488), (1000, 1000, 392), (4000, 2000, 392)],
                         ids=["suite-shape", "ragged", "many-tiles"])  # many: 336 tiles of 192 x 128, > 132 SMs
@pytest.mark.parametrize("name", sorted(HOPPER_TILES))
def test_hopper_sized_widened_tiles_on_gpu(device, name, shape, host):
    cfg = {**mm.DEFAULT_CONFIG, "BLOCK_K": 64, **HOPPER_TILES[name],
           "HOST_DESCRIPTORS": host and HOPPER_TILES[name].get("TMA", False)}
    result = run(device, shape, "bfloat16", cfg)
    assert result.ok, result.reason


@pytest.mark.gpu
@pytest.mark.parametrize("host", [False, True], ids=["device-descriptors", "host-descriptors"])
def test_fp8_scales_on_a_widened_tile_on_gpu(device, host):
    from kernelevolve.kernels import gemm_fp8

    problem = gemm_fp8.Fp8GemmProblem(M=1000, N=1024, K=512)
    inputs = gemm_fp8.make_inputs(problem, device, 0)
    out = gemm_fp8.make_output(problem, inputs)
    gemm_fp8.launch(inputs, out, dict(mm.DEFAULT_CONFIG, BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, TMA=True,
                                      EXTRA_N=0.5, num_warps=8, num_stages=3, HOST_DESCRIPTORS=host))
    assert check(out, gemm_fp8.reference(inputs)).ok
