"""What a target is: its chip's limits (for search-space constraints, known before any compile),
its measured ceilings (for % of peak), the Ray resources that place work on it, and detection of
the device a worker actually runs on.

Ceilings carry their source. Figures measured on this project's machines say so; datasheet
figures are marked as such, so a '% of peak' is never silently computed from an invented number.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ceiling:
    value: float  # bytes/s or flop/s
    source: str  # "measured <date> <how>" or "datasheet"


@dataclass(frozen=True)
class Hardware:
    name: str
    vendor: str  # "nvidia", "amd", "cpu"
    interpreter: bool = False  # runs kernels in TRITON_INTERPRET=1 on the CPU
    arch: str = ""  # "sm90", "sm80", "gfx942"
    sm_count: int = 0
    smem_per_block: int = 0  # bytes a program may opt into
    regs_per_sm: int = 0
    max_regs_per_thread: int = 255
    device_match: tuple = ()  # substrings of torch.cuda.get_device_name() that identify it
    accelerator_type: str = ""  # Ray's accelerator_type label on nodes that carry it
    ceilings: dict = field(default_factory=dict)  # "copy_bytes", "bfloat16_flops", ...


def interpreter_problem() -> str | None:
    """Why Triton's interpreter cannot run this machine's kernels, or None where it can.

    Triton 3.6's interpreter turns a scalar argument used as a loop bound (`range(0, n, BLOCK)`,
    in most of our kernels) into a Python int with int() of a one-element numpy array, which numpy
    2.4 refuses ("only 0-dimensional arrays can be converted to Python scalars"); 3.7 squeezes the
    array first. Checked on the CPU machine with triton 3.6.0 and 3.7.0 and numpy 2.4.6, and seen on a GPU
    machine's image (triton 3.6.0, numpy 2.5.2): every such kernel failed at its first launch."""
    import numpy as np
    import triton

    try:
        int(np.zeros(1, dtype=np.int32))
        return None  # this numpy still converts one-element arrays
    except TypeError:
        pass
    major, minor = (int(p) for p in triton.__version__.split(".")[:2])
    if (major, minor) >= (3, 7):
        return None
    return (f"the Triton interpreter of triton {triton.__version__} cannot run kernels with loops "
            f"under numpy {np.__version__} (it converts one-element arrays with int(), which numpy "
            f"2.4 refuses): install triton>=3.7 or numpy<2.4 for the cpu-interpreter target")


_H100_MEASURED = "measured 2026-11-24 on this project's H100 (STACK-NOTES.md)"

PROFILES: dict[str, Hardware] = {
    "cpu-interpreter": Hardware(name="cpu-interpreter", vendor="cpu", interpreter=True),
    "h100": Hardware(
        name="h100", vendor="nvidia", arch="sm90", sm_count=132, smem_per_block=232448,
        regs_per_sm=65536, device_match=("H100",), accelerator_type="H100",
        ceilings={
            "copy_bytes": Ceiling(3.02e12, _H100_MEASURED + ": device copy, read + write"),
            "bfloat16_flops": Ceiling(742e12, _H100_MEASURED + ": cuBLAS bf16 8192^3"),
            "float16_flops": Ceiling(989e12, "datasheet (dense fp16 tensor core, SXM)"),
            "float32_flops": Ceiling(494e12, "datasheet (dense tf32 tensor core, SXM)"),
        },
    ),
    "h200": Hardware(
        name="h200", vendor="nvidia", arch="sm90", sm_count=132, smem_per_block=232448,
        regs_per_sm=65536, device_match=("H200",), accelerator_type="H200",
        ceilings={
            "copy_bytes": Ceiling(4.3e12, "measured 2026-10-28 on this workplace's H200 (device copy)"),
            "bfloat16_flops": Ceiling(788e12, "measured 2026-10-28 on this workplace's H200 (torch bf16 8192^3)"),
        },
    ),
    "a100": Hardware(
        name="a100", vendor="nvidia", arch="sm80", sm_count=108, smem_per_block=166912,
        regs_per_sm=65536, device_match=("A100",), accelerator_type="A100",
        ceilings={
            "copy_bytes": Ceiling(2.0e12, "datasheet (HBM2e, 80GB SXM)"),
            "bfloat16_flops": Ceiling(312e12, "datasheet (dense bf16 tensor core)"),
        },
    ),
    # AMD Instinct MI300X (CDNA3). Not tested: this project has no AMD machine. sm_count is its
    # compute units, smem_per_block its 64 KiB LDS; Ray labels its nodes AMD-Instinct-MI300X-OAM.
    "mi300x": Hardware(
        name="mi300x", vendor="amd", arch="gfx942", sm_count=304, smem_per_block=65536,
        regs_per_sm=131072, max_regs_per_thread=512, device_match=("MI300X",),
        accelerator_type="AMD-Instinct-MI300X-OAM",
        ceilings={
            "copy_bytes": Ceiling(5.3e12, "datasheet (HBM3, 192 GB)"),
            "bfloat16_flops": Ceiling(1307e12, "datasheet (dense bf16 matrix cores)"),
            "float16_flops": Ceiling(1307e12, "datasheet (dense fp16 matrix cores)"),
        },
    ),
}


def profile(name: str) -> Hardware:
    return PROFILES[name]


def ceiling_for(hw: Hardware, kind: str) -> Ceiling | None:
    return hw.ceilings.get(kind)


def least_time_s(hw: Hardware, flops: float, nbytes: float, dtype: str | None) -> float | None:
    """The roofline: the least time any kernel can take on hw for `flops` of work and `nbytes`
    of the fewest bytes a perfect kernel moves, each at its ceiling, whichever is longer. The
    work runs at the dtype's FLOP ceiling; where the profile lists none for it (or no dtype is
    given: an fp8 GEMM's operands), at the fastest FLOP ceiling it lists, which no kernel of any
    dtype beats. None: the profile lists no ceiling at all (the interpreter). A function of the
    problem and the profile alone, never of a measurement."""
    flop_ceilings = [c.value for k, c in hw.ceilings.items() if k.endswith("_flops")]
    dtype_ceiling = ceiling_for(hw, f"{dtype}_flops") if dtype else None
    copy = ceiling_for(hw, "copy_bytes")
    times = []
    if flop_ceilings and flops:
        times.append(flops / (dtype_ceiling.value if dtype_ceiling else max(flop_ceilings)))
    if copy and nbytes:
        times.append(nbytes / copy.value)
    if not flop_ceilings and copy is None:
        return None
    return max(times, default=0.0)


def detect_device() -> dict:
    """Describe the device this process runs kernels on (called in workers, never on the driver)."""
    import platform

    import torch
    import triton

    # plain str: torch's TorchVersion pickles as a reference to torch, so every process that read a
    # reply carrying it imported torch first (a trial actor's first lane reply waited 3-4 s for it
    # on an H200 node, which every first-wave trial of a sweep paid)
    info = {"node": platform.node(), "torch": str(torch.__version__), "triton": str(triton.__version__)}
    if torch.cuda.is_available():
        idx = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(gpu_name=props.name, gpu_uuid=str(getattr(props, "uuid", idx)),
                    gpu_index=idx, sm_count=props.multi_processor_count)
    else:
        info.update(gpu_name="none (CPU)", gpu_uuid="cpu", gpu_index=-1)
    return info


def matches(hw: Hardware, device: dict) -> bool:
    """Whether the device a worker found is the chip its target names."""
    if hw.interpreter:
        return True
    return any(s in device.get("gpu_name", "") for s in hw.device_match)


def profile_for_gpu(gpu_name: str) -> Hardware | None:
    """The GPU profile whose chip this is (torch.cuda.get_device_name), or None if none knows it."""
    return next((h for h in PROFILES.values() if not h.interpreter and matches(h, {"gpu_name": gpu_name})), None)
