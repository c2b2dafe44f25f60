"""The constraints every GEMM-family space shares, each with the reason it exists.

A GEMM-like problem (plain, fused epilogue, fp8, batched) is described to the rules by a
`GemmShape`; each rule is a picklable callable (Ray Tune pickles the searcher with its space)
whose docstring is what `kernelevolve kernels` prints, and whose return value is the reason a
config is rejected before any compile. The rules read switches with `cfg.get(key, default)`, so
a space that does not search a switch (TMA off Hopper, say) still passes its configs.

The models of what a config takes of an SM (shared memory, registers, a CTA's tile) are in
search_spaces/gemm_resources.py, with their measurements.
"""
from __future__ import annotations

from dataclasses import dataclass

from kernelevolve.search_spaces.gemm_resources import (MAXNREG_HEADROOM, accumulator_regs, cta_tile,
                                                    program_regs, programs_by_regs, programs_by_smem,
                                                    shared_memory_bytes)
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.search.space import next_pow2

ACC_REGS_PER_THREAD_MAX = 192  # NVIDIA: 255 is the cap; addresses and operands need the rest (gemm_resources)
ACC_REGS_PER_LANE_MAX_AMD = 256  # CDNA3: 512 VGPR+AGPR per lane (not tested here: no AMD machine)
TMA_ALIGN_BYTES = 16
MIN_DOT_SIDE = 16  # tl.dot's smallest M, N and K on NVIDIA
# Widened tiles in the persistent loop (kernels/gemm_tile_parts.py: the launcher takes them) are
# not searched: timed through the engine beside the power-of-two persistent kernels on the four
# many-wave K % 16 GEMMs of the generated suite (1 x H200, triton 3.6;
# benchmarks/data/probe_persistent_parts.json, docs/benchmarks.md) they were slower in every one
# of 36 pairs, 0.52-0.76x of the best (62112x3312x768: 728-872 us against 497 for 128x256).
SEARCH_PERSISTENT_PARTS = False


@dataclass(frozen=True)
class GemmShape:
    """What the rules need to know of a GEMM-like problem."""

    M: int
    N: int
    K: int
    in_bytes: int  # bytes per A/B element
    out_bytes: int  # bytes per C element
    tf32: bool = False  # float32 inputs (tl.dot runs them as tf32)
    residual: bool = False  # a fused residual [M, N] is read in the epilogue (kernels/gemm_epilogue.py)


def _lanes(hw: Hardware) -> int:
    return 64 if hw.vendor == "amd" else 32


def _tiles(cfg, s: GemmShape) -> int:
    from kernelevolve.kernels.gemm_tile_parts import tile_size  # widened tiles count as one

    tm, tn = tile_size(cfg)
    return -(-s.M // tm) * -(-s.N // tn)


class Rule:
    """One named constraint bound to a problem's shape and a target (picklable, unlike a closure)."""

    def __init__(self, kind: str, shape: GemmShape, hw: Hardware):
        self.kind, self.shape, self.hw = kind, shape, hw
        self.__doc__ = RULES[kind]

    def __call__(self, cfg: dict):
        return getattr(self, "_" + self.kind)(cfg, self.shape, self.hw)

    @staticmethod
    def _tile_parts(cfg, s, hw):
        from kernelevolve.kernels.gemm_tile_parts import excludes_extra, extra_size

        extra_m = extra_size(cfg["BLOCK_M"], cfg.get("EXTRA_M", 0))
        extra_n = extra_size(cfg["BLOCK_N"], cfg.get("EXTRA_N", 0))
        if not (extra_m or extra_n):
            return None
        if excludes_extra(cfg):
            return ("EXTRA_M / EXTRA_N widen whole tiles, one accumulator a part: not with SPLIT_K > 1, SPLIT_TAIL, "
                    "WARP_SPECIALIZE, EPILOGUE_SUBTILE or num_ctas > 1")
        if cfg.get("PERSISTENT", False) and not SEARCH_PERSISTENT_PARTS:
            return "EXTRA_M / EXTRA_N in a persistent loop: slower than a power-of-two persistent tile in 36 of 36 pairs timed"
        for name, extra, block, dim in (("EXTRA_M", extra_m, cfg["BLOCK_M"], s.M),
                                        ("EXTRA_N", extra_n, cfg["BLOCK_N"], s.N)):
            if extra and extra < MIN_DOT_SIDE:
                return f"{name} adds {extra} < {MIN_DOT_SIDE} (the smallest side of a tl.dot)"
            if extra and block >= dim:
                return f"{name} with {block} >= {dim}: the extra part would hold nothing"
        # compiled for sm90 (triton 3.9): a part of 32 rows is left to mma.sync, not the warpgroup
        # MMA (columns of 32 are not); timed on an H200 (docs/benchmarks.md), 128 + 32 rows ran
        # 1.12-2.70x slower than 128 + 64 on each of 12 shapes
        if hw.arch == "sm90" and extra_m and extra_m < 64:
            return f"EXTRA_M adds {extra_m} rows < 64: Hopper's warpgroup MMA leaves that part to mma.sync"
        # compiled for sm90 (triton 3.9), 192 x 128 by pointers, flattened: 155,648 B of shared
        # memory where the model counts 122,880 (TMA's flattened loops are the model's to 2 KiB)
        if cfg.get("FLATTEN", False) and not cfg.get("TMA", False):
            return "FLATTEN with EXTRA_M / EXTRA_N needs TMA (a flattened loop of pointer loads outgrows the shared-memory model)"
        return None

    @staticmethod
    def _host_descriptors(cfg, s, hw):
        from kernelevolve.kernels.gemm_tiles import host_descriptors_compile

        # "auto" (a config without the key): the launcher makes them on the host where they compile
        if cfg.get("HOST_DESCRIPTORS", "auto") is not True or host_descriptors_compile(cfg):
            return None
        if not cfg.get("TMA", False):
            return "HOST_DESCRIPTORS makes TMA's descriptors on the host: it needs TMA"
        # compiled for sm90 with triton 3.6 and 3.9: PassManager::run failed
        if cfg.get("WARP_SPECIALIZE", False):
            return "HOST_DESCRIPTORS with WARP_SPECIALIZE fails to compile (triton 3.6, 3.9)"
        return "HOST_DESCRIPTORS with num_ctas > 1: a cluster splits the tile the descriptor's block names"

    @staticmethod
    def _tile_fits_problem(cfg, s, hw):
        for blk, dim in (("BLOCK_M", s.M), ("BLOCK_N", s.N), ("BLOCK_K", s.K)):
            if blk in cfg and cfg[blk] > next_pow2(dim, 16):
                return f"{blk}={cfg[blk]} exceeds the problem ({dim} padded to {next_pow2(dim, 16)})"
        return None

    @staticmethod
    def _split_k(cfg, s, hw):
        n = cfg.get("SPLIT_K", 1)
        if n == 1:
            if cfg.get("SPLIT_K_REDUCE", "atomic") != "atomic":
                return "SPLIT_K_REDUCE matters only with SPLIT_K > 1 (same kernel as 'atomic')"
            return None
        if n * cfg["BLOCK_K"] > s.K:
            return f"SPLIT_K={n} x BLOCK_K={cfg['BLOCK_K']} > K={s.K}: some splits get no K block"
        tiles = _tiles(cfg, s)
        if hw.sm_count and tiles >= 2 * hw.sm_count:
            return f"SPLIT_K={n} with {tiles} output tiles: already two waves of {hw.sm_count} SMs"
        if hw.sm_count and n & (n - 1) and n != hw.sm_count // tiles:
            # a count between powers of two is there to fill the SMs: only the one that fills a wave
            return (f"SPLIT_K={n} is not a power of two: only {hw.sm_count // tiles}, the split that fills "
                    f"one wave of {hw.sm_count} SMs with {tiles} tiles, is")
        return None

    @staticmethod
    def _persistent(cfg, s, hw):
        if not cfg.get("PERSISTENT", False):
            return None
        if cfg.get("SPLIT_K", 1) > 1:
            return "PERSISTENT runs whole tiles: it takes SPLIT_K=1"
        tiles = _tiles(cfg, s)
        # a cluster of two CTAs holds two SMs; PROGRAMS_PER_SM programs share one
        programs = hw.sm_count * cfg.get("PROGRAMS_PER_SM", 1) // cfg.get("num_ctas", 1)
        if hw.sm_count and tiles <= programs:
            return f"PERSISTENT with {tiles} tiles <= {programs} programs: every program gets one tile anyway"
        return None

    @staticmethod
    def _programs_per_sm(cfg, s, hw):
        per_sm = cfg.get("PROGRAMS_PER_SM", 1)
        if per_sm == 1:
            return None
        if not cfg.get("PERSISTENT", False):
            return "PROGRAMS_PER_SM > 1 shares SMs between persistent loops: it needs PERSISTENT=True"
        if cfg.get("WARP_SPECIALIZE", False):  # its producer warps are not in num_warps: not counted here
            return "PROGRAMS_PER_SM > 1 with WARP_SPECIALIZE: its extra warps' registers are not modelled"
        if hw.smem_per_block:
            need = shared_memory_bytes(cfg, s.in_bytes, s.out_bytes, s.residual, c_aligned=True)
            if per_sm > programs_by_smem(need, hw.smem_per_block):
                return f"{per_sm} programs of {need} B of shared memory do not fit one SM of {hw.name}"
        if hw.regs_per_sm and per_sm > programs_by_regs(cfg, hw.regs_per_sm):
            return f"{per_sm} programs need ~{per_sm * program_regs(cfg):.0f} registers > {hw.regs_per_sm} an SM"
        return None

    @staticmethod
    def _shared_memory(cfg, s, hw):
        if not hw.smem_per_block:
            return None
        # C's rows are always aligned: a GEMM's C is made with them padded to 16 bytes
        # (kernels/gemm_tiles.py output_for), so a persistent TMA kernel always stages its tile
        need = shared_memory_bytes(cfg, s.in_bytes, s.out_bytes, s.residual, c_aligned=True)
        if need > hw.smem_per_block:
            return f"shared memory {need} B > {hw.smem_per_block} B per program on {hw.name}"
        return None

    @staticmethod
    def _registers(cfg, s, hw):
        if hw.interpreter:
            return None
        cap = ACC_REGS_PER_LANE_MAX_AMD if hw.vendor == "amd" else ACC_REGS_PER_THREAD_MAX
        regs = accumulator_regs(cfg, _lanes(hw))
        if regs > cap:
            return f"accumulator needs {regs:.0f} registers/thread > {cap}"
        return None

    @staticmethod
    def _hopper_mma_rows(cfg, s, hw):
        # SWAP_AB (conv2d) makes the output channels the MMA's rows: then BLOCK_N is what must be 64
        blk, dim = ("BLOCK_N", s.N) if cfg.get("SWAP_AB", False) else ("BLOCK_M", s.M)
        if hw.arch == "sm90" and cfg[blk] < 64 <= dim:
            return f"{blk}={cfg[blk]} < 64 leaves Hopper's warpgroup MMA unused"
        return None

    @staticmethod
    def _tma_alignment(cfg, s, hw):
        if not cfg.get("TMA", False):
            return None
        a_rows = () if cfg.get("STAGE_A") else (("A rows (K x in)", s.K * s.in_bytes),)  # staged: aligned
        # a staged B is the matmul template's, whose launcher stores a C it cannot describe by
        # pointers (TMA_STORE off): only the loads need TMA then
        b_c_rows = () if cfg.get("STAGE_B") else (("B rows (N x in)", s.N * s.in_bytes),
                                                   ("C rows (N x out)", s.N * s.out_bytes))
        for what, nbytes in a_rows + b_c_rows:
            if nbytes % TMA_ALIGN_BYTES:
                return f"TMA needs {TMA_ALIGN_BYTES}-byte aligned row strides: {what} = {nbytes} B"
        return None

    @staticmethod
    def _warp_specialize(cfg, s, hw):
        # Each condition below was found by compiling for sm90 with triton 3.6 and 3.9: outside
        # them the compile fails, or (num_warps=8) the switch is silently dropped, which would
        # only time the same kernel twice.
        if not cfg.get("WARP_SPECIALIZE", False):
            return None
        if not cfg.get("TMA", False):
            return "WARP_SPECIALIZE needs TMA (the producer warp issues TMA copies)"
        if cfg["num_warps"] != 4:
            return f"WARP_SPECIALIZE on Hopper needs num_warps=4 (with {cfg['num_warps']} Triton drops it)"
        if cfg["BLOCK_N"] > 128:
            return f"WARP_SPECIALIZE with BLOCK_N={cfg['BLOCK_N']} > 128 fails to compile"
        if s.tf32:
            return "WARP_SPECIALIZE does not compile for float32 (tf32) inputs"
        if cfg.get("SPLIT_K", 1) > 1 and cfg.get("SPLIT_K_REDUCE", "atomic") != "two_pass":
            # atomic: fails to compile; in_kernel: compiles, but the warp-specialized code has no
            # reset of the tile's arrival counter (tests/test_gemm_sm90_compile.py), so a second
            # launch would sum too early
            return ("WARP_SPECIALIZE with split-K needs SPLIT_K_REDUCE='two_pass' (atomic fails to compile; "
                    "in_kernel loses its counters' reset)")
        # Not a compile failure: these ran and left outputs unwritten on the H100 (triton 3.6), in 3 of
        # 3 tries (128x128x64 on 512x4096x4096 and 1000x1000x383, 128x64x64 on 30000x768x383; caught
        # by verification, docs/results/gemm_suite*.json), while 5 stages with BLOCK_M=64 and 4
        # stages with BLOCK_M=128 passed every time (4 and 24 tries)
        if cfg["num_stages"] >= 5 and cfg["BLOCK_M"] >= 128:
            return "WARP_SPECIALIZE with num_stages >= 5 and BLOCK_M >= 128 left outputs unwritten on the H100 (triton 3.6)"
        # Nor this: 128x128x64 in 2 stages, split in two (two-pass), was wrong in each of the 10 GEMM
        # studies that tried it in one suite run on an H200 (triton 3.6; relative errors 0.6-1.4,
        # caught by verification; docs/results/gemm_host_descriptors_1xh200), while two-pass splits in
        # 3 stages passed (the gpu-marked tests)
        if cfg.get("SPLIT_K", 1) > 1 and cfg["num_stages"] <= 2:
            return "WARP_SPECIALIZE with split-K in 2 stages gave wrong results on the H200 (triton 3.6)"
        return None


    @staticmethod
    def _epilogue_subtile(cfg, s, hw):
        if not cfg.get("EPILOGUE_SUBTILE", False):
            return None
        if cfg.get("SPLIT_K", 1) > 1:
            return "EPILOGUE_SUBTILE splits the store of C: with SPLIT_K > 1 the finish kernel stores C"
        # The kernel runs it on every store path; the space searches it only where it saves
        # shared memory (gemm_resources.py): elsewhere it would time a near-twin of the same kernel.
        # On the H100 (triton 3.6) every warp-specialized candidate with a subtiled store failed to
        # compile (3 of 3 in one suite run: "PassManager::run failed").
        if cfg.get("WARP_SPECIALIZE", False):
            return "EPILOGUE_SUBTILE with WARP_SPECIALIZE failed to compile on the H100 (triton 3.6: PassManager::run failed)"
        if not (cfg.get("TMA", False) and cfg.get("PERSISTENT", False)):
            return ("EPILOGUE_SUBTILE halves the output tile a persistent TMA store stages; other "
                    "stores stage none (same shared memory)")
        cta_n = cta_tile(cfg)[1]
        if cta_n // 2 * s.out_bytes < TMA_ALIGN_BYTES:
            return f"EPILOGUE_SUBTILE with {cta_n} columns a CTA: a half row is under {TMA_ALIGN_BYTES} B, TMA's least"
        return None

    @staticmethod
    def _clusters(cfg, s, hw):
        n = cfg.get("num_ctas", 1)
        if n == 1:
            return None
        if hw.arch != "sm90":
            return f"num_ctas={n} (thread-block clusters) is checked on Hopper only"
        if n != 2:
            return f"num_ctas={n}: only clusters of 2 were compiled and checked"
        # compiled for sm90 with triton 3.6 and 3.9: PassManager::run failed in the
        # warp-specialization pass
        if cfg.get("WARP_SPECIALIZE", False):
            return "num_ctas=2 with WARP_SPECIALIZE fails to compile (triton 3.6, 3.9)"
        if cfg.get("EPILOGUE_SUBTILE", False):  # 3.9 compiles it; 3.6 fails as above
            return "num_ctas=2 with EPILOGUE_SUBTILE fails to compile (triton 3.6)"
        # the in-kernel reduce's and the tail split's arrival counters count programs, and a
        # cluster runs each program as two CTAs that would both arrive; atomic and two-pass
        # splits were never run in clusters here
        if cfg.get("SPLIT_K", 1) > 1 or cfg.get("SPLIT_TAIL", False):
            return "num_ctas=2 runs whole tiles: SPLIT_K=1, no SPLIT_TAIL (a split's counters count programs)"
        rows, cols = cta_tile(cfg)
        if rows < 64 <= s.M:
            return f"num_ctas=2 halves BLOCK_M={cfg['BLOCK_M']} to {rows} rows a CTA: Hopper's warpgroup MMA wants 64"
        if cols < 16:
            return f"num_ctas=2 halves BLOCK_N={cfg['BLOCK_N']} to {cols} columns a CTA"
        return None

    @staticmethod
    def _flatten(cfg, s, hw):
        if not cfg.get("FLATTEN", False):
            return None
        if not cfg.get("PERSISTENT", False):
            return "FLATTEN flattens the persistent tile loop: it needs PERSISTENT=True"
        # compiled for sm90 (triton 3.9): the flattened loop has no ttg.warp_specialize left
        if cfg.get("WARP_SPECIALIZE", False):
            return "FLATTEN drops the K loop's warp specialization: the same kernel as WARP_SPECIALIZE=False"
        return None

    @staticmethod
    def _split_tail(cfg, s, hw):
        if not cfg.get("SPLIT_TAIL", False):
            return None
        if not cfg.get("PERSISTENT", False):
            return "SPLIT_TAIL cuts a persistent loop's last wave: it needs PERSISTENT=True"
        if cfg.get("WARP_SPECIALIZE", False):
            return "SPLIT_TAIL with WARP_SPECIALIZE: warp-specialized code dropped split-K's counter resets"
        if hw.sm_count:
            # the launcher's own plan (imported here: the rules module stays free of Triton)
            from kernelevolve.kernels.gemm_split_tail import tail_plan

            tiles = _tiles(cfg, s)
            if not tail_plan(tiles, min(tiles, hw.sm_count), -(-s.K // cfg["BLOCK_K"]))[0]:
                return (f"SPLIT_TAIL with {tiles} tiles on {hw.sm_count} SMs: no last wave it can cut "
                        "(the same kernel as SPLIT_TAIL=False)")
        return None

    @staticmethod
    def _maxnreg(cfg, s, hw):
        cap = cfg.get("maxnreg", 0)
        if not cap:  # 0: the compiler's own choice
            return None
        if hw.vendor != "nvidia":
            return "maxnreg is an NVIDIA compile option"
        threads = _lanes(hw) * cfg["num_warps"]
        # what the compiler allows a thread anyway: the ISA's cap, or the SM's register file
        # shared by the program's threads (in steps of 8, as registers are allocated)
        own = min(hw.max_regs_per_thread, hw.regs_per_sm // threads // 8 * 8) if hw.regs_per_sm else hw.max_regs_per_thread
        if cap >= own:
            return f"maxnreg={cap} >= the {own} registers {cfg['num_warps']} warps get anyway: the same kernel as maxnreg=0"
        need = accumulator_regs(cfg, _lanes(hw)) + MAXNREG_HEADROOM
        if cap < need:
            return (f"maxnreg={cap} < {need:.0f} registers: the accumulator's "
                    f"{need - MAXNREG_HEADROOM:.0f} + {MAXNREG_HEADROOM} for addresses and operands (spills)")
        return None


RULES = {
    "tile_parts": "EXTRA_M / EXTRA_N (tiles widened by a quarter or a half) only on whole tiles, one accumulator "
                  "a part (no split-K, SPLIT_TAIL, WARP_SPECIALIZE, EPILOGUE_SUBTILE or clusters; not searched in the "
                  "persistent loop, FLATTEN there with TMA only), with "
                  "extra parts of 16 or more (extra rows of 64 or more on Hopper) and a block smaller than the problem",
    "host_descriptors": "HOST_DESCRIPTORS=True (TMA's descriptors made on the host; 'auto', the default, does "
                        "so where it compiles) only with TMA, not with WARP_SPECIALIZE (fails to compile) or clusters",
    "tile_fits_problem": "no tile dimension above the problem's (padded to a power of two)",
    "split_k": "SPLIT_K > 1 only with one K block per split and fewer than two waves of tiles, a power of "
               "two or the count that fills one wave of SMs; SPLIT_K_REDUCE only varies when SPLIT_K > 1",
    "persistent": "PERSISTENT only with SPLIT_K=1 and more output tiles than programs",
    "programs_per_sm": "PROGRAMS_PER_SM=2 only with PERSISTENT, without WARP_SPECIALIZE, and where two "
                       "programs' shared memory and registers fit one SM",
    "shared_memory": "pipeline stages + TMA barriers + staged epilogue tile <= the program's shared memory",
    "registers": "fp32 accumulator <= 192 registers per thread (256 per lane on AMD)",
    "hopper_mma_rows": "on Hopper, BLOCK_M >= 64 when M allows it",
    "tma_alignment": "TMA only with 16-byte aligned row strides of A (or a staged A), and of B and C "
                     "(or a staged B, C then stored by pointers)",
    "warp_specialize": "WARP_SPECIALIZE only with TMA, num_warps=4, BLOCK_N <= 128, 16-bit inputs, "
                       "two-pass split-K in 3 stages or more, and not with 5 stages of 128-row tiles (wrong results)",
    "epilogue_subtile": "EPILOGUE_SUBTILE only with SPLIT_K=1, on a persistent TMA store (the store that "
                        "stages the output tile in shared memory; C's rows 16-byte aligned), not with "
                        "WARP_SPECIALIZE (fails to compile)",
    "flatten": "FLATTEN only with PERSISTENT, and not with WARP_SPECIALIZE (which it drops)",
    "split_tail": "SPLIT_TAIL only with PERSISTENT, not with WARP_SPECIALIZE, and where the last wave of "
                  "tiles leaves programs idle enough to cut it into K slices of two blocks or more",
    "clusters": "num_ctas=2 (thread-block clusters) only on Hopper, not with WARP_SPECIALIZE or "
                "EPILOGUE_SUBTILE (fail to compile), split-K or SPLIT_TAIL, and with at least 64 rows of "
                "the tile a CTA",
    "maxnreg": "maxnreg (NVIDIA) below the compiler's own per-thread cap for num_warps, and at least "
               "the accumulator's registers + 40",
}


def rules(shape: GemmShape, hw: Hardware, kinds=tuple(RULES)) -> tuple:
    return tuple(Rule(kind, shape, hw) for kind in kinds)
