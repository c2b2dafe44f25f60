"""The correctness check never passes NaN, an unwritten region, or a wrong tile."""
import os

import torch

from kernelevolve.tuner.measure.verify import check, poison


def _ref():
    torch.manual_seed(0)
    return torch.randn(64, 48, dtype=torch.float64)


def test_correct_output_passes_per_dtype():
    ref = _ref()
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        assert check(ref.to(dtype), ref).ok


def test_nan_fails():
    ref = _ref()
    out = ref.to(torch.float16)
    out[3, 4] = float("nan")
    c = check(out, ref)
    assert not c.ok and "NaN" in c.reason


def test_poisoned_unwritten_region_fails():
    ref = _ref()
    out = torch.empty(64, 48, dtype=torch.float16)
    poison(out)
    out[:32] = ref[:32].to(torch.float16)  # half the output never written
    assert not check(out, ref).ok


def test_one_wrong_element_fails():
    ref = _ref()
    out = ref.to(torch.float32).clone()
    out[10, 10] += 0.2  # one element off by 0.2 RMS: the Frobenius error alone would pass
    c = check(out, ref)
    assert not c.ok and "element" in c.reason


def test_shape_mismatch_fails():
    assert not check(torch.zeros(3, 3), torch.zeros(3, 4, dtype=torch.float64)).ok


def test_heavy_tailed_output_rounded_to_bf16_passes():
    # softmax-like: a few probabilities near 1, most tiny; bf16 rounding of the big ones is many
    # times the RMS, and still exactly what the dtype allows
    torch.manual_seed(1)
    ref = torch.softmax(torch.randn(64, 3000, dtype=torch.float64) * 3, dim=-1)
    assert check(ref.to(torch.bfloat16), ref).ok
    bad = ref.to(torch.bfloat16)
    bad[5, 7] = bad[5, 7] * 1.2 + 1e-3  # 20% off on one element is not rounding
    assert not check(bad, ref).ok


# -- tolerances scaled by dtype and declared reduction length (calibration: verify.py's docstring)
import pytest  # noqa: E402

from kernelevolve.tuner.measure.verify import rel_fro_bound, tolerance_for  # noqa: E402


def _gemm(dt, K, fp16_acc=False, M=64, N=64, block_k=32, seed=0):
    """(output, float64 reference) of a GEMM emulated in torch: fp32 accumulation (honest), or an
    fp16 running sum of each block_k partial product (the cheat)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(M, K, generator=g).to(dt)
    b = torch.randn(K, N, generator=g).to(dt)
    ref = a.double() @ b.double()
    if not fp16_acc:
        return (a.float() @ b.float()).to(dt), ref
    acc = torch.zeros(M, N, dtype=torch.float16)
    for k in range(0, K, block_k):
        acc = (acc.float() + a[:, k:k + block_k].float() @ b[k:k + block_k].float()).half()
    return acc.to(dt), ref


@pytest.mark.parametrize("K", [4096, 16384])
def test_honest_fp16_gemm_passes_fp16_accumulation_fails(K):
    out, ref = _gemm(torch.float16, K)
    assert check(out, ref, tolerance_for(torch.float16, K)).ok
    cheat, ref = _gemm(torch.float16, K, fp16_acc=True)
    c = check(cheat, ref, tolerance_for(torch.float16, K))
    assert not c.ok and "relative error" in c.reason


def test_bf16_gemm_accumulating_in_bf16_fails_at_large_k():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(64, 8192, generator=g).bfloat16(), torch.randn(8192, 64, generator=g).bfloat16()
    ref = a.double() @ b.double()
    assert check((a.float() @ b.float()).bfloat16(), ref, tolerance_for(torch.bfloat16, 8192)).ok
    acc = torch.zeros(64, 64, dtype=torch.bfloat16)
    for k in range(0, 8192, 32):
        acc = (acc.float() + a[:, k:k + 32].float() @ b[k:k + 32].float()).bfloat16()
    assert not check(acc, ref, tolerance_for(torch.bfloat16, 8192)).ok


def _tf32(x, truncate):
    i = x.float().view(torch.int32)
    i = (i if truncate else i + 0x1000) & ~0x1FFF
    return i.view(torch.float32)


@pytest.mark.parametrize("truncate", [False, True])
def test_fp32_gemm_with_tf32_operands_passes(truncate):
    # Triton's default fp32 dot on tensor cores: operands rounded (or truncated) to tf32
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(64, 4096, generator=g), torch.randn(4096, 64, generator=g)
    out = _tf32(a, truncate) @ _tf32(b, truncate)
    assert check(out, a.double() @ b.double(), tolerance_for(torch.float32, 4096)).ok


def test_fp16_arithmetic_inside_an_fp32_op_fails():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 1000, generator=g)
    ref = torch.softmax(x.double(), -1)
    assert check(torch.softmax(x, -1), ref, tolerance_for(torch.float32)).ok
    cheat = torch.softmax(x.half(), -1).float()  # claims fp32, computes in fp16
    c = check(cheat, ref, tolerance_for(torch.float32))
    assert not c.ok and "relative error" in c.reason
    # the same output passes the generous per-dtype default: why the evaluator uses tolerance_for
    assert check(cheat, ref).ok


def test_bound_grows_with_reduction_and_never_exceeds_the_default():
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        assert rel_fro_bound(dt, 16384) > rel_fro_bound(dt, 64) >= rel_fro_bound(dt, 1) > 0
        assert tolerance_for(dt, 1 << 30).rel_fro <= TOLERANCES[dt].rel_fro
    assert tolerance_for(torch.int32).rel_fro == tolerance_for(torch.float32).rel_fro


from kernelevolve.tuner.measure.verify import TOLERANCES  # noqa: E402


# -- guards: pristine copies, canaries, perturbation, launch counting, seal, ceilings ----------
from kernelevolve.tuner.experiment import hardware  # noqa: E402
from kernelevolve.tuner.measure import guards, launch_watch, seal  # noqa: E402


def test_guarded_inputs_keep_layout_and_detect_rewrites_and_stray_writes():
    a = torch.randn(8, 5)
    bt = torch.randn(6, 5).t()  # a transposed view: strides kept
    g = guards.guard_inputs((a, bt, 3))
    x, y, k = g.inputs
    assert k == 3 and torch.equal(x, a) and torch.equal(y, bt) and y.stride() == bt.stride()
    assert g.pristine[1].stride() == bt.stride() and torch.equal(g.pristine[1], bt)
    assert g.damage() == ""
    x[2, 3] = 0.0
    assert "rewrote its input #0" in g.damage()
    x[2, 3] = g.pristine[0][2, 3]
    assert g.damage() == ""
    gt = g.guarded[1][1]
    gt.buf[gt.hi + 7] = 0  # one byte past the end of input #1
    assert "canary band around its input #1" in g.damage()
    assert torch.equal(g.pristine[0], a)  # the reference's copy is untouched by either


def test_guarded_copy_of_a_zero_size_and_an_integer_tensor():
    g = guards.guard_inputs((torch.empty(0), torch.arange(10, dtype=torch.int64), torch.ones(3) > 0))
    assert g.inputs[0].numel() == 0 and torch.equal(g.inputs[1], torch.arange(10))
    assert g.damage() == ""
    g.inputs[1][0] = 5
    assert "input #1" in g.damage()


def test_perturbed_moves_one_element_of_each_float_tensor():
    a, idx = torch.randn(100), torch.arange(4)
    pa, pidx = guards.perturbed((a, idx), seed=5)
    assert int((pa != a).sum()) == 1 and torch.equal(pidx, idx)
    assert torch.equal(guards.perturbed((a,), seed=5)[0], pa)  # deterministic


def test_launch_counting_on_the_interpreter(monkeypatch):
    import triton
    import triton.language as tl

    @triton.jit
    def k(x_ptr, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        tl.store(x_ptr + offs, tl.load(x_ptr + offs) + 1)

    x = torch.zeros(16)
    with launch_watch.count_launches(interpreter=True) as n:
        if os.environ.get("TRITON_INTERPRET") == "1":
            k[(1,)](x, BLOCK=16)
            k[(2,)](x, BLOCK=16)
    expected = 2 if os.environ.get("TRITON_INTERPRET") == "1" else 0
    assert n.n == expected and n.route.startswith("interpreter")
    with launch_watch.count_launches(interpreter=True) as n:
        x.add_(1)  # torch only
    assert n.n == 0


def test_launch_hook_is_installed_and_removed():
    import triton

    knobs = getattr(triton, "knobs", None)
    chain = knobs.runtime.launch_enter_hook if knobs is not None else None
    before = list(getattr(chain, "calls", []))
    with launch_watch.count_launches(interpreter=False) as n:
        assert n.route
        if hasattr(chain, "calls"):
            assert n in chain.calls
            chain(None)  # what a compiled launch does
    assert n.n == (1 if hasattr(chain, "calls") else 0)
    assert list(getattr(chain, "calls", [])) == before


def test_seal_notices_a_replaced_check_function(monkeypatch):
    from kernelevolve.tuner.measure import verify

    sealed = seal.HarnessSeal()
    assert sealed.broken() == ""
    monkeypatch.setattr(verify, "check", lambda *a, **k: verify.Check(True, 0.0, 0.0))
    assert "kernelevolve.tuner.measure.verify.check" in sealed.broken()


def test_seal_notices_a_disarmed_library_watch(monkeypatch):
    """The evaluator seals the library watch's mode (launch_watch.library_mode) as it seals its own
    methods: a kernel that makes it record nothing is a replaced harness."""
    from kernelevolve.tuner.measure import launch_watch

    mode = launch_watch.library_mode()
    assert mode is launch_watch.library_mode()  # one class, made once
    sealed = seal.HarnessSeal(owners={mode: ("__torch_dispatch__",)})
    assert sealed.broken() == ""
    monkeypatch.setattr(mode, "__torch_dispatch__", lambda self, func, types, args=(), kwargs=None:
                        func(*args, **(kwargs or {})))
    assert "LibraryCalls.__torch_dispatch__" in sealed.broken()


def test_seal_notices_a_replaced_timer(monkeypatch):
    import time

    import triton.testing

    from kernelevolve.tuner.measure import clocks

    sealed = seal.HarnessSeal()
    assert sealed.broken() == ""
    monkeypatch.setattr(triton.testing, "do_bench", lambda *a, **k: [0.001] * 3)
    monkeypatch.setattr(clocks, "time_wall", lambda *a, **k: (0.001,) * 3)
    monkeypatch.setattr(time, "perf_counter", lambda: 0.0)
    broken = sealed.broken()
    assert all(n in broken for n in ("triton.testing.do_bench", "kernelevolve.tuner.measure.clocks.time_wall",
                                     "time.perf_counter")), broken


def test_ceiling_violation():
    h100 = hardware.profile("h100")
    # 1 GB copied in 0.5 ms is 2 TB/s: possible; in 0.25 ms, 4 TB/s: over 1.15 x 3.02 TB/s
    assert guards.ceiling_violation(0.5, 0.0, 1e9, h100, "bfloat16") == ""
    why = guards.ceiling_violation(0.25, 0.0, 1e9, h100, "bfloat16")
    assert why.startswith("faster than the hardware allows") and "GB/s" in why
    # 8192^3 bf16 GEMM: 1.1e12 flop; 1.0 ms is 1100 TFLOP/s, beyond 1.15 x 742
    flops = 2.0 * 8192 ** 3
    assert "TFLOP/s" in guards.ceiling_violation(1.0, flops, 0.0, h100, "bfloat16")
    assert guards.ceiling_violation(1.6, flops, 0.0, h100, "bfloat16") == ""
    # no ceiling known for that dtype, or the interpreter: nothing to say
    assert guards.ceiling_violation(1e-9, flops, 0.0, hardware.profile("h200"), "float32") == ""
    assert guards.ceiling_violation(1e-9, flops, 1e12, hardware.profile("cpu-interpreter"), "float32") == ""


def test_the_ceiling_holds_an_embedding_bag_to_its_distinct_rows_not_to_every_lookup():
    """8192 bags of 50 ids (uniform) from 200,000 rows of 256 fp32: honest kernels ran at 5.0-5.3
    TB/s of every lookup's row on an H200 (rows named twice come from the chip the second time),
    and the ceiling check, held to every lookup, took them for kernels that skip work. Held to the
    distinct rows a perfect kernel must read (KernelSpec.min_bytes), they pass; a kernel that
    skips most rows still does not."""
    import math

    from kernelevolve.kernels.embedding_bag import EMBEDDING_BAG_BWD, EMBEDDING_BAG_FWD, EmbeddingBagProblem
    from kernelevolve.kernels.spec import least_bytes

    p = EmbeddingBagProblem(num_bags=8192, avg_bag_len=50, dim=256, num_rows=200_000, mode="mean", dtype="float32")
    h200 = hardware.profile("h200")
    every, least = EMBEDDING_BAG_FWD.bytes_moved(p), least_bytes(EMBEDDING_BAG_FWD, p)
    assert 0.4 < least / every < 0.5  # ~410k lookups name ~174k distinct rows
    for ms in (0.08058, 0.08554):  # the two honest candidates the old bound failed
        assert guards.ceiling_violation(ms, 0.0, every, h200, "float32") != ""
        assert guards.ceiling_violation(ms, 0.0, least, h200, "float32") == ""
    assert "faster than the hardware allows" in guards.ceiling_violation(0.02, 0.0, least, h200, "float32")
    # the expectation against a draw of the same ids (make_bags' uniform ids)
    from kernelevolve.kernels.embedding_bag import make_bags

    indices, _, _ = make_bags(p, torch.device("cpu"), seed=3)
    drawn = int(torch.unique(indices).numel())
    n = indices.numel()
    expected = p.num_rows * -math.expm1(n * math.log1p(-1.0 / p.num_rows))
    assert abs(drawn - expected) / expected < 0.01
    # where no row repeats the two agree; the backward's dense gradient is written whole either way
    q = EmbeddingBagProblem(num_bags=64, avg_bag_len=2, dim=64, num_rows=10**9, mode="sum", dtype="float32")
    assert least_bytes(EMBEDDING_BAG_FWD, q) == pytest.approx(EMBEDDING_BAG_FWD.bytes_moved(q), rel=1e-6)
    assert least_bytes(EMBEDDING_BAG_BWD, p) == EMBEDDING_BAG_BWD.bytes_moved(p)
