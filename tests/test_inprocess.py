"""tuner/measure/inprocess.py on the interpreter: warm configs first, only valid configs launched, every
config recorded with its status, the best is a verified one, and failures are data."""
import dataclasses

import pytest
import torch

from kernels import matmul as mm
from search_spaces import matmul as s_mm
from tuner.measure import inprocess
from tuner.experiment.hardware import profile
from tuner.experiment.registry import Tunable

HW = profile("cpu-interpreter")
PROBLEM = mm.MatmulProblem(M=33, N=17, K=20, dtype="float32")


def test_search_tries_warm_configs_first_and_keeps_a_verified_best(device):
    warm = [dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, GROUP_M=1), dict(BLOCK_M=4096)]  # the second: not in the space
    s = inprocess.Search(s_mm.TUNABLE, PROBLEM, HW, seed=0, threads=1, device=device)
    assert s.enqueue(warm) == 1
    s.run(max_configs=4, until=float("inf"))
    assert len(s.results) == 4
    first = s.results[0]["config"]
    assert (first["BLOCK_M"], first["BLOCK_N"], first["BLOCK_K"], first["GROUP_M"]) == (16, 16, 16, 1)
    assert len({tuple(sorted(r["config"].items())) for r in s.results}) == 4  # no config twice
    assert all(not s.space.violations(r["config"]) for r in s.results)
    best = s.best()
    assert best is not None and best["status"] == "ok" and best["full"][1] > 0
    assert s.counts()["ok"] == 4


def test_failing_and_wrong_configs_are_recorded_not_chosen(device):
    """A launcher that raises for one tile size and returns garbage for another: both recorded
    with their cause, the best is a correct config."""
    def launch(inputs, out, cfg):
        if cfg["BLOCK_M"] == 16:
            raise RuntimeError("out of resources (simulated)")
        mm.launch(inputs, out, cfg)
        if cfg["BLOCK_N"] == 32:
            out.add_(1.0)

    spec = dataclasses.replace(mm.SPEC, launch=launch)
    tunable = Tunable(kernel=spec, space=s_mm.space)
    best, s = inprocess.tune(tunable, PROBLEM, HW, warm=[dict(BLOCK_M=16), dict(BLOCK_M=32, BLOCK_N=32)],
                             max_configs=6, seconds=600, threads=2, device=device)
    by_status = {r["status"] for r in s.results}
    assert {"error", "incorrect"} <= by_status
    assert any("simulated" in r.get("error", "") for r in s.results)
    assert best is not None and best["config"]["BLOCK_M"] != 16 and best["config"]["BLOCK_N"] != 32


def test_a_sparse_space_is_seeded_with_valid_configs(device):
    """An N=1 layer on the H100 profile: about 1% of the GEMM space is valid, so TPE alone finds
    almost nothing; the search enqueues a seeded sample of the valid configs (nothing launched here)."""
    from kernels.gemm_epilogue import FusedGemmProblem
    from search_spaces import gemm_epilogue as s_ge

    sparse = FusedGemmProblem(M=64, N=1, K=256, activation="none", dtype="float32")
    s = inprocess.Search(s_ge.TUNABLE, sparse, profile("h100"), seed=0, threads=1, device=device)
    assert s.seed_sparse_space(5) == 5
    batch = s._propose(5)  # the study hands out what was enqueued first
    assert len(batch) == 5 and all(not s.space.violations(cfg) for _, cfg, _ in batch)
    dense = inprocess.Search(s_mm.TUNABLE, mm.MatmulProblem(M=512, N=512, K=512), profile("h100"), seed=0,
                             threads=1, device=device)
    assert dense.seed_sparse_space(5) == 0  # most of a big GEMM's space is valid: TPE is left alone


def test_a_huge_sparse_space_is_sampled_not_enumerated(device, monkeypatch):
    """A Hopper conv space: ~5 million configs, 0.5-2% valid. Enumerating it took longer than the
    search's time share on the H100 host; the seed is drawn by rejection sampling instead."""
    from kernels.conv2d import Conv2dProblem
    from search_spaces import conv2d as s_cv

    layer = Conv2dProblem(N=2, H=6, W=6, C_in=16, C_out=16, dtype="float16")
    s = inprocess.Search(s_cv.TUNABLE, layer, profile("h100"), seed=0, threads=1, device=device)
    assert s.space.size() > inprocess.ENUMERATE_MAX

    def never(self):
        raise AssertionError("enumerated a space of millions")

    monkeypatch.setattr(type(s.space), "valid_configs", never)
    assert s.seed_sparse_space(8) == 8
    batch = s._propose(8)
    assert len({key for _, _, key in batch}) == 8 and all(not s.space.violations(cfg) for _, cfg, _ in batch)


def test_wall_bench_is_the_cpu_stand_in():
    calls = []
    p20, p50, p80 = inprocess.wall_bench(lambda: calls.append(torch.ones(1)))
    assert len(calls) == 3 and p20 == p50 == p80 >= 0


@pytest.mark.gpu
def test_search_on_the_gpu(device):
    problem = mm.MatmulProblem(M=512, N=512, K=512, dtype="float16")
    best, s = inprocess.tune(s_mm.TUNABLE, problem, profile("h100"), warm=s_mm.WARM_CONFIGS[:2], max_configs=6,
                             seconds=120, device=device)
    assert best is not None and s.counts()["ok"] >= 1


@pytest.mark.gpu
def test_graph_clock_searches_a_short_kernel(device):
    # K=383: A's rows are misaligned, so STAGE_A is in the space; the graph clock times the staged copy too
    problem = mm.MatmulProblem(M=256, N=256, K=383, dtype="float16")
    s = inprocess.Search(s_mm.TUNABLE, problem, profile("h100"), seed=0, threads=4, device=device,
                         timer=inprocess.graph_bench)
    s.enqueue([dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, STAGE_A=True, TMA=True, num_warps=4, num_stages=3)])
    s.run(4, float("inf"))
    best = s.best()
    assert best is not None and best["full"][0] <= best["full"][1] <= best["full"][2]
    assert s.results[0]["status"] == "ok" and s.results[0]["config"]["STAGE_A"]


@pytest.mark.gpu
def test_clean_clock_searches_and_charges_write_back(device):
    # the clean clock (read-only L2 flushes, the call's own write-back charged) as a search's timer,
    # and on a plain 64 MB copy: ordered, positive quantiles (no timing threshold: tests check behaviour)
    problem = mm.MatmulProblem(M=2048, N=2048, K=2048, dtype="float16")  # ~30 us: well above the noise
    s = inprocess.Search(s_mm.TUNABLE, problem, profile("h100"), seed=0, threads=4, device=device,
                         timer=inprocess.clean_flush_bench)
    s.enqueue(s_mm.WARM_CONFIGS[:2])
    s.run(3, float("inf"))
    best = s.best()
    assert best is not None and 0 < best["full"][0] <= best["full"][1] <= best["full"][2]
    src = torch.ones(16 * 1024 * 1024, device=device)
    dst = torch.empty_like(src)
    q = inprocess.clean_flush_bench(lambda: dst.copy_(src), inprocess.QUICK)
    assert 0 < q[0] <= q[1] <= q[2] and torch.equal(dst, src)
