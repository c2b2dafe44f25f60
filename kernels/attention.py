"""Flash-attention forward: O = softmax(Q K^T / sqrt(d) [+ causal mask]) V without the S x S matrix.

q, k, v, o are [B, H, S, head_dim]. Each program owns BLOCK_M query rows of one (batch, head) and
walks the keys BLOCK_N at a time with the online softmax (a running row max and row sum; the
accumulator is rescaled whenever the max grows), in fp32, with exp2 and the scale folded into
log2(e) / sqrt(d). Causal (a problem field, a constexpr) stops each program at its diagonal.

Switches:
  BLOCK_M, BLOCK_N   query rows per program, keys per step
  SPLIT_MASKED       False: every key block goes through the mask (causal and sequence end).
                     True: the blocks that no mask touches (below the diagonal, before the ragged
                     end) run a copy of the loop without masks or masked loads; only the
                     diagonal / last blocks pay for masking (the Triton tutorial's two-stage loop).
  num_warps / num_stages   warps per program, software-pipeline depth of the key loop
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import triton
import triton.language as tl
from pydantic import BaseModel, ConfigDict, PositiveInt

from kernelevolve.kernels.spec import DTYPES, KernelSpec, check_device, element_size

LOG2E = 1.4426950408889634


class AttentionProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    batch: PositiveInt
    heads: PositiveInt
    seq_len: PositiveInt
    head_dim: Literal[64, 128] = 128
    causal: bool = False
    dtype: Literal["float16", "bfloat16", "float32"] = "bfloat16"


@triton.jit
def _attend(acc, l_i, m_i, q, k_ptr, v_ptr, stride_s, rows, lo, hi, seq_len, qk_scale,
            HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr):
    cols = tl.arange(0, BLOCK_N)
    dh = tl.arange(0, HEAD_DIM)
    for start in range(lo, hi, BLOCK_N):
        n = start + cols
        kt_ptrs = k_ptr + n[None, :] * stride_s + dh[:, None]  # K^T tile [HEAD_DIM, BLOCK_N]
        v_ptrs = v_ptr + n[:, None] * stride_s + dh[None, :]
        if MASKED:
            kt = tl.load(kt_ptrs, mask=n[None, :] < seq_len, other=0.0)
            v = tl.load(v_ptrs, mask=n[:, None] < seq_len, other=0.0)
        else:
            kt = tl.load(kt_ptrs)
            v = tl.load(v_ptrs)
        qk = tl.dot(q, kt) * qk_scale
        if MASKED:
            valid = n[None, :] < seq_len
            if CAUSAL:
                valid = valid & (n[None, :] <= rows[:, None])
            qk = tl.where(valid, qk, -float("inf"))
        m_new = tl.maximum(m_i, tl.max(qk, axis=1))
        p = tl.exp2(qk - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def flash_attention_fwd_kernel(q_ptr, k_ptr, v_ptr, o_ptr, seq_len, heads, qk_scale,
                               stride_b, stride_h, stride_s, HEAD_DIM: tl.constexpr,
                               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                               SPLIT_MASKED: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    base = (bh // heads).to(tl.int64) * stride_b + (bh % heads).to(tl.int64) * stride_h
    q_ptr += base
    k_ptr += base
    v_ptr += base
    o_ptr += base
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dh = tl.arange(0, HEAD_DIM)
    # Query rows past the end read as zeros (never stored); they keep every score finite.
    q = tl.load(q_ptr + rows[:, None] * stride_s + dh[None, :], mask=rows[:, None] < seq_len, other=0.0)
    m_i = tl.full((BLOCK_M,), -float("inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, HEAD_DIM), tl.float32)
    if CAUSAL:
        hi = tl.minimum((pid_m + 1) * BLOCK_M, seq_len)
        # Key blocks wholly left of this query block's first row need no mask at all.
        clean = (pid_m * BLOCK_M) // BLOCK_N * BLOCK_N
    else:
        hi = seq_len
        clean = seq_len // BLOCK_N * BLOCK_N  # whole key blocks before the ragged end
    if SPLIT_MASKED:
        acc, l_i, m_i = _attend(acc, l_i, m_i, q, k_ptr, v_ptr, stride_s, rows, 0, clean, seq_len,
                                qk_scale, HEAD_DIM, BLOCK_N, False, CAUSAL)
        acc, l_i, m_i = _attend(acc, l_i, m_i, q, k_ptr, v_ptr, stride_s, rows, clean, hi, seq_len,
                                qk_scale, HEAD_DIM, BLOCK_N, True, CAUSAL)
    else:
        acc, l_i, m_i = _attend(acc, l_i, m_i, q, k_ptr, v_ptr, stride_s, rows, 0, hi, seq_len,
                                qk_scale, HEAD_DIM, BLOCK_N, True, CAUSAL)
    o = acc / l_i[:, None]
    tl.store(o_ptr + rows[:, None] * stride_s + dh[None, :], o.to(o_ptr.dtype.element_ty),
             mask=rows[:, None] < seq_len)


DEFAULT_CONFIG = {"BLOCK_M": 128, "BLOCK_N": 64, "SPLIT_MASKED": True, "num_warps": 8, "num_stages": 3}


def launch(inputs, out: torch.Tensor, config) -> object:
    """inputs (q, k, v, causal); all four tensors contiguous [B, H, S, head_dim]."""
    q, k, v, causal = inputs
    batch, heads, seq_len, head_dim = q.shape
    grid = (triton.cdiv(seq_len, config["BLOCK_M"]), batch * heads)
    return flash_attention_fwd_kernel[grid](
        q, k, v, out, seq_len, heads, LOG2E / math.sqrt(head_dim), q.stride(0), q.stride(1), q.stride(2),
        HEAD_DIM=head_dim, BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], CAUSAL=bool(causal),
        SPLIT_MASKED=bool(config["SPLIT_MASKED"]), num_warps=config["num_warps"],
        num_stages=config["num_stages"])


def check_inputs(q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"attention: {name} must be a tensor, got {type(t).__name__}")
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"attention: q, k, v must be [B, H, S, head_dim] of one shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[3] not in (64, 128):
        raise ValueError(f"attention: head_dim must be 64 or 128, got {q.shape[3]}")
    if q.dtype not in DTYPES.values() or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"attention: q, k, v must share one dtype among float16, bfloat16, float32; "
                        f"got {q.dtype}, {k.dtype}, {v.dtype}")
    check_device("attention", q, k, v)


def attention(q, k, v, causal: bool = False, config=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim), causal mask if asked) v, for [B, H, S, head_dim] inputs."""
    check_inputs(q, k, v)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if q.numel():
        launch((q.contiguous(), k.contiguous(), v.contiguous(), causal), out, config or DEFAULT_CONFIG)
    return out


def make_inputs(problem: AttentionProblem, device, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = (problem.batch, problem.heads, problem.seq_len, problem.head_dim)
    q, k, v = (torch.randn(shape, generator=gen, device=device).to(DTYPES[problem.dtype]) for _ in range(3))
    return q, k, v, problem.causal


def make_output(problem: AttentionProblem, inputs) -> torch.Tensor:
    return torch.empty_like(inputs[0])


def reference(inputs) -> torch.Tensor:
    """float64, one batch entry at a time (its S x S scores are the memory that matters)."""
    q, k, v, causal = inputs
    seq_len, scale = q.shape[2], 1.0 / math.sqrt(q.shape[3])
    out = torch.empty(q.shape, dtype=torch.float64, device=q.device)
    mask = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).tril() if causal else None
    for b in range(q.shape[0]):
        scores = q[b].double() @ k[b].double().transpose(-1, -2) * scale
        if causal:
            scores = scores.masked_fill(~mask, -math.inf)
        out[b] = torch.softmax(scores, dim=-1) @ v[b].double()
    return out


def baseline(inputs) -> torch.Tensor:
    q, k, v, causal = inputs
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def flops(problem: AttentionProblem) -> float:
    # Two matmuls of 2 * S * S * d per (batch, head); causal does about half.
    work = 4.0 * problem.batch * problem.heads * problem.seq_len ** 2 * problem.head_dim
    return work / 2 if problem.causal else work


def bytes_moved(problem: AttentionProblem) -> float:
    return float(4 * problem.batch * problem.heads * problem.seq_len * problem.head_dim
                 * element_size(problem.dtype))


SPEC = KernelSpec(
    name="attention",
    description="flash-attention forward (online softmax), causal or not; BLOCK_M/N, split masked blocks",
    problem=AttentionProblem, make_inputs=make_inputs, make_output=make_output, launch=launch,
    reference=reference, baseline=baseline, flops=flops, bytes_moved=bytes_moved,
    # Q K^T sums head_dim products, P V seq_len: the longer one sets the accumulation error
    reduction=lambda p: max(p.head_dim, p.seq_len),
)
