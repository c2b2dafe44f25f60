"""The correctness check never passes NaN, an unwritten region, or a wrong tile."""
import torch

from tuner.measure.verify import check, poison


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
