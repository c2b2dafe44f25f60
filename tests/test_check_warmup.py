"""The judge's check kernels compiled ahead (tuner/measure/check_warmup.py)."""
import os
import subprocess
import sys

import pytest
import torch

from kernelevolve.tuner.measure import check_kernel, check_warmup
from kernelevolve.tuner.measure.guards import as_bytes, words_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_variants_cover_every_check_the_judge_can_launch():
    """Each output dtype the fused check takes, against each reference dtype it takes, and each
    word size an input's bytes are hashed in; each at a length of both classes Triton tells apart."""
    stats = {(o, r) for kind, o, r, _ in check_warmup.variants() if kind == "stats"}
    usable = {(str(o).removeprefix("torch."), str(r).removeprefix("torch."))
              for o in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32)
              for r in (torch.float16, torch.float32, torch.float64)
              if check_kernel.usable(*_fake_cuda(o, r))}
    assert stats == usable
    words = {str(words_of(as_bytes(torch.zeros(n, dtype=torch.uint8))).dtype).removeprefix("torch.")
             for n in (8, 12, 13)}
    assert {w for kind, w, _, _ in check_warmup.variants() if kind == "hash"} == words
    for kind in ("stats", "hash"):
        lengths = {n % 16 == 0 for k, _, _, n in check_warmup.variants() if k == kind}
        assert lengths == {True, False}
    # four processes share them, each variant once
    shares = [v for i in range(4) for v in check_warmup.variants()[i::4]]
    assert sorted(shares) == sorted(check_warmup.variants())


def _fake_cuda(out_dtype, ref_dtype):
    class T:
        def __init__(self, dtype):
            self.dtype, self.device, self.is_cuda = dtype, "cuda:0", True

        def is_contiguous(self):
            return True

        def numel(self):
            return 1000
    out, ref = T(out_dtype), T(ref_dtype)
    ref.device = out.device
    return out, ref


@pytest.mark.gpu
def test_after_the_warm_up_the_judges_checks_compile_nothing(tmp_path):
    """In a fresh Triton cache: the warm-up (on meta tensors) leaves every kernel a check of each
    variant launches in the cache, so checks afterwards add nothing to it."""
    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=ROOT, TRITON_DEFAULT_FP_FUSION="1")
    warm = ("import torch; from kernelevolve.tuner.measure import check_warmup as c; "
            "n, _ = c.compile_share(0, 1); print(n)")
    out = subprocess.run([sys.executable, "-c", warm], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) >= len(check_warmup.variants())
    before = sorted(os.listdir(tmp_path / "cache"))
    use = ("import torch; from kernelevolve.tuner.measure import check_kernel as k, check_warmup as c\n"
           "for kind, d, r, n in c.variants():\n"
           "    if kind == 'stats':\n"
           "        k.stats(torch.ones(n, dtype=getattr(torch, d), device='cuda'),"
           " torch.ones(n, dtype=getattr(torch, r), device='cuda'), 1e-2, 1e-2).tolist()\n"
           "    else:\n"
           "        k.word_hash(torch.zeros(n, dtype=getattr(torch, d), device='cuda'),"
           " torch.ones(k.HASH_KEYS, dtype=torch.int64, device='cuda')).item()\n")
    out = subprocess.run([sys.executable, "-c", use], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "cache")) == before
