"""The judge's fused check passes (tuner/measure/check_kernel.py) give the statistics of torch's
path (tuner/measure/verify.py), run here by Triton's interpreter, on the cases a check must tell
apart (on a GPU, compiled): an honest output, a wrong element, NaN left unwritten, inf, a float64 or fp32 reference."""
import pytest
import torch

from kernelevolve.tuner.measure import check_kernel, verify

TOL = verify.TOLERANCES[torch.float16]


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # on a CPU, Triton's interpreter runs them


def _case(kind: str, dtype, ref_dtype, n: int = 3 * check_kernel.BLOCK + 17):
    g = torch.Generator().manual_seed(n)
    ref = torch.randn(n, generator=g, dtype=torch.float64).to(DEVICE)
    out = ref.to(dtype)
    if kind == "wrong_element":
        out[check_kernel.BLOCK + 5] += 3.0
    elif kind == "nan":
        out[7] = float("nan")
    elif kind == "inf":
        out[2 * check_kernel.BLOCK] = float("inf")
    return out, ref.to(ref_dtype)


@pytest.mark.parametrize("kind", ["honest", "wrong_element", "nan", "inf"])
@pytest.mark.parametrize("dtype,ref_dtype", [(torch.float16, torch.float64), (torch.float32, torch.float32)])
def test_fused_stats_match_torch(kind, dtype, ref_dtype):
    out, ref = _case(kind, dtype, ref_dtype)
    fused = check_kernel.stats(out, ref, TOL.rel_elem, TOL.max_rel_rms).tolist()
    plain = verify._stats(out, ref, TOL).tolist()
    assert fused[0] == plain[0]  # non-finite count
    assert fused[1] == pytest.approx(plain[1], rel=1e-6)  # ||ref||
    assert fused[2] == pytest.approx(plain[2], rel=1e-4, abs=1e-9)  # ||out - ref|| over finite elements
    assert fused[3] == pytest.approx(plain[3], rel=1e-4)  # worst ratio
    if kind == "wrong_element":
        assert int(fused[4]) == int(plain[4]) == check_kernel.BLOCK + 5
        assert fused[3] > 1.0


def test_usable_only_where_the_kernel_applies():
    x = torch.zeros(8, dtype=torch.float16)
    assert not check_kernel.usable(x, x.double())  # CPU tensors: torch's path
    assert not check_kernel.usable(torch.zeros(8, dtype=torch.int32), x.double())


def test_more_blocks_than_one_finishing_step_reduces():
    """Outputs of more than RB blocks: the one-program passes walk the partials in steps, and the
    worst element may sit in any step's block."""
    n = (check_kernel.RB + 3) * check_kernel.BLOCK + 5
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(n, generator=g, dtype=torch.float32).to(DEVICE)
    out = ref.to(torch.float16)
    out[n - 2] += 4.0  # in the last, partial block, past the first step of partials
    fused = check_kernel.stats(out, ref, TOL.rel_elem, TOL.max_rel_rms).tolist()
    plain = verify._stats(out, ref, TOL).tolist()
    assert fused[0] == plain[0] == 0
    assert fused[1] == pytest.approx(plain[1], rel=1e-6)
    assert fused[2] == pytest.approx(plain[2], rel=1e-4)
    assert fused[3] == pytest.approx(plain[3], rel=1e-4) and fused[3] > 1.0
    assert int(fused[4]) == int(plain[4]) == n - 2


def test_the_word_hash_changes_with_any_word_and_its_keys():
    from kernelevolve.tuner.measure.fingerprints import Fingerprints

    fp = Fingerprints()
    n = 3 * check_kernel.BLOCK + 11
    words = torch.randint(-(1 << 62), 1 << 62, (n,), dtype=torch.int64).to(DEVICE)
    h = fp.word_hash(words).item()
    keys = fp.hash_keys(words.device)
    assert h == int((words.cpu() * keys.cpu()[torch.arange(n) % check_kernel.HASH_KEYS]).sum())  # sum mod 2^64
    for i in (0, check_kernel.BLOCK + 7, n - 1):
        changed = words.clone()
        changed[i] += 1
        assert fp.word_hash(changed).item() != h
    swapped = words.clone()
    swapped[[3, 4]] = words[[4, 3]]  # the same words in other places
    assert fp.word_hash(swapped).item() != h
    assert Fingerprints().word_hash(words).item() != h  # another judge's secret keys
    small = torch.arange(10, dtype=torch.uint8).to(DEVICE)  # bytes are words too
    assert fp.word_hash(small).item() != fp.word_hash(small.flip(0)).item()
