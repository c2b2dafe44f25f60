"""Claims the vendor exemption from a plug-in: declares `vendor_configs` = [{"IMPL": "vendor"}] (what
the built-in GEMMs declare) and computes its output with torch under that config. Caught: the
exemption from the no-Triton-launch check is the trusted parent's to give, and only to a built-in
kernel's declared vendor config (tuner/measure/vendor.py); a plug-in's declaration counts for
nothing, so this ends `incorrect` with NO_LAUNCH.

MATMUL goes further: the built-in matmul's own spec and vendor path, under a plug-in's reference.
Trust is by the reference the parent resolves, never by what the loaded object says it is."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import double, vec_tunable  # noqa: E402

from kernelevolve.kernels import matmul  # noqa: E402
from kernelevolve.search_spaces.matmul import space as matmul_space  # noqa: E402
from kernelevolve.tuner.experiment.registry import Tunable  # noqa: E402


def launch(inputs, out, cfg):
    (x,) = inputs
    if cfg.get("IMPL") == "vendor":
        out.copy_(2 * x)
        return None
    return double(x, out)


KERNEL = vec_tunable("vendor_claim", launch, vendor_configs=lambda problem: [{"IMPL": "vendor"}])
MATMUL = Tunable(kernel=matmul.SPEC, space=matmul_space)
