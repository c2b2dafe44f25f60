"""kernelevolve.tuner.profile on a GPU with Nsight Compute: a real candidate profiled through ncu, its raw page
parsed and labelled. Marked `gpu` (skipped with a reason without one) and skipped where ncu is
missing; the CPU side of the same path is tests/test_profile_cli.py."""
import pytest

from kernelevolve.tuner.profile import bottleneck, ncu
from kernelevolve.tuner.profile.candidate import counters_of, profile_request

pytestmark = pytest.mark.gpu


def _ncu_or_skip() -> str:
    try:
        return ncu.find_ncu()
    except ncu.NcuUnavailable as exc:
        pytest.skip(str(exc))


def test_a_gemm_candidate_is_profiled_and_labelled(tmp_path):
    _ncu_or_skip()
    logged = {"kernel_ref": "kernelevolve.search_spaces.matmul:TUNABLE", "hardware": "h100",
              "problem": {"M": 2048, "N": 2048, "K": 2048, "dtype": "bfloat16"},
              "bench": {"clock": "do_bench", "warmup_ms": 25, "rep_ms": 100},
              "config": {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "SPLIT_K": 1,
                         "SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "TMA": False,
                         "WARP_SPECIALIZE": False, "num_warps": 8, "num_stages": 3}}
    run = ncu.run(profile_request(logged, calls=2), str(tmp_path), timeout_s=900)
    assert run.reply["status"] == "ok" and "matmul_kernel" in run.reply["kernel_names"]
    fields = counters_of(run, latency_ms=None)
    assert fields["ncu_kernels"] == 1  # the range held the candidate's launches, nothing else
    assert "matmul_kernel" in fields["ncu_kernel_names"]
    for name in ("ncu_duration_ms", "ncu_sm_pct", "ncu_memory_pct", "ncu_occupancy_pct", "ncu_instructions"):
        assert fields[name] > 0, name
    assert fields["bottleneck"] in bottleneck.LABELS
