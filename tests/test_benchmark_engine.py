"""The benchmarks search through the product's engine (benchmarks/engine.py): each benchmark's one
experiment loads with the product's loader (valid kernels, problems, target; no start points), its
rows find their study, and a tiny interpreter sweep through the shared helper gives summaries with
MLflow parent runs whose winners launch, verified, in this process."""
import argparse
import os

import pytest
import torch

from benchmarks import engine


def _loaded(data):
    exp, folder = engine.load(data)
    studies = list(exp.studies())
    assert exp.tracking.uri == f"sqlite:///{os.path.join(folder, 'mlflow.db')}"
    assert not exp.search.start_points and all(not e.start_points for e in exp.kernels)
    assert not exp.search.warm_start
    return exp, studies


def _index(exp, studies):
    """A Sweep without a run: each study's key as its summary, to check by_problem's lookup."""
    return engine.Sweep(exp.name, exp.tracking.uri, "", [{"study": st.key} for st in studies],
                        tuple((st.kernel_name, st.problem.model_dump()) for st in studies))


@pytest.mark.parametrize("kind", ["h100", "h200"])
def test_gemm_suite_is_one_experiment_of_every_shape(kind):
    from benchmarks import gemm_suite as g

    args = g.parse(["--out", "unused", "--conv"])
    todo = g.jobs(args)
    exp, studies = _loaded(g.build(todo, args, engine.target(kind)))
    assert len(studies) == len(todo) == 24 + 4 + len(g.CONV_LAYERS)  # generated GEMM + fused, conv opt-in
    assert {st.kernel_name for st in studies} == {"matmul", "gemm_epilogue", "conv2d"}
    assert exp.targets[0].name == kind and exp.targets[0].resources["GPU"] == engine.GPU_SHARE
    assert exp.timing.clock == "auto" and exp.search.samples == 40 and exp.search.concurrency == 8
    assert {st.clock.clock for st in studies} == {"cudagraph", "clean"}  # short and long shapes both
    sw = _index(exp, studies)
    keys = [sw.by_problem(j.kernel, j.fields)["study"] for j in todo]
    assert len(set(keys)) == len(todo)
    args.only = "conv"
    assert [j.label for j in g.jobs(args)] == [c[0] for c in g.CONV_LAYERS]


def test_ops_bench_is_one_experiment_of_every_op():
    from benchmarks import ops_bench as o

    args = argparse.Namespace(configs=48, threads=8, seed=0, clock="zeroing")
    cases = o.cases()
    exp, studies = _loaded(o.build(cases, args, engine.target("h100")))
    assert len(studies) == len(cases) and exp.timing.clock == "do_bench"
    sw = _index(exp, studies)
    assert len({sw.by_problem(c.kernel, c.fields)["study"] for c in cases}) == len(cases)


def test_dlrm_is_one_experiment_of_every_op_of_every_batch():
    from benchmarks import dlrm

    s = dict(dlrm.FULL)
    args = argparse.Namespace(configs=24, threads=8)
    exp, studies = _loaded(dlrm.experiment(s, "h100", args))
    ops = {(k, p.model_dump_json()) for b in s["batches"] for _, k, p in dlrm.ops(s, b)}
    assert len(studies) == len(ops)  # every distinct op problem once, both batch sizes
    smoke, _ = _loaded(dlrm.experiment(dict(dlrm.SMOKE), "cpu-interpreter", argparse.Namespace(configs=3, threads=1)))
    assert smoke.targets[0].profile.interpreter and smoke.search.concurrency == 1


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter sweep; GPU runs use the benchmarks themselves")
def test_a_tiny_sweep_gives_parent_runs_and_a_verified_winner():
    from kernelevolve.tuner.experiment import registry

    fields = {"M": 16, "N": 16, "K": 16, "dtype": "float32"}
    data = engine.experiment("bench-engine-tiny", [{"kernel": "matmul", "problems": [fields, dict(fields)]}],
                             engine.target("cpu-interpreter"), samples=2, concurrency=1, top_k=1,
                             retime_rounds=1)
    here = os.getcwd()
    sw = engine.sweep(data, log=lambda m: None)
    assert os.getcwd() == here and sw.uri == f"sqlite:///{os.path.join(sw.folder, 'mlflow.db')}"
    [summary] = sw.summaries  # the repeated problem is one study
    assert summary["study"] == "matmul/M16_N16_K16_float32/cpu-interpreter"
    # two Triton candidates (the budget) and the vendor path (torch.mm)
    assert summary["parent_run_id"] and sum(summary["counts"].values()) == 3
    prov = engine.provenance(sw, sw.by_problem("matmul", fields))
    assert prov["parent_run_id"] == summary["parent_run_id"] and prov["experiment"] == "bench-engine-tiny"
    assert prov["tuning_s"] > 0 and prov["tracking_uri"] == sw.uri
    import mlflow

    run = mlflow.tracking.MlflowClient(sw.uri).get_run(summary["parent_run_id"])
    assert run.info.experiment_id
    spec = registry.load(registry.resolve_ref("matmul")).kernel
    problem = spec.problem(**fields)
    inputs = spec.make_inputs(problem, torch.device("cpu"), 0)
    launch = engine.verified_launch(spec, problem, inputs, spec.reference(inputs), summary["best"]["config"])
    launch()


def test_verify_cost_sweeps_are_experiments_of_the_engine():
    from benchmarks import verify_cost as v

    for clock in ("do_bench", "clean", "cudagraph"):
        exp, studies = _loaded(v.cost_experiment(engine.target("h100"), 24, clock))
        assert exp.timing.clock == clock and len(studies) == len(v.GPU_STUDIES)
    from kernelevolve.tuner.experiment.config import Timing

    exp, _ = _loaded(v.cost_experiment(engine.target("h100"), 24, "do_bench", "default"))
    assert (exp.timing.warmup_ms, exp.timing.rep_ms) == (Timing().warmup_ms, Timing().rep_ms) != (5, 20)
    exp, studies = _loaded(v.attack_experiment(engine.target("h100")))
    assert exp.search.sampler == "grid" and len(studies) >= 11
    # cheat off, and on (side_stream: two ways to cheat)
    assert all(len(st.space.valid_configs()) >= 2 and False in {c["cheat"] for c in st.space.valid_configs()}
               for st in studies)


def test_the_throughput_arms_winners_are_re_timed_by_the_engine():
    """benchmarks/throughput.py compares the arms' winners with the engine's `retime` request (one
    evaluation process, each config's calls judged), not a timing loop of its own: on the
    interpreter, two arms that found the same config share one row, and each row has a verdict."""
    from benchmarks import throughput

    small = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1, "num_warps": 1, "num_stages": 1}
    rows = [{"arm": "concurrent", "best_config": small}, {"arm": "serial", "best_config": small},
            {"arm": "autotune", "best_config": dict(small, BLOCK_N=32)}, {"arm": "broken", "error": "x"}]
    agree = throughput.agreement(rows, rounds=2, problem={"M": 32, "N": 32, "K": 32, "dtype": "float16"},
                                 hardware="cpu-interpreter")
    assert [r["arms"] for r in agree["rows"]] == [["concurrent", "serial"], ["autotune"]]
    assert all(r["status"] == "ok" and r["median_ms"] > 0 for r in agree["rows"]), agree


def test_the_benchmarks_gpu_kind_comes_from_nvidia_smi_and_the_visible_devices(tmp_path, monkeypatch):
    """No CUDA context in a benchmark's driver (a sweep's driver never touches the GPU): the kind
    and count come from nvidia-smi, cut to CUDA_VISIBLE_DEVICES as the sweep's Ray sees them."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200'\necho 'NVIDIA H200'\necho 'NVIDIA H200'\necho 'NVIDIA H200'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert engine.gpu_kind() == ("h200", 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert engine.gpu_kind() == ("h200", 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError, match="no GPU visible"):
        engine.gpu_kind()
