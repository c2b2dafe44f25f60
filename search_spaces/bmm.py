"""What the batched-GEMM sweep tries: the matmul space without split-K and the persistent loop.

The batch already multiplies the programs (grid = tiles x batch), so neither splitting K nor a
persistent tile loop is offered (so no FLATTEN), nor EPILOGUE_SUBTILE (its template stores whole
tiles); tiles, GROUP_M, num_warps/num_stages, and on Hopper TMA, warp specialization (per-batch
device descriptors) and maxnreg are searched under the matmul constraints
(search_spaces/gemm_rules.py), with the per-batch matrix as the problem they see.
Not in the space: torch.bmm (IMPL="vendor", declared by the kernel), evaluated once per study
outside the sampler, as for matmul.
"""
from __future__ import annotations

from kernelevolve.kernels.bmm import SPEC, BmmProblem
from kernelevolve.kernels.spec import element_size
from kernelevolve.search_spaces.gemm_rules import GemmShape
from kernelevolve.search_spaces.matmul import gemm_space
from kernelevolve.tuner.experiment.hardware import Hardware
from kernelevolve.tuner.experiment.registry import Tunable
from kernelevolve.tuner.search.space import Space


def space(problem: BmmProblem, hw: Hardware) -> Space:
    e = element_size(problem.dtype)
    shape = GemmShape(problem.M, problem.N, problem.K, e, e, tf32=problem.dtype == "float32")
    # bmm's template stores whole tiles (no EPILOGUE_SUBTILE); maxnreg reaches it through
    # gemm_tiles.launch_options like every GEMM-family launch
    return gemm_space(shape, hw, split_k=False, persistent=False, epilogue_subtile=False, clusters=False,
                      tile_parts=False, host_descriptors=False)


TUNABLE = Tunable(kernel=SPEC, space=space)
