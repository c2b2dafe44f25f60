"""FBGEMM's table-batched embedding bag (SplitTableBatchedEmbeddingBagsCodegen) as the peer of our
embedding ops: what production ranking models (torchrec) run for their tables.

Wheel: fbgemm-gpu 1.6.0 is the release that matches torch 2.11 (FBGEMM's compatibility table:
1.5.0 goes with 2.10, one release per torch release), and PyPI's `fbgemm-gpu==1.6.0` is its CUDA
13.0 build (its libraries link libcudart.so.13), for Python 3.10 to 3.14: checked on 2026-11-26
with `pip download fbgemm-gpu==1.6.0 --no-deps --python-version 3.12 --only-binary=:all:` (a 465 MB
wheel). Where it is not installed, `available()` says why and the benchmark records that path as
not run.

The module is built with the model's tables copied in, the same batch layout as ours (indices of
all tables concatenated, each relative to its table; offsets [T * B + 1] table-major), sum pooling.
Training: FBGEMM fuses the optimizer into its backward (EXACT_SGD: the touched rows are updated
in place, no table gradient is ever materialised), which is how it is deployed; its table
gradient is checked by reading it back from one SGD step of an fp32 copy: (w_before - w_after) / lr.
"""
from __future__ import annotations


def available() -> str | None:
    """None when fbgemm_gpu imports, else why not (recorded in the results)."""
    try:
        import fbgemm_gpu  # noqa: F401
        from fbgemm_gpu.split_table_batched_embeddings_ops_training import \
            SplitTableBatchedEmbeddingBagsCodegen  # noqa: F401
    except Exception as exc:  # ImportError, or a wheel built for another torch (undefined symbol)
        return f"fbgemm_gpu not usable here: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def _names():
    import fbgemm_gpu.split_table_batched_embeddings_ops_training as training
    from fbgemm_gpu.split_embedding_configs import EmbOptimType, SparseType

    try:  # moved between releases
        from fbgemm_gpu.split_table_batched_embeddings_ops_common import (ComputeDevice, EmbeddingLocation,
                                                                          PoolingMode)
    except ImportError:
        from fbgemm_gpu.split_table_batched_embeddings_ops_training import (ComputeDevice, EmbeddingLocation,
                                                                            PoolingMode)
    return training.SplitTableBatchedEmbeddingBagsCodegen, ComputeDevice, EmbeddingLocation, PoolingMode, \
        EmbOptimType, SparseType


def make(tables, lr: float, dtype):
    """A TBE over `tables` (a list of [rows, dim] tensors, copied in), weights and output in `dtype`,
    fused exact SGD with learning rate lr. Where a release does not train bf16 weights, fp16 ones
    (the same bytes; `tbe.weights_precision` says which)."""
    import torch

    tbe_cls, compute, location, pooling, optim, sparse = _names()
    precisions = {torch.float32: [sparse.FP32], torch.float16: [sparse.FP16],
                  torch.bfloat16: [sparse.BF16, sparse.FP16]}[dtype]
    device = tables[0].device
    for i, precision in enumerate(precisions):
        try:
            tbe = tbe_cls(embedding_specs=[(t.shape[0], t.shape[1], location.DEVICE, compute.CUDA) for t in tables],
                          optimizer=optim.EXACT_SGD, learning_rate=lr, weights_precision=precision,
                          output_dtype={torch.bfloat16: sparse.BF16}.get(dtype, precision), pooling_mode=pooling.SUM,
                          device=device)
            break
        except Exception:
            if i == len(precisions) - 1:
                raise
    with torch.no_grad():
        for dst, src in zip(tbe.split_embedding_weights(), tables):
            dst.copy_(src.to(dst.dtype))
    return tbe


def pooled(tbe, kjt, batch: int, tables: int):
    """The pooled vectors, one [B, dim] view per table (what eager's F.embedding_bag calls give)."""
    out = tbe(kjt[0], kjt[1])  # [B, T * dim]
    return list(out.view(batch, tables, -1).unbind(1))


def table_gradient(tables, kjt, batch: int, grad_pooled, lr: float):
    """FBGEMM's gradient of the stacked tables for upstream gradients grad_pooled [B, T, dim]: one
    fused SGD step of an fp32 copy, read back as (w_before - w_after) / lr."""
    import torch

    tbe = make([t.float() for t in tables], lr, torch.float32)
    before = torch.cat([w.detach().clone() for w in tbe.split_embedding_weights()])
    out = tbe(kjt[0], kjt[1])
    out.backward(grad_pooled.float().reshape(batch, -1))
    after = torch.cat([w.detach() for w in tbe.split_embedding_weights()])
    return (before - after) / lr
