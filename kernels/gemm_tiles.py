"""Building blocks shared by the GEMM family (matmul, fused epilogues, fp8, batched).

Device side (@triton.jit, inlined into each template):
  tile_coords           output tile -> (pid_m, pid_n), with the GROUP_M swizzle
  accumulate_pointers   one tile's K loop with pointer loads (masks only when K is ragged)
  accumulate_descriptors  the same K loop with tensor-descriptor (TMA on Hopper) loads,
                        optionally warp-specialized
  b_descriptor          B's tensor descriptor built on the device, K-major or not
  meet_partials         a tile's K slices meeting in the kernel (split-K in_kernel, the tail split)
  activate              the epilogue's activation on an fp32 block
  apply_epilogue        per-tensor scales, bias, activation, residual on the fp32 accumulator
  store_halves          the epilogue-subtiled store: the tile written as two column halves
Host side:
  feature detection of the installed Triton (tensor descriptors, warp specialization, loop
  flattening, the maxnreg compile option),
  tma_allocator() (device-side descriptors need a scratch allocator on triton >= 3.6),
  host_descriptor(), host_descriptors_compile() (a descriptor made on the host instead, and where
  that compiles: HOST_DESCRIPTORS),
  program_slots() (how many SMs a persistent kernel fills), persistent_programs() (the programs a
  persistent GEMM launches), tma_compatible(),
  aligned_rows() (a copy of a matrix whose rows start 128-byte aligned: STAGE_A, STAGE_B),
  output_for() (a GEMM's C, its rows padded to 16 bytes where N leaves them misaligned, by
  aligned_width(), the padded vendor path's rule too), tma_storable().
"""
from __future__ import annotations

import functools
import inspect

import torch
import triton
import triton.language as tl

from kernelevolve.kernels.spec import described_sm_count, describing

# What the installed Triton offers. Feature-detected, never assumed from a version number.
HAS_TENSOR_DESCRIPTORS = hasattr(tl, "make_tensor_descriptor") and hasattr(triton, "set_allocator")
HAS_WARP_SPECIALIZE = "warp_specialize" in inspect.signature(tl.range.__init__).parameters
HAS_FP8_E4M3 = hasattr(tl, "float8e4nv") and hasattr(torch, "float8_e4m3fn")
HAS_LOOP_FLATTEN = "flatten" in inspect.signature(tl.range.__init__).parameters


def _has_cuda_option(name: str) -> bool:
    """Whether the NVIDIA backend's compile options (CUDAOptions) take `name`: a kernel launch
    passes any such option through to the compiler, and raises on one it does not know."""
    try:
        from triton.backends.nvidia.compiler import CUDAOptions
    except ImportError:  # a Triton built without the NVIDIA backend
        return False
    return name in getattr(CUDAOptions, "__dataclass_fields__", {})


HAS_MAXNREG = _has_cuda_option("maxnreg")

ACTIVATIONS = ("none", "relu", "gelu", "silu")

# A persistent kernel on the interpreter has no SMs to fill: this many programs loop over the
# tiles, so that every program runs its tile loop more than once on the small test shapes.
INTERPRETER_PROGRAM_SLOTS = 4

TMA_ALIGN_BYTES = 16  # TMA needs 16-byte aligned base addresses and row strides


@triton.jit
def tile_coords(tile_id, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """Tile number -> (tile row, tile column). GROUP_M tile-rows are walked column by column, so
    consecutive tiles reuse the same B columns (and nearby A rows) while they are still in L2;
    GROUP_M=1 is plain row-major order."""
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = tile_id // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((tile_id % num_pid_in_group) % group_size_m)
    pid_n = (tile_id % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def accumulate_pointers(acc, a_ptr, b_ptr, pid_m, pid_n, M, N, K,
                        stride_am, stride_ak, stride_bk, stride_bn, k_first, k_step,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        EVEN_K: tl.constexpr):
    """acc += A[tile rows, K blocks k_first, k_first + k_step, ...] @ B[same K blocks, tile cols].

    Rows and columns past the edge wrap around (modulo M and N) instead of being masked: the loads
    stay in bounds and unmasked, and only the store masks. N may be more than B's columns where
    B's rows are padded (a staged B, kernels/matmul.py): a wrap at a multiple of 16 keeps the
    column offsets provably contiguous, and a padding column only feeds an output column the store
    masks. When K is a multiple of BLOCK_K (EVEN_K) the K masks go too, and the loads are plain
    vector loads."""
    offs_am = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_bn = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    for kb in range(k_first, tl.cdiv(K, BLOCK_K), k_step):
        k = kb * BLOCK_K + offs_k
        a_ptrs = a_ptr + offs_am[:, None] * stride_am + k[None, :] * stride_ak
        b_ptrs = b_ptr + k[:, None] * stride_bk + offs_bn[None, :] * stride_bn
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            a = tl.load(a_ptrs, mask=k[None, :] < K, other=0.0)
            b = tl.load(b_ptrs, mask=k[:, None] < K, other=0.0)
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def accumulate_descriptors(acc, a_desc, b_desc, pid_m, pid_n, K, k_first, k_step,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                           B_KMAJOR: tl.constexpr, WARP_SPECIALIZE: tl.constexpr):
    """The K loop of accumulate_pointers with tensor-descriptor loads: the copy engine (TMA on
    Hopper) fetches whole tiles and fills out-of-bounds rows, columns and K with zeros, so there
    are no masks and no address arithmetic per element. B_KMAJOR: B is stored as [N, K] (K
    contiguous, as fp8 tensor cores want it) and its tiles are transposed in registers.
    WARP_SPECIALIZE splits the loop into a producer warp issuing the copies and consumer warps
    doing the MMAs (Hopper: only with num_warps=4; the search space knows)."""
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    for kb in tl.range(k_first, tl.cdiv(K, BLOCK_K), k_step, warp_specialize=WARP_SPECIALIZE):
        a = a_desc.load([off_m, kb * BLOCK_K])
        if B_KMAJOR:
            b = b_desc.load([off_n, kb * BLOCK_K]).T
        else:
            b = b_desc.load([kb * BLOCK_K, off_n])
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def b_descriptor(b_ptr, K, N, stride_bk, stride_bn, COLS: tl.constexpr, BLOCK_K: tl.constexpr,
                 B_KMAJOR: tl.constexpr):
    """B's descriptor built on the device, for blocks of BLOCK_K x COLS: a K-major B (stored as
    [N, K]) is described as stored, its blocks [COLS, BLOCK_K] (the kernels transpose them after
    the load), as gemm_tiles.host_descriptor describes it on the host."""
    if B_KMAJOR:
        desc = tl.make_tensor_descriptor(b_ptr, shape=[N, K], strides=[stride_bn, 1], block_shape=[COLS, BLOCK_K])
    else:
        desc = tl.make_tensor_descriptor(b_ptr, shape=[K, N], strides=[stride_bk, 1], block_shape=[BLOCK_K, COLS])
    return desc


@triton.jit
def activate(acc, ACTIVATION: tl.constexpr):
    """One of ACTIVATIONS on an fp32 block: the templates' epilogue and the vendor path's epilogue
    pass (kernels/gemm_passes.py) compute it here, so both round the same values."""
    if ACTIVATION == "relu":
        acc = tl.maximum(acc, 0.0)
    elif ACTIVATION == "gelu":  # the exact (erf) GELU, as torch.nn.functional.gelu computes it
        acc = 0.5 * acc * (1.0 + tl.erf(acc * 0.7071067811865476))
    elif ACTIVATION == "silu":
        acc = acc * tl.sigmoid(acc)
    return acc


@triton.jit
def apply_epilogue(acc, offs_m, offs_n, M, N, bias_ptr, residual_ptr, stride_rm, stride_rn,
                   scale_a_ptr, scale_b_ptr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                   ACTIVATION: tl.constexpr, HAS_RESIDUAL: tl.constexpr):
    """out = act(acc * scale_a * scale_b + bias[n]) + residual[m, n], all in fp32, before the one
    cast to the output dtype (what a fused epilogue saves: three round trips of C to memory)."""
    if HAS_SCALE:
        acc = acc * (tl.load(scale_a_ptr) * tl.load(scale_b_ptr))
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0)
        acc = acc + bias.to(tl.float32)[None, :]
    acc = activate(acc, ACTIVATION)
    if HAS_RESIDUAL:
        r_ptrs = residual_ptr + offs_m[:, None] * stride_rm + offs_n[None, :] * stride_rn
        r_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        acc = acc + tl.load(r_ptrs, mask=r_mask, other=0.0).to(tl.float32)
    return acc


@triton.jit
def meet_partials(acc, parts_ptrs, index, part_stride, arrivals_ptr, tile_id, c_ptr, offs_m, offs_n, M, N,
                  stride_cm, stride_cn, bias_ptr, residual_ptr, stride_rm, stride_rn, scale_a_ptr, scale_b_ptr,
                  PARTS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                  ACTIVATION: tl.constexpr, HAS_RESIDUAL: tl.constexpr):
    """One of a tile's PARTS K slices meets the others in the kernel (split-K's in_kernel reduce,
    kernels/matmul.py; the tail split, kernels/gemm_split_tail.py): its fp32 partial `acc` goes to
    slot `index` (parts_ptrs: slot 0's elements, the slots part_stride apart), its arrival is
    counted on the tile's counter, and the last to arrive sums the slots in slot order (the sum
    does not depend on who came last), applies the epilogue, stores C by pointers and leaves the
    counter at zero for the next launch."""
    c_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(parts_ptrs + index * part_stride, acc, mask=c_mask)
    # every thread's partial is stored before this program's one arrival is counted; the count's
    # release/acquire (GPU scope) orders the other slices' partials before the last one's loads
    tl.debug_barrier()
    arrived = tl.atomic_add(arrivals_ptr + tile_id, 1, sem="acq_rel", scope="gpu")
    if arrived == PARTS - 1:  # the last of the tile's slices: the others' partials are written
        acc = tl.zeros(acc.shape, dtype=tl.float32)
        for s in tl.static_range(PARTS):
            # .cg: from L2, never from this SM's L1, which may hold a slot of an earlier launch
            acc += tl.load(parts_ptrs + s * part_stride, mask=c_mask, other=0.0, cache_modifier=".cg")
        acc = apply_epilogue(acc, offs_m, offs_n, M, N, bias_ptr, residual_ptr, stride_rm, stride_rn,
                             scale_a_ptr, scale_b_ptr, HAS_SCALE, HAS_BIAS, ACTIVATION, HAS_RESIDUAL)
        c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
        tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=c_mask)
        tl.atomic_xchg(arrivals_ptr + tile_id, 0, sem="relaxed", scope="gpu")  # for the next launch


@triton.jit
def store_halves(acc, c_ptr, c_desc, off_m, off_n, M, N, stride_cm, stride_cn,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, TMA: tl.constexpr):
    """C[off_m:, off_n:] = acc (in C's dtype), written as two [BLOCK_M, BLOCK_N // 2] halves, as
    the epilogue of Triton's persistent-matmul tutorial does: the shared-memory copy a descriptor
    store is staged through is half the tile, and the first half's store is in flight while the
    second is converted. c_desc's block is the half. Pointer stores take the same two halves
    (masked at the edge); they stage nothing apart, so it saves them no shared memory."""
    # (rows, 2, cols/2) puts column n in half n // (BLOCK_N // 2); moving that axis last lets
    # tl.split take the halves apart without any data movement
    halves = tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1))
    left, right = tl.split(halves)
    half = BLOCK_N // 2
    if TMA:  # the descriptor store clips each half at the matrix edge: no mask needed
        c_desc.store([off_m, off_n], left.to(c_desc.dtype))
        c_desc.store([off_m, off_n + half], right.to(c_desc.dtype))
    else:
        offs_m = off_m + tl.arange(0, BLOCK_M)
        offs_n = off_n + tl.arange(0, BLOCK_N // 2)
        ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
        row_ok = offs_m[:, None] < M
        tl.store(ptrs, left.to(c_ptr.dtype.element_ty), mask=row_ok & (offs_n[None, :] < N))
        tl.store(ptrs + half * stride_cn, right.to(c_ptr.dtype.element_ty),
                 mask=row_ok & (offs_n[None, :] + half < N))


# --- host side -----------------------------------------------------------------------------------

def _scratch(size: int, alignment: int, stream):
    # Device-side tensor descriptors live in a per-launch global scratch buffer that Triton asks
    # the registered allocator for; torch's caching allocator makes that cheap.
    return torch.empty(size, device="cuda", dtype=torch.int8)


def tma_allocator(device: torch.device) -> None:
    """Register the scratch allocator tensor descriptors need on a GPU (triton >= 3.6 raises
    'no allocator was set' without it). The allocator is a context variable: set it on every
    launch, so that a launch from another thread finds it too. The interpreter needs none."""
    if device.type == "cuda":
        triton.set_allocator(_scratch)


def host_descriptors_compile(config) -> bool:
    """Whether a config's TMA descriptors can be made on the host: TMA, no warp specialization
    (Triton 3.6 and 3.9 fail to compile it), one CTA a program (a cluster splits the tile the
    descriptor's block names)."""
    return bool(config.get("TMA", False) and not config.get("WARP_SPECIALIZE", False)
                and config.get("num_ctas", 1) == 1)


def host_descriptor(t: torch.Tensor, block_shape: list, kmajor: bool = False):
    """A tensor descriptor of the 2-D matrix t, with blocks of block_shape (rows, columns of t),
    made on the host (HOST_DESCRIPTORS): Triton passes it to the kernel as a launch parameter,
    where a descriptor built by tl.make_tensor_descriptor is written by each program to global
    scratch and fenced before its first copy. kmajor: t is a transposed view (its first dimension
    contiguous), described as the matrix it is stored as, its block transposed with it, as the
    kernels' device-side descriptors of a K-major B are (the kernel loads [cols, rows] blocks)."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    if kmajor:
        t, block_shape = t.t(), block_shape[::-1]
    return TensorDescriptor(t, list(t.shape), [t.stride(0), 1], list(block_shape))


_ARRIVALS: dict = {}  # (device, stream) -> int32 counters, all zero between launches (arrival_counters)


def arrival_counters(device: torch.device, tiles: int) -> torch.Tensor:
    """The per-tile arrival counters of split-K reduced in the kernel (kernels/matmul.py,
    SPLIT_K_REDUCE="in_kernel"): zeroed once, then left at zero by each launch (the last split of
    a tile resets its counter), so a launch needs no zero-fill of its own. One set per stream (as
    cuBLAS keeps a workspace per stream): launches on two streams at once would count into each
    other's. Grown (zeroed afresh) when a launch has more tiles than any before it.

    Inside a CUDA-graph capture no set is made for the capture's stream: a set made there would
    be zeroed only where that graph replays, and another graph reading it could find it unzeroed.
    The graph uses a set an eager launch on this device made (as every clock's warm-up does before
    its capture; the graph then shares it with that stream), or one of its own, allocated and
    zeroed inside the graph, so zeroed at each replay (a memset node: one more kernel per replay)."""
    def zeroed():
        return torch.zeros(max(tiles, 1024), dtype=torch.int32, device=device)

    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        for (dev, _), counters in _ARRIVALS.items():
            if dev == str(device) and counters.numel() >= tiles:
                return counters
        return zeroed()  # captured: zeroed at each replay
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (str(device), stream)
    if key not in _ARRIVALS or _ARRIVALS[key].numel() < tiles:
        _ARRIVALS[key] = zeroed()
    return _ARRIVALS[key]


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def program_slots(device: torch.device) -> int:
    """Programs a persistent kernel launches: one per SM (each loops over tiles). Described inputs
    (meta tensors, compiled only: kernels.spec.described) count the SMs of the process's GPU, so
    that the compile specializes on the count the GPU run will pass."""
    if device.type == "cuda":
        return _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    if describing(device):
        # the target's count where the compile was given one (no CUDA call: a compile slot
        # initialises no driver), else this process's GPU's
        if described_sm_count():
            return described_sm_count()
        if torch.cuda.is_available():
            return _sm_count(torch.cuda.current_device())
    return INTERPRETER_PROGRAM_SLOTS


def persistent_programs(tiles: int, device: torch.device, config) -> int:
    """Programs a persistent GEMM launches: PROGRAMS_PER_SM per SM (one per two SMs' worth in
    clusters of two, num_ctas=2), never more than its tiles."""
    slots = program_slots(device) * int(config.get("PROGRAMS_PER_SM", 1)) // int(config.get("num_ctas", 1))
    return min(tiles, max(1, slots))


def tma_compatible(t: torch.Tensor) -> str | None:
    """Why a tensor (or a view) cannot be read by a tensor descriptor, or None: the last dimension
    contiguous (a 2-D tensor may have its first one contiguous instead: a transposed view), every
    other stride and the base address 16-byte aligned."""
    e = t.element_size()
    if t.stride(-1) == 1:
        outer = t.stride()[:-1]
    elif t.dim() == 2 and t.stride(-2) == 1:
        outer = (t.stride(-1),)
    else:
        return f"no contiguous dimension (strides {tuple(t.stride())})"
    for st in outer:
        if (st * e) % TMA_ALIGN_BYTES:
            return f"row stride {st * e} B is not a multiple of {TMA_ALIGN_BYTES} B"
    if t.data_ptr() % TMA_ALIGN_BYTES:
        return f"base address not {TMA_ALIGN_BYTES}-byte aligned"
    return None


def tma_storable(c: torch.Tensor) -> bool:
    """Whether C may be stored by a tensor descriptor: readable by one (tma_compatible) and, where
    its rows end off a 16-byte boundary, rows exactly as wide as that boundary (output_for's C).
    Why: a TMA store writes each row on to the next 16 bytes past N, whatever the row's pitch
    (H200, triton 3.6: N=33 fp16 wrote columns 33-39, N=45 columns 45-47, fp32 N=33 columns 33-35,
    into a C whose rows were 48, 64 or 128 wide); in output_for's C that is its own padding, in a
    view of a wider buffer (a slice of a concatenation) it would be the caller's next columns."""
    if c.dim() != 2 or c.stride(1) != 1 or tma_compatible(c) is not None:
        return False
    width = aligned_width(c.shape[1], c.element_size())
    return width == c.shape[1] or c.stride(0) == width


def aligned_width(n: int, itemsize: int) -> int:
    """n elements of `itemsize` bytes, rounded up to whole TMA_ALIGN_BYTES: the width of a row
    cuBLAS and TMA write (output_for's pitch; the padded vendor path's K and N, whose padded
    product lands in that pitch: one rule, so the two agree)."""
    per_row = max(1, TMA_ALIGN_BYTES // itemsize)
    return -(-n // per_row) * per_row


STAGE_PITCH_BYTES = 128  # a staged copy's rows start on 128-byte lines (one L2 line, TMA's swizzle)


def aligned_rows(t: torch.Tensor) -> torch.Tensor:
    """t itself if a tensor descriptor can read it, else a copy whose rows start 128-byte aligned:
    a [rows, cols] view of a [rows, pitch] buffer, the pitch's tail columns left unwritten
    (descriptors clip at cols; pointer loads mask them, or, for a staged B, read them only into
    output columns the store masks: kernels/matmul.py stage_b). For a matrix like [1000, 383] fp16
    (766-byte rows) every row starts at a different alignment, so loads cannot be vectorized or
    asynchronous (cp.async and TMA move 4 to 16 aligned bytes); one streaming copy buys both for
    the whole K loop."""
    if tma_compatible(t) is None:
        return t
    rows, cols = t.shape
    per_line = STAGE_PITCH_BYTES // t.element_size()
    buf = torch.empty((rows, -(-cols // per_line) * per_line), dtype=t.dtype, device=t.device)
    staged = buf[:, :cols]
    if t.is_cuda and t.stride(1) == 1:
        # one pass of our own copy: torch's strided copy_ into the view took 1.2-1.7x as long as
        # an earlier version of it on an H200 (19094x1997 fp16: 92.6 us against 53.8)
        from kernelevolve.kernels.gemm_passes import copy_rows  # (gemm_passes imports this module)

        return copy_rows(t, staged)
    staged.copy_(t)
    return staged


def output_for(M: int, N: int, like: torch.Tensor, dtype=None) -> torch.Tensor:
    """C of an [M, N] GEMM (on like's device, in like's dtype or `dtype`): contiguous where its rows
    are 16-byte aligned, else an [M, N] view of a buffer whose rows are N rounded up to 16 bytes.
    Why: cuBLAS and TMA write only rows that start aligned. With a contiguous C of misaligned rows
    the padded vendor path computed into an aligned buffer and copied C out of it (15-18 us of a
    105 us 4330x3050x1649 bf16 GEMM on an H200, where max-autotune, whose padded mm returns C as
    such a view, ran in 83 us: docs/benchmarks.md); now cuBLAS writes C in place and a Triton
    kernel may store it by TMA. Columns N.. of each row are padding: nothing reads them. The
    entry points (kernels/ops) return C so, as torch.compile does; .contiguous() where a caller
    needs it."""
    dtype = dtype or like.dtype
    pitch = aligned_width(N, dtype.itemsize)
    buf = like.new_empty((M, pitch), dtype=dtype)
    return buf if pitch == N else buf[:, :N]


def launch_options(config) -> dict:
    """The Triton launch options a config carries. AMD's (waves_per_eu, matrix_instr_nonkdim,
    kpack) are passed only when the config has them: the NVIDIA backend rejects unknown ones.
    maxnreg (NVIDIA: the most registers one thread may use, ptx .maxnreg) is passed only when it is
    set and not 0: 0, like a config without the key, means the compiler's own choice, and keeps
    the option (and the kernel's cache key) exactly what it was before maxnreg was searched.
    num_ctas (a cluster of CTAs per program, Hopper) likewise only when above 1."""
    opts = {"num_warps": config["num_warps"], "num_stages": config["num_stages"]}
    for key in ("waves_per_eu", "matrix_instr_nonkdim", "kpack"):
        if key in config:
            opts[key] = config[key]
    if config.get("maxnreg"):
        opts["maxnreg"] = int(config["maxnreg"])
    if config.get("num_ctas", 1) > 1:
        opts["num_ctas"] = int(config["num_ctas"])
    return opts
