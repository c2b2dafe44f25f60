"""The GEMM suite's shapes: drawn by a seeded generator from stated distributions, never hand-picked.

generate(n, seed) gives n GEMM shapes (M, N, K, dtype), one draw of `random.Random(seed)`:

  M       log-uniform on [64, 65536] (the batch rows of a ranking model's MLP: a few to many
          thousands), rounded to the nearest integer
  N, K    each log-uniform on [128, 8192] (layer widths), rounded to the nearest integer
  rounding  every shape but the "ragged" ones has M, N and K rounded to the nearest multiple of 16
          (clamped into the range); exactly round(n * RAGGED_SHARE) shapes (RAGGED_SHARE = 0.25,
          the positions drawn) keep M, N and K as drawn, each nudged by one where it happened to
          be a multiple of 16, so none of the three is
  odd K   exactly round(n * ODD_K_SHARE) shapes (ODD_K_SHARE = 0.25, positions drawn independently
          of the ragged ones) get an odd K: K + 1, or K - 1 at the top of the range
  dtype   exactly half bfloat16, half float16 (n odd: the extra one float16), order drawn

fused_layers(n, seed) gives n fused MLP layers (act(A @ B + bias), kernels/gemm_epilogue.py) from
the same distributions (a generator seeded seed + 1, so the GEMM shapes do not change with n),
each with bias and an activation: relu, gelu and silu in turn, the order drawn.

Sharding: shard(jobs, i, n) keeps the jobs whose index j (their position in the suite: GEMM
shapes first, then the fused layers) has j % n == i - 1; the n shards cover every job exactly
once, and the first n jobs land in n different shards (so Helion's shapes, the first few GEMM
shapes, spread over the shards).

For the CPU interpreter (no bf16 there, and tiny sizes) the same generator is called with other
ranges and dtypes (`cpu_suite`).
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

DEFAULT_SEED = 20261126
M_RANGE = (64, 65536)
NK_RANGE = (128, 8192)
RAGGED_SHARE = 0.25
ODD_K_SHARE = 0.25
DTYPES = ("bfloat16", "float16")
ACTIVATIONS = ("relu", "gelu", "silu")
SHORT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


@dataclass(frozen=True)
class Shape:
    index: int  # position in its list (GEMM shapes and fused layers count separately)
    M: int
    N: int
    K: int
    dtype: str
    ragged: bool  # M, N, K left unrounded (none a multiple of 16)
    odd_k: bool
    activation: str | None = None  # fused layers only (with bias)

    @property
    def label(self) -> str:
        tag = f"{'fused' if self.activation else 'gemm'} {self.index:02d}"
        epi = f" +bias +{self.activation}" if self.activation else ""
        return f"{tag} {self.M}x{self.N}x{self.K} {SHORT.get(self.dtype, self.dtype)}{epi}"

    def fields(self) -> dict:
        """The kernel's problem fields (matmul, or gemm_epilogue with bias)."""
        f = dict(M=self.M, N=self.N, K=self.K, dtype=self.dtype)
        if self.activation:
            f.update(activation=self.activation, bias=True)
        return f

    def as_dict(self) -> dict:
        return asdict(self)


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return min(hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi))))))


def _round16(v: int, lo: int, hi: int) -> int:
    r = 16 * round(v / 16)
    while r < lo:
        r += 16
    while r > hi:
        r -= 16
    return r if lo <= r <= hi else v  # a range narrower than 16: leave it


def _not16(v: int, lo: int, hi: int) -> int:
    if v % 16:
        return v
    return v + 1 if v + 1 <= hi else v - 1


def _draw(rng: random.Random, n: int, m_range, nk_range, dtypes, ragged_share, odd_k_share,
          activations=None) -> list[Shape]:
    ragged = set(rng.sample(range(n), round(n * ragged_share)))
    odd = set(rng.sample(range(n), round(n * odd_k_share)))
    dts = [dtypes[0]] * (n // 2) + [dtypes[-1]] * (n - n // 2)
    rng.shuffle(dts)
    acts = None
    if activations:
        acts = (list(activations) * (n // len(activations) + 1))[:n]
        rng.shuffle(acts)
    out = []
    for i in range(n):
        m, nn, k = _log_uniform(rng, *m_range), _log_uniform(rng, *nk_range), _log_uniform(rng, *nk_range)
        if i in ragged:
            m, nn, k = _not16(m, *m_range), _not16(nn, *nk_range), _not16(k, *nk_range)
        else:
            m, nn, k = _round16(m, *m_range), _round16(nn, *nk_range), _round16(k, *nk_range)
        if i in odd and k % 2 == 0:
            k = k + 1 if k + 1 <= nk_range[1] else k - 1
        out.append(Shape(i, m, nn, k, dts[i], i in ragged, i in odd, acts[i] if acts else None))
    return out


def generate(n: int = 24, seed: int = DEFAULT_SEED, *, m_range=M_RANGE, nk_range=NK_RANGE, dtypes=DTYPES,
             ragged_share: float = RAGGED_SHARE, odd_k_share: float = ODD_K_SHARE) -> list[Shape]:
    """n GEMM shapes drawn from the distributions of the module's docstring."""
    return _draw(random.Random(seed), n, m_range, nk_range, dtypes, ragged_share, odd_k_share)


def fused_layers(n: int = 4, seed: int = DEFAULT_SEED, *, m_range=M_RANGE, nk_range=NK_RANGE, dtypes=DTYPES,
                 ragged_share: float = RAGGED_SHARE, odd_k_share: float = ODD_K_SHARE) -> list[Shape]:
    """n fused MLP layers (bias + relu/gelu/silu) from the same distributions, seeded seed + 1."""
    return _draw(random.Random(seed + 1), n, m_range, nk_range, dtypes, ragged_share, odd_k_share, ACTIVATIONS)


CPU_RANGES = dict(m_range=(16, 48), nk_range=(16, 48), dtypes=("float16",))


def cpu_suite(n: int = 2, fused: int = 1, seed: int = DEFAULT_SEED) -> tuple[list[Shape], list[Shape]]:
    """The CPU interpreter's smoke suite: the same generator, tiny ranges, float16 only."""
    return generate(n, seed, **CPU_RANGES), fused_layers(fused, seed, **CPU_RANGES)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' (1 <= i <= n) -> (i, n); None -> (1, 1)."""
    if not text:
        return 1, 1
    i, n = (int(x) for x in text.split("/"))
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: needs 1 <= i <= n")
    return i, n


def shard(jobs: list, i: int, n: int) -> list:
    """The jobs of shard i of n (1-based): those at positions j with j % n == i - 1."""
    return [job for j, job in enumerate(jobs) if j % n == i - 1]
