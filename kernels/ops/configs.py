"""The config an operator launches with: the tuned table's entry for this call (kernels/tuned.py,
nearest shape bucket on this GPU kind), else the kernel's default.

Every op body does `tuned.resolved.get(key) or configs.resolve(key, ...)`: one dictionary lookup
per launch; the table is ranked on a signature's first call only. A signature (the key) holds the
op, sizes, dtype and device, plus, for the GEMMs, the strides and 16-byte alignment of the inputs
(a tuned TMA config is only taken where tensor descriptors can read these very tensors)."""
from kernelevolve.kernels import tuned
from kernelevolve.kernels.gemm_tiles import TMA_ALIGN_BYTES


# signature -> "table" or "default": where each remembered config came from (for reports; a
# benchmark shows which of its ops ran tuned configs)
sources: dict = {}


def resolve(key: tuple, kernel: str, dims: dict, dtype, device, default: dict, usable=None,
            extras: dict | None = None) -> dict:
    """A signature's first call: rank the table (tuned.config_for) and remember the answer."""
    cfg = tuned.resolve_config(key, lambda: tuned.config_for(kernel, dims, dtype, device, default,
                                                            usable, extras))
    sources[key] = "default" if cfg is default else "table"  # config_for hands back `default` itself
    return cfg


def layout(*tensors) -> tuple:
    """What a TMA usability check reads of tensors besides their sizes: strides and alignment."""
    return tuple((t.stride(), t.data_ptr() % TMA_ALIGN_BYTES == 0) for t in tensors)
