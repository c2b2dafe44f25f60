"""What one config of the GEMM template takes of an SM: a CTA's output tile, its shared memory and
its accumulator's registers. The GEMM-family rules (search_spaces/gemm_rules.py) and the fitted
starts (search_spaces/gemm_starts.py) count with them; tests/test_gemm_sm90_compile.py compiles
configs for sm90 and checks the shared memory against these models.

Models measured where they could be:
  * shared memory (sm90, triton 3.6 and 3.9, compiled without a GPU; tests/test_gemm_sm90_compile.py
    re-checks them): the pipeline keeps num_stages copies of an A tile and a B tile; TMA adds its
    barriers (< 100 B); a persistent TMA kernel keeps one output tile staged for its descriptor
    store; warp specialization stages max(BLOCK_M, 128) x BLOCK_N outputs for its epilogue.
    EPILOGUE_SUBTILE stages half of either (triton 3.9: 16 KiB less for 128x128 bf16); a
    pointer store or a one-tile-per-program TMA store stages nothing apart, subtiled or not.
    A flattened (FLATTEN) pointer loop was compiled with 48-80 KiB where the model says 64-144:
    the model keeps the unflattened figure, an upper bound, rather than guess the pipeliner. A
    flattened loop stores its halves (EPILOGUE_SUBTILE) from a tile whose rows are fewer than its
    warpgroups' 64 each (64 x 256 in 8 warps: the warpgroups split its columns), each fp32 half
    is re-laid out through shared memory of its own: 32 KiB more for 64x256 and 16 KiB for 64x128
    (triton 3.6 and 3.9; one such config ran out of shared memory on the H200 before the model
    counted it). Unflattened, or with 128 rows or more, that scratch shares the pipeline's. A
    flattened loop with a fused residual stages residual tiles too (8 KiB more for 128x128, 32 KiB
    for 128x256, bf16): the model counts one whole residual tile, an upper bound.
    C's rows are always 16-byte aligned (a GEMM's C is made with them padded where N leaves them
    misaligned: kernels/gemm_tiles.py output_for), so a persistent TMA kernel always stages its
    output tile. (A C of misaligned rows, stored by pointers, staged none: triton 3.9, 98,328 B
    for 128x128x64 in 3 stages; shared_memory_bytes(c_aligned=False) still models it.)
  * thread-block clusters (num_ctas=2, sm90; triton 3.6 and 3.9, compiled without a GPU): Triton
    runs each program as a cluster of two CTAs and splits its tile in two along the longer side
    (BLOCK_M on a tie), so each CTA stages and accumulates half of it: 128x128x64 in 3 stages took
    73,728 B a CTA against 98,304 without (90,136 against 131,096 persistent with its staged
    output tile), 64x256x64 73,728 (N split), 128x64x64 49,152 (M split). The models below count
    one CTA's tile (`cta_tile`). Nothing was multicast in that code: no operand tile is shared.
  * registers: the fp32 accumulator is BLOCK_M*BLOCK_N/(lanes*num_warps) registers per lane. A
    maxnreg cap must leave MAXNREG_HEADROOM registers above it (ptxas -v on sm90 code, triton
    3.9: a 128-register accumulator spilled 1 KiB at maxnreg=128, or failed to compile with 8
    warps, and ran clean at 168; 64-register ones were clean at 128). Accumulators of up to 192
    registers a thread compile without spills (sm_90a, triton 3.9, ptxas -v: 192x128, 128x192 and
    160x128 tiles in 4 warps, TMA or pointer loads, 218-255 registers used, no spill), 256 spill
    (128x256 in 4 warps: 1.1-1.9 KiB): the cap is 192, which only widened tiles
    (kernels/gemm_tile_parts.py) fall between; power-of-two tiles need 64, 128 or 256.
"""
from __future__ import annotations

TMA_BARRIER_BYTES = 1024  # measured 16-56 B of mbarriers; a round margin
MAXNREG_HEADROOM = 40  # registers a thread needs beside its accumulator (docstring)
# shared memory the driver keeps for each CTA besides what it asks for (NVIDIA: 1 KiB on sm80 and
# sm90); an SM's shared memory is what one program may opt into plus that reserve (H100: 227 + 1 KiB)
CTA_RESERVED_SMEM = 1024
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float8_e4m3fn": 1}


def cta_tile(config: dict) -> tuple[int, int]:
    """The (rows, columns) of the output tile one CTA computes: the program's whole tile (widened
    by EXTRA_M / EXTRA_N, kernels/gemm_tile_parts.py), or with num_ctas=2 half of it, split along
    its longer side (BLOCK_M on a tie; module docstring)."""
    from kernelevolve.kernels.gemm_tile_parts import tile_size  # the kernel's own arithmetic

    bm, bn = tile_size(config)
    if config.get("num_ctas", 1) > 1:
        return (bm // 2, bn) if bm >= bn else (bm, bn // 2)
    return bm, bn


def shared_memory_bytes(config: dict, dtype: str | int, out_dtype: str | int | None = None,
                        residual: bool = False, c_aligned: bool = True) -> int:
    """The shared memory one CTA of the GEMM template needs (see the module docstring).
    residual: the epilogue reads a residual tile (in the output dtype). c_aligned: C's rows are
    16-byte aligned, so a TMA kernel stores C through a descriptor (else by pointers)."""
    e = dtype if isinstance(dtype, int) else DTYPE_BYTES[dtype]
    out = e if out_dtype is None else (out_dtype if isinstance(out_dtype, int) else DTYPE_BYTES[out_dtype])
    bm, bn = cta_tile(config)
    need = max(1, config["num_stages"]) * (bm + bn) * config["BLOCK_K"] * e
    if config.get("TMA", False):
        need += TMA_BARRIER_BYTES
        store = out if config.get("SPLIT_K", 1) == 1 else 4  # split-K partials are fp32
        staged_n = bn // 2 if config.get("EPILOGUE_SUBTILE", False) else bn  # one half at a time
        if config.get("WARP_SPECIALIZE", False):
            need += max(bm, 128) * staged_n * store
        elif config.get("PERSISTENT", False) and c_aligned:
            need += bm * staged_n * store
            if config.get("FLATTEN", False) and staged_n < bn and bm < 64 * (config["num_warps"] // 4):
                # the warpgroups split the tile's columns, so a half is re-laid out through
                # shared memory, which a flattened loop cannot share with its pipeline (docstring)
                need += bm * staged_n * 4
    if residual and config.get("FLATTEN", False):  # pipelined across tiles: staged (docstring)
        need += bm * bn * out
    return need


def accumulator_regs(config: dict, lanes: int = 32) -> float:
    bm, bn = cta_tile(config)
    return bm * bn / (lanes * config["num_warps"])


def program_regs(config: dict) -> float:
    """The registers one program takes of an SM (NVIDIA, 32 lanes a warp): each thread's
    accumulator and MAXNREG_HEADROOM more for addresses and operands."""
    return 32 * config["num_warps"] * (accumulator_regs(config) + MAXNREG_HEADROOM)


def programs_by_smem(need: int, smem_per_block: int) -> int:
    """How many CTAs of `need` bytes of shared memory one SM holds: an SM has what one program may
    opt into (smem_per_block) plus one CTA_RESERVED_SMEM, and each CTA takes its need and a reserve."""
    return (smem_per_block + CTA_RESERVED_SMEM) // (max(need, 1) + CTA_RESERVED_SMEM)


def programs_by_regs(config: dict, regs_per_sm: int) -> int:
    """How many of this config's programs one SM's register file holds (program_regs each)."""
    return int(regs_per_sm // max(program_regs(config), 1))
