"""GPU-only checks of the evaluation path (skipped with a reason on machines without a GPU)."""
import pytest

from kernelevolve.tuner.execution.worker import CandidateWorker

pytestmark = pytest.mark.gpu

BASE = {"op": "evaluate", "kernel_ref": "kernelevolve.search_spaces.matmul:TUNABLE", "hardware": "h100",
        "problem": {"M": 1000, "N": 1024, "K": 4000, "dtype": "bfloat16"}, "seed": 1,
        "bench": {"warmup_ms": 10, "rep_ms": 30}}
GOOD = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "SPLIT_K": 1,
        "num_warps": 8, "num_stages": 3}


@pytest.fixture(scope="module")
def worker():
    w = CandidateWorker()
    yield w
    w.close()


def test_gpu_candidate_is_verified_timed_and_compared(worker):
    rec = worker.request(dict(BASE, config=GOOD), timeout_s=300)
    assert rec["status"] == "ok", rec
    assert rec["timing"] == "gpu" and rec["latency_p20_ms"] <= rec["latency_ms"] <= rec["latency_p80_ms"]
    assert rec["baseline_ms"] > 0 and rec["speedup"] > 0 and rec["tflops"] > 0
    assert isinstance(rec.get("n_regs"), int) and isinstance(rec.get("shared_bytes"), int)


def test_split_k_on_gpu(worker):
    rec = worker.request(dict(BASE, problem={"M": 64, "N": 64, "K": 8192, "dtype": "float16"},
                              config=dict(GOOD, BLOCK_M=64, BLOCK_N=64, SPLIT_K=4, num_warps=4)),
                         timeout_s=300)
    assert rec["status"] == "ok", rec


def test_out_of_resources_is_classified(worker):
    # 256x256x128 bf16 with 5 stages needs 640 KB of shared memory; skip the constraint by
    # using a target whose profile has no shared-memory limit.
    rec = worker.request(dict(BASE, hardware="cpu-interpreter",
                              config=dict(GOOD, BLOCK_M=256, BLOCK_N=256, BLOCK_K=128, num_stages=5)),
                         timeout_s=300)
    assert rec["status"] == "out_of_resources", rec


@pytest.mark.parametrize("clock", ["clean", "cudagraph"])
def test_named_clock_times_a_candidate(worker, clock):
    # an experiment's timing.clock reaches the worker through its bench settings
    rec = worker.request(dict(BASE, config=GOOD, bench=dict(BASE["bench"], clock=clock)), timeout_s=300)
    assert rec["status"] == "ok", rec
    assert 0 < rec["latency_p20_ms"] <= rec["latency_ms"] <= rec["latency_p80_ms"]


def test_compile_request_launches_nothing_and_the_lane_finds_the_binary(worker):
    # a compile slot compiles ahead, on described inputs (nothing runs on the GPU, and the binary is
    # not loaded: its shared memory is known, its registers come with the lane's launch); the
    # evaluator's first launch of the same config is then a load from Triton's cache, not a compile
    compiled = worker.request(dict(BASE, op="compile", config=dict(GOOD, GROUP_M=2)), timeout_s=300)
    assert compiled["status"] == "ok" and compiled["compile_s"] > 0, compiled
    assert compiled["compiled_on"] == "described" and isinstance(compiled.get("shared_bytes"), int), compiled
    rec = worker.request(dict(BASE, config=dict(GOOD, GROUP_M=2), compiled=True), timeout_s=300)
    assert rec["status"] == "ok" and rec["load_s"] < compiled["compile_s"], (compiled, rec)
    assert isinstance(rec.get("n_regs"), int), rec


TMA_PERSISTENT_WS = {"BLOCK_K": 64, "BLOCK_M": 128, "BLOCK_N": 128, "EPILOGUE_SUBTILE": False, "FLATTEN": False,
                     "GROUP_M": 8, "PERSISTENT": True, "SPLIT_K": 1, "SPLIT_K_REDUCE": "atomic", "TMA": True,
                     "WARP_SPECIALIZE": True, "num_stages": 4, "num_warps": 4}


@pytest.mark.parametrize("clock", ["do_bench", "clean", "cudagraph"])
def test_a_persistent_tma_kernel_launches_on_the_callers_stream(worker, clock):
    # the launch hook's stream check (launch_watch.STRAY_LAUNCH) watches its verified, captured and a share
    # of its timed launches: the template's own TMA kernels must pass it under every clock
    # 32 x 32 tiles: more than the SMs, or the space would refuse a persistent launch
    rec = worker.request(dict(BASE, problem={"M": 4096, "N": 4096, "K": 1024, "dtype": "bfloat16"},
                              config=TMA_PERSISTENT_WS, bench=dict(BASE["bench"], clock=clock)), timeout_s=300)
    assert rec["status"] == "ok", rec
