"""The vendor candidate of the GEMM family (kernels/gemm_vendor.py): judged ok through the real
evaluator + judge path, its exemption from the no-Triton-launch check never claimable by a
plug-in, and dispatched to by the tuned table and the entry points where it is the fastest."""
import json
import os

import pytest
import torch
from interpreted import cpu_interpreter_only, interpreter_runs

from kernelevolve.kernels import matmul as matmul_kernel
from kernelevolve.kernels import tuned
from kernelevolve.kernels.gemm_vendor import PADDED_CONFIG, VENDOR_CONFIG, impl_of, is_vendor
from kernelevolve.tuner.execution.worker import CandidateWorker
from kernelevolve.tuner.measure import guards, launch_watch
from kernelevolve.tuner.measure.judge import Judge
from kernelevolve.tuner.measure.vendor import is_declared_vendor, vendor_configs_of

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}


def req(kernel_ref, problem, config):
    return {"op": "evaluate", "kernel_ref": kernel_ref, "problem": problem,
            "hardware": "cpu-interpreter", "config": dict(config), "seed": 5}


@pytest.fixture(scope="module")
def worker():
    w = CandidateWorker(env=ENV)
    yield w
    w.close()


GEMM = {"M": 64, "N": 64, "K": 64, "dtype": "float16"}
BMM = {"B": 2, "M": 64, "N": 64, "K": 64, "dtype": "float16"}
MISALIGNED = {"M": 48, "N": 45, "K": 71, "dtype": "float16"}  # rows of 142 and 90 bytes


def test_trust_is_by_builtin_reference_and_exact_config():
    assert vendor_configs_of("matmul", GEMM) == []  # a name, not a reference: the driver resolves first
    for ref, problem in (("kernelevolve.search_spaces.matmul:TUNABLE", GEMM),
                         ("kernelevolve.search_spaces.gemm_epilogue:TUNABLE", GEMM),
                         ("kernelevolve.search_spaces.bmm:TUNABLE", BMM),
                         ("search_spaces.matmul:TUNABLE", GEMM)):  # (the pre-namespace reference of old runs too)
        assert is_declared_vendor(ref, VENDOR_CONFIG, problem), ref
    ref = "kernelevolve.search_spaces.matmul:TUNABLE"
    assert not is_declared_vendor(ref, {**VENDOR_CONFIG, "BLOCK_M": 64}, GEMM)
    assert not is_declared_vendor(ref, matmul_kernel.DEFAULT_CONFIG, GEMM)
    assert not is_declared_vendor(ref, VENDOR_CONFIG, {"M": -1})  # a problem the kernel refuses
    assert not is_declared_vendor("kernelevolve.search_spaces.softmax:TUNABLE", VENDOR_CONFIG, GEMM)
    assert not is_declared_vendor(f"{HERE}/attacks/vendor_claim.py:KERNEL", VENDOR_CONFIG, {"n": 64})
    assert not is_declared_vendor(f"{HERE}/attacks/vendor_claim.py:MATMUL", VENDOR_CONFIG, GEMM)
    assert impl_of(VENDOR_CONFIG) == "vendor" and impl_of(matmul_kernel.DEFAULT_CONFIG) == "triton"
    assert impl_of(PADDED_CONFIG) == "vendor"


def test_padded_operands_are_a_vendor_candidate_only_where_a_row_is_misaligned():
    for ref in ("kernelevolve.search_spaces.matmul:TUNABLE", "kernelevolve.search_spaces.gemm_epilogue:TUNABLE"):
        assert vendor_configs_of(ref, GEMM) == [VENDOR_CONFIG]
        assert vendor_configs_of(ref, {**GEMM, "K": 60}) == [VENDOR_CONFIG, PADDED_CONFIG]  # 120-byte rows of A
        assert vendor_configs_of(ref, {**GEMM, "N": 45}) == [VENDOR_CONFIG, PADDED_CONFIG]  # 90-byte rows of B, C
        assert vendor_configs_of(ref, MISALIGNED) == [VENDOR_CONFIG, PADDED_CONFIG]
        # cuBLAS writing a misaligned C in place is no candidate (kernels/gemm_vendor.py says why)
        assert not is_declared_vendor(ref, {**PADDED_CONFIG, "PAD_OUTPUT": False}, {**GEMM, "N": 45})
        assert vendor_configs_of(ref, {**GEMM, "K": 60, "dtype": "float32"}) == [VENDOR_CONFIG]  # 240 bytes
        assert is_declared_vendor(ref, PADDED_CONFIG, MISALIGNED)
        assert not is_declared_vendor(ref, PADDED_CONFIG, GEMM)  # declared for misaligned rows only
    assert vendor_configs_of("kernelevolve.search_spaces.bmm:TUNABLE", {**BMM, "N": 45}) == [VENDOR_CONFIG]


@interpreter_runs
@pytest.mark.parametrize("b_kmajor, activation", [(False, "gelu"), (True, "gelu"), (False, "relu"), (True, "relu"),
                                                  (False, "silu"), (False, "none")])
def test_cublas_on_padded_operands_computes_the_same_product(b_kmajor, activation):
    from kernelevolve.kernels.gemm_vendor import launch_vendor
    from kernelevolve.kernels.matmul import Epilogue

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(37, 71, generator=gen)
    b = torch.randn(45, 71, generator=gen).t() if b_kmajor else torch.randn(71, 45, generator=gen)
    bias, residual = torch.randn(45, generator=gen), torch.randn(37, 45, generator=gen)
    plain, padded = torch.empty(37, 45), torch.full((37, 45), float("nan"))
    ep = Epilogue(bias=bias, activation=activation, residual=residual)
    launch_vendor(a, b, plain, ep, VENDOR_CONFIG)
    act = {"gelu": torch.nn.functional.gelu, "relu": torch.relu, "silu": torch.nn.functional.silu,
           "none": lambda x: x}[activation]
    want = act(a.double() @ b.double() + bias.double()) + residual.double()
    launch_vendor(a, b, padded, ep, PADDED_CONFIG)  # N = 45: C through a padded buffer
    assert torch.allclose(padded.double(), want, atol=1e-4) and torch.allclose(padded, plain, atol=1e-5)
    launch_vendor(a, b, padded, Epilogue(), PADDED_CONFIG)  # no epilogue: the product alone
    assert torch.allclose(padded.double(), a.double() @ b.double(), atol=1e-4)


@interpreter_runs
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_vendor_matmul_is_judged_ok(worker, dtype):
    rec = worker.request(req("kernelevolve.search_spaces.matmul:TUNABLE",
                             {"M": 48, "N": 40, "K": 72, "dtype": dtype}, VENDOR_CONFIG), timeout_s=300)
    assert rec["status"] == "ok", rec
    assert rec["impl"] == "vendor" and rec["latency_ms"] > 0 and rec["judge_checks"] >= 4


@pytest.mark.parametrize("ref, problem", [
    ("kernelevolve.search_spaces.matmul:TUNABLE", MISALIGNED),
    ("kernelevolve.search_spaces.gemm_epilogue:TUNABLE", {**MISALIGNED, "dtype": "float32", "N": 45, "K": 70,
                                                          "activation": "silu", "bias": True, "residual": True}),
])
@interpreter_runs
def test_the_padded_vendor_gemm_is_judged_ok(worker, ref, problem):
    rec = worker.request(req(ref, problem, PADDED_CONFIG), timeout_s=300)
    assert rec["status"] == "ok", rec
    assert rec["impl"] == "vendor" and rec["judge_checks"] >= 4


@interpreter_runs
def test_the_vendor_fused_gemm_is_judged_ok_and_a_triton_config_still_is_triton(worker):
    problem = {"M": 40, "N": 48, "K": 64, "dtype": "float32", "activation": "gelu", "bias": True,
               "residual": True}
    ref = "kernelevolve.search_spaces.gemm_epilogue:TUNABLE"
    rec = worker.request(req(ref, problem, VENDOR_CONFIG), timeout_s=300)
    assert rec["status"] == "ok" and rec["impl"] == "vendor", rec
    triton_cfg = {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 1, "SPLIT_K": 1,
                  "SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "num_warps": 4, "num_stages": 1}
    rec = worker.request(req(ref, problem, triton_cfg), timeout_s=300)
    assert rec["status"] == "ok" and rec["impl"] == "triton", rec


@interpreter_runs
@pytest.mark.parametrize("obj", ["KERNEL", "MATMUL"])
def test_a_plugin_cannot_claim_the_exemption(worker, obj):
    problem = {} if obj == "KERNEL" else {"M": 32, "N": 32, "K": 32, "dtype": "float32"}
    rec = worker.request(req(f"{HERE}/attacks/vendor_claim.py:{obj}", problem, VENDOR_CONFIG), timeout_s=300)
    assert rec["status"] == "incorrect", rec
    assert launch_watch.NO_LAUNCH in rec["error"] and rec["impl"] == "triton", rec
    # the built-in's own vendor candidate, next in the same processes, is still exempt
    rec = worker.request(req("kernelevolve.search_spaces.matmul:TUNABLE",
                             {"M": 32, "N": 32, "K": 32, "dtype": "float32"}, VENDOR_CONFIG), timeout_s=300)
    assert rec["status"] == "ok", rec


@interpreter_runs
def test_a_retiming_judges_the_vendor_row_as_vendor_and_the_triton_rows_as_triton(worker):
    """The end-of-study re-timing holds the finalists and the vendor paths beside them: the parent
    names the vendor rows in its `begin`, so that the vendor's library call (aten.mm, which the
    watched timed calls name) is exempt there and nowhere else."""
    problem = {"M": 48, "N": 40, "K": 32, "dtype": "float32"}
    triton_cfg = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1, "SPLIT_K": 1,
                  "SPLIT_K_REDUCE": "atomic", "PERSISTENT": False, "num_warps": 4, "num_stages": 1}
    rec = worker.request({"op": "retime", "kernel_ref": "kernelevolve.search_spaces.matmul:TUNABLE",
                          "problem": problem, "hardware": "cpu-interpreter", "rounds": 1, "bench": {},
                          "configs": [triton_cfg, dict(VENDOR_CONFIG)]}, timeout_s=300)
    assert [r["status"] for r in rec["rows"]] == ["ok", "ok"], rec
    # a plug-in's GEMM that calls torch.mm in its timed calls is not a vendor row, whatever its config
    rec = worker.request({"op": "retime", "kernel_ref": f"{HERE}/attacks/library_call.py:KERNEL",
                          "problem": {}, "hardware": "cpu-interpreter", "rounds": 1, "bench": {},
                          "configs": [{"cheat": False, "BLOCK": 128}, {"cheat": True, "BLOCK": 128}]},
                         timeout_s=300)
    honest, cheat = rec["rows"]
    assert honest["status"] == "ok" and cheat["status"] == "incorrect", rec
    assert "aten.mm" in cheat["error"], cheat


def test_the_judge_exempts_only_the_rows_the_parent_named():
    j = Judge()
    j.vendor_rows = {1}
    calls = {"library_calls": ["aten.mm"]}
    assert j.judge({**_evidence(2.0, 1), **calls, "row": 1})["ok"]
    assert "aten.mm" in j.judge({**_evidence(2.0, 1), **calls, "row": 0})["reason"]


def _evidence(out_value, launches):
    from kernelevolve.tuner.measure.timed_outputs import GUARD_ELEMENTS, guarded_output

    x = torch.randn(64)
    g = guards.guard_inputs((x,))
    buf, out = guarded_output(x)
    out.copy_(x * out_value)
    return {"kind": "verify", "what": "", "row": None, "guard": GUARD_ELEMENTS, "outs": [[buf, None]],
            "shape": [64], "calls": None, "ref": (2 * x).double(), "reduction": None,
            "launches": launches, "inputs": [[t.buf, t.pristine_buf, t.lo, t.hi] for _, t in g.guarded],
            "seal": ""}


def test_the_judge_waives_only_the_launch_check_and_only_when_told():
    j = Judge()
    assert launch_watch.NO_LAUNCH in j.judge(_evidence(2.0, 0))["reason"]
    j.vendor = True  # what the parent's `begin` says for a built-in's vendor config
    assert j.judge(_evidence(2.0, 0))["ok"]
    assert "relative error" in j.judge(_evidence(1.0, 0))["reason"]  # outputs still checked


# -- dispatch ----------------------------------------------------------------------------------
def _table(tmp_path, kernel, problem, config, dtype="float32"):
    entry = {"kernel": kernel, "problem": problem, "shape_bucket": tuned.shape_bucket(problem),
             "dtype": dtype, "hardware": "cpu-interpreter", "device_match": [], "interpreter": True,
             "config": config, "impl": impl_of(config), "latency_ms": 0.1}
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"schema": tuned.SCHEMA, "entries": [entry]}))
    return str(path)


@pytest.fixture
def vendor_table(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    tuned.load_table(_table(tmp_path, "matmul", {"M": 64, "N": 32, "K": 48, "dtype": "float32"},
                            VENDOR_CONFIG))
    yield
    tuned.clear_table()


@cpu_interpreter_only
def test_the_table_dispatches_to_the_vendor_path(vendor_table, monkeypatch):
    a, b = torch.randn(60, 48), torch.randn(48, 30)
    cfg = tuned.config_for("matmul", {"M": 60, "N": 30, "K": 48}, a.dtype, a.device,
                           matmul_kernel.DEFAULT_CONFIG)
    assert is_vendor(cfg)
    launched = []
    monkeypatch.setattr(matmul_kernel, "launch_vendor", lambda *args: launched.append(args) or
                        torch.mm(args[0], args[1], out=args[2]))
    out = matmul_kernel.matmul(a, b)
    assert launched and torch.allclose(out, a @ b, atol=1e-4)
    with launch_watch.count_launches(interpreter=True) as n:
        out = matmul_kernel.matmul(a, b, config=matmul_kernel.DEFAULT_CONFIG)  # an explicit config wins
    assert n.n == 1 and torch.allclose(out, a @ b, atol=1e-2)


@cpu_interpreter_only
def test_the_operators_dispatch_to_the_vendor_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from kernelevolve.kernels import ops  # noqa: F401 - registers torch.ops.kernelevolve.*

    problem = {"M": 32, "N": 16, "K": 32, "dtype": "float32", "activation": "relu", "bias": True,
               "residual": False}
    tuned.load_table(_table(tmp_path, "gemm_epilogue", problem, VENDOR_CONFIG))
    try:
        x, wt, bias = torch.randn(32, 32), torch.randn(32, 16), torch.randn(16)
        with launch_watch.count_launches(interpreter=True) as n:
            y = torch.ops.kernelevolve.linear(x, wt, bias, None, "relu")
        assert n.n == 0  # cuBLAS/CPU BLAS through torch: no Triton kernel
        assert torch.allclose(y, torch.relu(x @ wt + bias), atol=1e-4)
    finally:
        tuned.clear_table()


# -- records, summary, export, report --------------------------------------------------------
def _rec(cid, config, ms, impl="triton", status="ok"):
    return {"candidate_id": cid, "config": config, "latency_ms": ms, "status": status, "impl": impl}


TRITON_A = {"BLOCK_M": 32, "num_warps": 4}
TRITON_B = {"BLOCK_M": 64, "num_warps": 4}


def test_the_summary_names_the_dispatched_winner_and_the_best_triton_kernel():
    from kernelevolve.tuner.execution.studies import retime_finalists, summarize

    records = [_rec("v", VENDOR_CONFIG, 1.0, "vendor"), _rec("a", TRITON_A, 2.0), _rec("b", TRITON_B, 3.0),
               _rec("x", {"BLOCK_M": 16}, 0.5, status="incorrect")]
    top = retime_finalists(records, top_k=1)  # the vendor path alone: its best Triton rival joins it
    assert [r["candidate_id"] for r in top] == ["v", "a"]
    retimed = {"status": "ok", "baseline_ms": 1.1,
               "rows": [{"config": VENDOR_CONFIG, "latency_ms": 1.2}, {"config": TRITON_A, "latency_ms": 1.9}]}
    s = summarize(records, retimed)
    assert s["best"]["candidate_id"] == "v" and s["best"]["latency_ms"] == 1.2
    assert s["best_triton"]["candidate_id"] == "a" and s["best_triton"]["latency_ms"] == 1.9
    assert s["best_triton"]["measured_by"] == "retime_interleaved"
    # Triton faster: the two are the same record
    retimed["rows"][1]["latency_ms"] = 0.9
    s = summarize(records, retimed)
    assert s["best"]["candidate_id"] == s["best_triton"]["candidate_id"] == "a"
    # the vendor path screened behind the top-k still goes to the re-timing (every vendor config
    # once, its fastest correct record; one that failed does not)
    padded = {**VENDOR_CONFIG, "PAD_BYTES": 128}
    later = [_rec("a", TRITON_A, 1.0), _rec("b", TRITON_B, 1.5), _rec("v", VENDOR_CONFIG, 2.0, "vendor"),
             _rec("v2", VENDOR_CONFIG, 2.5, "vendor"), _rec("p", padded, 0.9, "vendor", status="runtime_error")]
    assert [r["candidate_id"] for r in retime_finalists(later, top_k=2)] == ["a", "b", "v"]
    assert [r["candidate_id"] for r in retime_finalists(later, top_k=3)] == ["a", "b", "v"]
    # no correct Triton candidate: nothing to call the best Triton kernel
    s = summarize([_rec("v", VENDOR_CONFIG, 1.0, "vendor"), _rec("a", TRITON_A, 2.0, status="incorrect")], None)
    assert s["best"]["impl"] == "vendor" and s["best_triton"] is None


def test_the_vendor_config_is_evaluated_first_and_never_told_to_the_sampler():
    from kernelevolve.tuner.search.constrained import ConstrainedSearch
    from kernelevolve.tuner.search.space import Choice, Space

    space = Space((Choice("BLOCK_M", (16, 32, 64)),))
    s = ConstrainedSearch(space, "tpe", 0, "k", outside=[VENDOR_CONFIG])
    assert s.suggest("t0") == VENDOR_CONFIG
    s.on_trial_complete("t0", {"objective": -3.0})
    first = s.suggest("t1")
    assert set(first) == {"BLOCK_M"}
    s.on_trial_complete("t1", {"objective": -2.0})
    assert all(set(p) == {"BLOCK_M"} for p, _, _ in s.history())  # the sampler saw Triton points only
    assert s.proposals()["outside"] == 1
    # a resumed study: the journaled vendor candidate is not evaluated again, nor told to the sampler
    r = ConstrainedSearch(space, "tpe", 0, "k", outside=[VENDOR_CONFIG])
    assert r.replay([{"config": VENDOR_CONFIG, "status": "ok", "objective": -3.0},
                     {"config": first, "status": "ok", "objective": -2.0}]) == 1
    assert r.suggest("t2") != VENDOR_CONFIG
    # a journal of another version of the kernel, with a vendor config this study no longer
    # evaluates: kept out of the sampler, and the resume goes on
    old = ConstrainedSearch(space, "tpe", 0, "k", outside=[VENDOR_CONFIG])
    assert old.replay([{"config": {**VENDOR_CONFIG, "PAD_BYTES": 16}, "status": "ok", "objective": -1.0},
                       {"config": first, "status": "ok", "objective": -2.0}]) == 1


class _Run:
    def __init__(self, params, metrics, tags):
        import types

        self.data = types.SimpleNamespace(params=params, metrics=metrics, tags=tags)
        self.info = types.SimpleNamespace(run_id="f" * 32, status="FINISHED")


def _parent_run():
    params = {"best.IMPL": "vendor", "best_triton.BLOCK_M": "64", "best_triton.num_warps": "4",
              "problem.M": "64", "problem.N": "64", "problem.K": "64", "problem.dtype": "float16"}
    metrics = {"best_latency_ms": 0.5, "best_triton_latency_ms": 0.8, "candidates": 5.0}
    tags = {"best_impl": "vendor", "best_measured_by": "retime_interleaved", "hardware": "h100",
            "kernel_ref": "kernelevolve.search_spaces.matmul:TUNABLE", "timing": "gpu",
            "best_triton_measured_by": "retime_interleaved"}
    return _Run(params, metrics, tags)


def test_the_exported_entry_dispatches_vendor_and_keeps_the_triton_config():
    from kernelevolve.tuner.deploy.export import entry_of, triton_configs_source

    e = entry_of(_parent_run())
    assert e["kernel"] == "matmul" and e["config"] == VENDOR_CONFIG and e["impl"] == "vendor"
    assert e["triton_config"] == {"BLOCK_M": 64, "num_warps": 4} and e["triton_latency_ms"] == 0.8
    tuned.Table({"schema": tuned.SCHEMA, "entries": [e]})  # what kernels/tuned.py reads
    src = triton_configs_source({"experiment": "x", "created": "now", "entries": [e]})
    assert "'BLOCK_M': 64" in src and "IMPL" not in src  # a vendor path is no triton.Config


def test_the_report_shows_the_dispatched_choice_beside_the_best_triton_kernel():
    from kernelevolve.tuner.review import report
    from kernelevolve.tuner.review.text import _best_blocks

    [row] = report.best_rows({"matmul/64x64x64/h100": _parent_run()})
    assert row["dispatched"] == "vendor" and row["config"] == VENDOR_CONFIG
    assert row["triton_ms"] == 0.8 and row["triton_config"] == {"BLOCK_M": 64, "num_warps": 4}
    shown = report.display_best([row])
    assert {"dispatched", "triton_ms", "triton_config"} <= set(report.BEST_COLUMNS)
    text = _best_blocks(shown, 100)
    assert "dispatched vendor" in text and "triton_ms 0.8" in text and '"BLOCK_M": 64' in text


def test_the_evaluator_asks_no_constraint_of_the_declared_vendor_config():
    from kernelevolve.kernels.matmul import MatmulProblem
    from kernelevolve.tuner.experiment import hardware, registry
    from kernelevolve.tuner.measure.constraints import is_vendor_config, violations

    tunable = registry.load("kernelevolve.search_spaces.matmul:TUNABLE")
    problem, hw = MatmulProblem(M=64, N=64, K=64), hardware.profile("cpu-interpreter")
    assert is_vendor_config(tunable.kernel, problem, VENDOR_CONFIG)
    assert violations(tunable, problem, hw, VENDOR_CONFIG) == []
    assert not is_vendor_config(tunable.kernel, problem, {**VENDOR_CONFIG, "BLOCK_M": 16})
    assert not is_vendor_config(tunable.kernel, problem, PADDED_CONFIG)  # aligned rows: not declared
    assert is_vendor_config(tunable.kernel, MatmulProblem(M=64, N=45, K=64), PADDED_CONFIG)


@cpu_interpreter_only
def test_the_vendor_bmm_is_judged_ok_and_dispatched(worker, tmp_path, monkeypatch):
    rec = worker.request(req("kernelevolve.search_spaces.bmm:TUNABLE",
                             {"B": 3, "M": 24, "N": 40, "K": 32, "dtype": "float16"}, VENDOR_CONFIG),
                         timeout_s=300)
    assert rec["status"] == "ok" and rec["impl"] == "vendor", rec
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from kernelevolve.kernels import ops  # noqa: F401 - registers torch.ops.kernelevolve.*

    tuned.load_table(_table(tmp_path, "bmm", {"B": 3, "M": 24, "N": 40, "K": 32, "dtype": "float32"},
                            VENDOR_CONFIG))
    try:
        a, b = torch.randn(3, 24, 32), torch.randn(3, 32, 40)
        with launch_watch.count_launches(interpreter=True) as n:
            y = torch.ops.kernelevolve.bmm(a, b)
        assert n.n == 0 and torch.allclose(y, torch.bmm(a, b), atol=1e-4)
    finally:
        tuned.clear_table()


@cpu_interpreter_only
def test_the_pad_copy_fills_past_the_edges_with_zeros_in_one_pass(monkeypatch):
    """kernels/gemm_passes.copy_rows (the padded path's copies, interpreted here): the values inside,
    zeros in the padded columns and rows, from a source whose rows start misaligned; rows narrower
    and wider than one program's block."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from kernelevolve.kernels.gemm_passes import BLOCK, copy_rows

    gen = torch.Generator().manual_seed(1)
    for rows, width, pad_rows, pad_cols in ((9, 36, 3, 4), (5, BLOCK + 37, 2, 11), (70, 3, 1, 5)):
        src = torch.randn(rows, width + 1, generator=gen)[:, 1:]  # rows width+1 apart, misaligned
        buf = torch.full((rows + pad_rows, width + pad_cols + 24), float("nan"))
        dst = copy_rows(src, buf[:, :width + pad_cols])
        assert torch.equal(dst[:rows, :width], src)
        assert (dst[:rows, width:] == 0).all() and (dst[rows:] == 0).all()
        assert buf[:, width + pad_cols:].isnan().all()  # nothing written past the destination's columns
    with pytest.raises(ValueError, match="at least as large"):
        copy_rows(src, buf[:rows - 1, :width])


@cpu_interpreter_only
@pytest.mark.parametrize("activation", ["none", "relu", "gelu", "silu"])
def test_the_epilogue_pass_applies_bias_activation_and_residual_in_fp32(monkeypatch, activation):
    """kernels/gemm_passes.epilogue_pass: out of a wider buffer (the padded path's C) or in place,
    the template's epilogue order (bias, activation, residual), rounded once to the output dtype."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from kernelevolve.kernels.gemm_passes import epilogue_pass

    gen = torch.Generator().manual_seed(2)
    act = {"none": lambda x: x, "relu": torch.relu, "gelu": torch.nn.functional.gelu,
           "silu": torch.nn.functional.silu}[activation]
    wide = torch.randn(13, 40, generator=gen).half()
    src = wide[:, :37]
    bias, residual = torch.randn(37, generator=gen).half(), torch.randn(37, 13, generator=gen).half().t()
    out = torch.full((13, 37), float("nan")).half()
    epilogue_pass(src, out, bias, activation, residual)  # a transposed residual: strides (1, 13)
    want = (act(src.float() + bias.float()) + residual.float()).half()
    assert torch.allclose(out.float(), want.float(), atol=2e-3, rtol=2e-3)
    assert wide[:, 37:].isfinite().all()  # the source untouched
    in_place = src.clone()
    epilogue_pass(in_place, in_place, bias, activation)
    assert torch.allclose(in_place.float(), act(src.float() + bias.float()).half().float(), atol=2e-3, rtol=2e-3)
    with pytest.raises(ValueError, match="its own shape"):
        epilogue_pass(src, torch.empty(14, 37).half(), bias, activation)
    with pytest.raises(ValueError, match="unknown activation"):
        epilogue_pass(src, out, bias, "tanh")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("config", [VENDOR_CONFIG, PADDED_CONFIG], ids=["vendor", "padded"])
def test_cublaslt_bias_relu_epilogue_on_the_gpu(dtype, config):
    """On CUDA, bias + ReLU go through torch._addmm_activation (cuBLASLt's epilogue): the same
    result as the float64 reference, on aligned and misaligned rows, plain and padded."""
    from kernelevolve.kernels.gemm_vendor import launch_vendor
    from kernelevolve.kernels.matmul import Epilogue

    dt = getattr(torch, dtype)
    for M, N, K in ((256, 512, 384), (300, 257, 129)):
        gen = torch.Generator(device="cuda").manual_seed(M)
        a = torch.randn(M, K, device="cuda", dtype=dt, generator=gen)
        b = torch.randn(K, N, device="cuda", dtype=dt, generator=gen)
        bias = torch.randn(N, device="cuda", dtype=dt, generator=gen)
        out = torch.full((M, N), float("nan"), device="cuda", dtype=dt)
        launch_vendor(a, b, out, Epilogue(bias=bias, activation="relu"), config)
        want = torch.relu(a.double() @ b.double() + bias.double())
        err = (out.double() - want).abs().max().item()
        assert err <= 0.02 * want.abs().max().item(), (M, N, K, err)
        assert (out >= 0).all()
