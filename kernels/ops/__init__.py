"""Our kernels as PyTorch operators, `torch.ops.kernelevolve.<name>`: importing this package
registers them (and `kernelevolve.kernels.ops.registered()` lists them).

Why torch.library.custom_op, not torch.library.triton_op:
- The op body is the same launcher the tuner compiled, verified and timed (kernels/<op>.py);
  to the compiler the op is opaque. triton_op would hand every launch to inductor's own
  user-kernel code generation, a second path for our templates (tensor descriptors with a
  scratch allocator, string constexprs, helpers in other modules, host-side torch.sort in the
  embedding backward) whose support differs between torch 2.11 and 2.13 and triton 3.6 and 3.9,
  and which the tuner never measured.
- What triton_op would buy is inductor's lighter launch path without CUDA graphs. With CUDA
  graphs (torch.compile mode="reduce-overhead" or "max-autotune") an opaque op costs no host
  time at all: the graph replays its kernels. Each body below allocates, looks its config up
  in one dictionary (kernels/tuned.py: resolved_config) and launches: no host sync, so CUDA
  graphs capture it.
- Fake (meta) implementations give torch.compile the output shapes; autograd formulas are
  registered where a backward exists: the embedding bags and the norms run our backward kernels,
  the GEMM family (matmul, bmm, linear) runs our GEMM ops, the jagged conversions run each
  other; softmax and the dot interaction have torch formulas (no backward kernel of ours);
  attention, jagged_dense_bmm and jagged_softmax are forward only.

The entry points in kernels/<op>.py keep their full input checks (some read values back, a host
sync); the operators check shapes in their fake implementations, which run at trace time.
"""
from kernelevolve.kernels.ops import gemm, jagged, norm, ranking, rowwise  # noqa: F401  (registration)

NAMESPACE = "kernelevolve"


def registered() -> list[str]:
    """The names of every operator this package registers, as torch.ops.kernelevolve.<name>."""
    return sorted(name for module in (gemm, jagged, norm, ranking, rowwise) for name in module.OPS)
