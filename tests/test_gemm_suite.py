"""The GEMM suite's generated shapes, its shards and its table (benchmarks/gemm_shapes.py,
gemm_suite.py, gemm_report.py, helion_peer.py), on the CPU: the generator is deterministic per
seed and keeps to its stated distributions' bounds and shares; the shards cover every job exactly
once; a merge of shards gives one table with its geomeans; a missing helion is a 'not run' row.
No timing is asserted."""
import json
import math

import pytest
import torch

from benchmarks import engine, gemm_report as report, gemm_shapes as gs

SEEDS = [gs.DEFAULT_SEED, 0, 1, 7, 12345]


def _args(*extra):
    from benchmarks import gemm_suite

    return gemm_suite.parse(["--out", "unused", *extra])


@pytest.mark.parametrize("seed", SEEDS)
def test_the_generator_is_deterministic_per_seed(seed):
    assert gs.generate(24, seed) == gs.generate(24, seed)
    assert gs.fused_layers(4, seed) == gs.fused_layers(4, seed)
    assert gs.generate(24, seed) != gs.generate(24, seed + 1000)
    assert gs.generate(24, seed)[:8] != gs.fused_layers(8, seed)  # its own stream


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [24, 40])
def test_the_shapes_keep_to_the_stated_bounds_and_shares(seed, n):
    shapes = gs.generate(n, seed)
    assert len(shapes) == n and [s.index for s in shapes] == list(range(n))
    for s in shapes:
        assert gs.M_RANGE[0] <= s.M <= gs.M_RANGE[1]
        assert gs.NK_RANGE[0] <= s.N <= gs.NK_RANGE[1] and gs.NK_RANGE[0] <= s.K <= gs.NK_RANGE[1]
        if s.ragged:  # left as drawn: none a multiple of 16
            assert s.M % 16 and s.N % 16 and s.K % 16
        else:
            assert s.M % 16 == 0 and s.N % 16 == 0
            assert s.K % 16 == 0 or (s.odd_k and s.K % 2 == 1)
        if s.odd_k:
            assert s.K % 2 == 1
    assert sum(s.ragged for s in shapes) == round(n * gs.RAGGED_SHARE)
    assert sum(s.odd_k for s in shapes) == round(n * gs.ODD_K_SHARE)
    non16 = sum(1 for s in shapes if s.M % 16 or s.N % 16 or s.K % 16)
    assert non16 >= round(n * gs.RAGGED_SHARE)
    dtypes = [s.dtype for s in shapes]
    assert dtypes.count("bfloat16") == n // 2 and dtypes.count("float16") == n - n // 2
    assert len({(s.M, s.N, s.K, s.dtype) for s in shapes}) == n  # no repeated study


def test_the_draws_spread_over_the_log_range():
    """Log-uniform: over many draws, each decade-ish third of log(M) gets a fair share."""
    shapes = gs.generate(600, 3)
    lo, hi = (math.log(v) for v in gs.M_RANGE)
    thirds = [0, 0, 0]
    for s in shapes:
        thirds[min(2, int(3 * (math.log(s.M) - lo) / (hi - lo)))] += 1
    assert all(t > 120 for t in thirds), thirds


def test_the_fused_layers_are_bias_and_each_activation():
    from kernelevolve.kernels.gemm_epilogue import FusedGemmProblem

    layers = gs.fused_layers(6, gs.DEFAULT_SEED)
    assert sorted(s.activation for s in layers) == sorted(list(gs.ACTIVATIONS) * 2)
    for s in layers:
        p = FusedGemmProblem(**s.fields())
        assert p.bias and not p.residual and p.activation in ("relu", "gelu", "silu")
        assert gs.M_RANGE[0] <= s.M <= gs.M_RANGE[1]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 28, 40])
def test_the_shards_cover_every_job_exactly_once(n):
    jobs = list(range(28))
    parts = [gs.shard(jobs, i, n) for i in range(1, n + 1)]
    assert sorted(j for p in parts for j in p) == jobs
    assert sum(len(p) for p in parts) == len(jobs)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    firsts = [next(i for i, p in enumerate(parts) if j in p) for j in range(min(n, len(jobs)))]
    assert len(set(firsts)) == len(firsts)  # the first n jobs (Helion's) in n different shards


def test_the_suite_shards_are_its_jobs_and_helion_spreads():
    from benchmarks import gemm_suite

    whole = [j.label for j in gemm_suite.jobs(_args())]
    assert len(whole) == 24 + 4 and len(set(whole)) == len(whole)
    parts = [gemm_suite.jobs(_args("--shard", f"{i}/6")) for i in range(1, 7)]
    assert sorted(j.label for p in parts for j in p) == sorted(whole)
    helion = [sum(1 for j in p if j.section == "gemm" and j.index < 4) for p in parts]
    assert sum(helion) == 4 and max(helion) == 1
    for bad in ("0/3", "4/3", "x"):
        with pytest.raises(ValueError):
            gs.parse_shard(bad)
    assert not any(j.section == "conv" for j in gemm_suite.jobs(_args()))  # hand-picked: opt-in
    assert [j.section for j in gemm_suite.jobs(_args("--conv", "--only", "conv"))] == ["conv"] * 3


@pytest.mark.parametrize("kind", ["h100", "h200"])
def test_a_shard_is_one_experiment_of_its_shapes(kind):
    from benchmarks import gemm_suite

    args = _args("--shard", "2/6")
    todo = gemm_suite.jobs(args)
    exp, _ = engine.load(gemm_suite.build(todo, args, engine.target(kind)))
    studies = list(exp.studies())
    assert len(studies) == len(todo) and {st.kernel_name for st in studies} <= {"matmul", "gemm_epilogue"}
    assert exp.search.samples == 40 and exp.search.concurrency == 8 and exp.timing.clock == "auto"
    assert not exp.search.start_points and all(not e.start_points for e in exp.kernels)
    clean, _ = engine.load(gemm_suite.build(todo, _args("--shard", "2/6", "--clock", "clean"), engine.target(kind)))
    assert {st.clock.clock for st in clean.studies()} == {"clean"}  # a named clock for every study


def test_the_rows_of_a_shape_are_timed_by_its_studys_clock():
    """Ours and every peer of a shape: the clock its study resolved before the search, as its
    summary names it, and where it came from; without a summary, the same rule on the target."""
    from benchmarks import gemm_suite
    from kernelevolve.kernels.matmul import SPEC

    args = _args("--target", "h100")
    tiny = SPEC.problem(M=256, N=256, K=256, dtype="bfloat16")
    big = SPEC.problem(M=8192, N=8192, K=8192, dtype="bfloat16")
    summary = {"study": "matmul/x/h100", "clock": "cudagraph", "clock_rule": "auto: roofline 0.13 us < 50 us"}
    assert gemm_suite.study_clock(summary, SPEC, big, args) == ("cudagraph", "study: auto: roofline 0.13 us < 50 us")
    clock, source = gemm_suite.study_clock(None, SPEC, tiny, args)
    assert clock == "cudagraph" and source.startswith("no study summary; rule: auto: roofline")
    assert gemm_suite.study_clock(None, SPEC, big, args)[0] == "clean"
    assert gemm_suite.study_clock(None, SPEC, tiny, _args("--target", "h100", "--clock", "do_bench"))[0] == "do_bench"
    assert gemm_suite.study_clock(None, SPEC, tiny, _args("--target", "cpu-interpreter"))[0] == "wall"


def test_the_cpu_suite_is_tiny_float16_and_loads_for_the_interpreter():
    from benchmarks import gemm_suite

    args = _args("--target", "cpu-interpreter")
    todo = gemm_suite.jobs(args)
    assert [j.section for j in todo] == ["gemm"] * 4 + ["fused"]
    assert all(j.fields["dtype"] == "float16" and max(j.fields["M"], j.fields["N"], j.fields["K"]) <= 48 for j in todo)
    exp, _ = engine.load(gemm_suite.build(todo, args, engine.target("cpu-interpreter")))
    assert exp.targets[0].profile.interpreter and exp.search.samples == 2


def _row(shape, impl, ms, section="gemm", **kw):
    flops = 2e12
    return {"section": section, "shape": shape, "impl": impl, "index": int(shape[-1]), "tuning_s": 1.0,
            "latency_ms": ms, "tflops": flops / (ms * 1e-3) / 1e12, "verified": True, **kw}


def test_a_merge_of_shards_gives_one_table_with_its_geomeans(tmp_path):
    meta = {"args": {"seed": 1, "shapes": 2, "fused": 0, "clock": "clean"}, "sweep_s": 10.0, "studies": 1,
            "target": "h100"}
    a = [_row("s0", "ours", 1.0, candidates=40), _row("s0", "cuBLAS", 2.0),
         _row("s0", "Helion autotune (quick)", 1.0, candidates=90)]
    b = [_row("s1", "ours", 2.0, dispatched_impl="vendor"), _row("s1", "ours best Triton", 4.0),
         _row("s1", "cuBLAS", 2.0), {"section": "gemm", "shape": "s1", "impl": "Helion autotune (quick)",
                                     "index": 1, "tuning_s": None, "error": "not run: helion not installed"}]
    for name, rows, shard in (("x.json", a, "1/2"), ("y.json", b, "2/2")):
        (tmp_path / name).write_text(json.dumps({"meta": dict(meta, shard=shard), "rows": rows}))
    # a shard cut short by its time limit: its .partial.json (rows so far) merges too
    (tmp_path / "z.partial.json").write_text(json.dumps([_row("s2", "ours", 1.0, shard="3/3"), _row("s2", "cuBLAS", 1.0)]))
    text = report.merge([str(tmp_path / n) for n in ("x.json", "y.json", "z.partial.json")], tmp_path / "m")
    data = json.loads((tmp_path / "m" / "gemm_suite.json").read_text())
    assert len(data["rows"]) == 9 and len(data["meta"]["shards"]) == 3
    g = {(x["ours"], x["peer"]): x for x in data["geomeans"]}
    assert g[("ours", "cuBLAS")]["n"] == 3 and g[("ours", "cuBLAS")]["geomean"] == pytest.approx(2.0 ** (1 / 3))
    assert g[("ours", "Helion autotune (quick)")]["n"] == 1
    # best Triton: s0's winner is Triton (no impl recorded there: Triton), s1's is vendor
    assert g[("ours best Triton", "cuBLAS")]["geomean"] == pytest.approx((2.0 * 0.5 * 1.0) ** (1 / 3))
    assert "not run: helion not installed" in text and "dispatched: vendor" in text
    # each row names its clock and where it came from (its study's)
    ours = [_row("s3", "ours", 1.0, clock="cudagraph", clock_from="study: auto: roofline 3 us < 50 us"),
            _row("s3", "cuBLAS", 1.0, clock="do_bench", clock_failed="cudagraph",
                 clock_from="study: auto: roofline 3 us < 50 us")]
    text = report.write(tmp_path / "c", ours, [dict(meta, args=dict(meta["args"], clock="auto"))])
    assert "| cudagraph; study: auto: roofline 3 us < 50 us |" in text
    assert "| do_bench (cudagraph failed here); study: auto" in text and "clock `auto` (per study" in text


def test_a_missing_helion_is_a_not_run_row(monkeypatch):
    from benchmarks import gemm_peers, gemm_suite, helion_peer

    monkeypatch.setattr(helion_peer, "_MISSING", "ModuleNotFoundError: No module named 'helion'")
    assert helion_peer.available() == "not run: helion not installed"
    args = _args("--target", "cpu-interpreter")
    job = gemm_suite.jobs(args)[0]
    impl, make, need = [p for p in gemm_peers.of(job, args) if p[0].startswith("Helion")][0]
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    r = gemm_suite.timed_peer("gemm", job.label, impl, make, (a, b), a @ b, 1.0, float("inf"), need, {})
    assert r["error"] == "not run: helion not installed" and r["tuning_s"] is None
    assert not any(p[0].startswith("Helion") for p in gemm_peers.of(gemm_suite.jobs(args)[1], args))


def test_records_with_an_impl_give_the_best_triton_config():
    from benchmarks import gemm_suite

    assert gemm_suite.impl_of({"config": {"IMPL": "vendor"}}) == "vendor"
    assert gemm_suite.impl_of({"tags": {"impl": "triton"}, "config": {}}) == "triton"
    assert gemm_suite.impl_of({"config": {"BLOCK_M": 64}}) is None


def test_the_helion_kernel_is_correct_in_the_interpreter():
    """Helion's matmul (the peer's kernel) at helion's default config, no search (the autotuner
    times on CUDA); skipped where helion is not installed."""
    pytest.importorskip("helion")
    from benchmarks import helion_peer

    a = torch.randn(40, 35, dtype=torch.float16)
    b = torch.randn(35, 24, dtype=torch.float16)
    fn, tuning_s, cand, extra = helion_peer.tune(a, b, effort="none")
    from kernelevolve.tuner.measure.verify import check

    assert check(fn(), a.double() @ b.double()).ok and cand == 0


def test_a_vendor_winner_gets_the_best_triton_config_beside_it():
    """Records tagged impl: the dispatched winner (vendor here) and the fastest Triton config, each
    launched, verified and timed (a stand-in spec: this branch has no vendor launcher)."""
    from types import SimpleNamespace

    from benchmarks import gemm_suite
    from benchmarks.side_by_side import time_together

    launched = []

    def launch(inputs, out, config):
        launched.append(config["IMPL"])
        out.copy_(inputs[0] @ inputs[1])

    spec = SimpleNamespace(name="matmul", make_output=lambda p, i: torch.empty(4, 4), launch=launch)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    records = [{"status": "ok", "latency_ms": 1.0, "config": {"IMPL": "vendor"}},
               {"status": "ok", "latency_ms": 2.0, "config": {"IMPL": "triton", "BLOCK_M": 64}},
               {"status": "ok", "latency_ms": 3.0, "config": {"IMPL": "triton", "BLOCK_M": 32}},
               {"status": "incorrect", "latency_ms": 0.5, "config": {"IMPL": "triton", "BLOCK_M": 16}}]
    summary = {"best": records[0], "counts": {"ok": 3, "incorrect": 1}}
    job = gemm_suite.Job("gemm 00 4x4x4 fp32", "gemm", "matmul", {}, 0)
    rows = time_together(gemm_suite.ours_rows(job, spec, None, (a, b), a.double() @ b.double(), 128.0, summary,
                                              {"tuning_s": 5.0}, {"candidates": 4}, records), "wall", gemm_suite.row)
    assert [r["impl"] for r in rows] == [report.OURS, report.BEST_TRITON]
    assert rows[0]["dispatched_impl"] == "vendor" and rows[1]["config"] == {"IMPL": "triton", "BLOCK_M": 64}
    assert all(r["verified"] and r["candidates"] == 4 and r["tuning_s"] == 5.0 for r in rows)
    assert "vendor" in launched and "triton" in launched
    # a Triton winner: one row, dispatched triton
    rows = time_together(gemm_suite.ours_rows(job, spec, None, (a, b), a.double() @ b.double(), 128.0,
                                              {"best": records[1], "counts": {"ok": 3}}, {"tuning_s": 5.0}, {},
                                              records), "wall", gemm_suite.row)
    assert [(r["impl"], r["dispatched_impl"]) for r in rows] == [(report.OURS, "triton")]


def test_a_row_whose_repetitions_split_is_flagged(tmp_path):
    meta = {"args": {"seed": 1, "shapes": 1, "fused": 0, "clock": "clean"}, "sweep_s": 1.0, "studies": 1,
            "target": "h100"}
    split = dict(_row("s0", "ours", 0.420), latency_p20_ms=0.166, latency_p80_ms=0.485)
    steady = dict(_row("s0", "cuBLAS", 0.70), latency_p20_ms=0.69, latency_p80_ms=0.71)
    assert report.unsteady(split) == "unsteady: p80 2.9x p20; " and report.unsteady(steady) == ""
    text = report.write(tmp_path / "u", [split, steady], [meta])
    assert sum("unsteady: p80 2.9x p20" in line for line in text.splitlines()) == 1


def test_the_slow_peers_come_after_every_other_row_and_the_store_is_kept_first(tmp_path, monkeypatch):
    """A shard cut short (a device call's limit) loses Helion's long tunes only: every shape's other
    rows come first, and the engine's records are copied out as soon as its sweep ends."""
    from benchmarks import gemm_suite

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    calls = []
    monkeypatch.setattr(gemm_suite.engine, "sweep", lambda *a, **k: engine.Sweep("x", "sqlite:///x", str(tmp_path), [], []))
    monkeypatch.setattr(gemm_suite.engine, "keep_store", lambda *a: calls.append("store") or "x.mlflow.db")
    monkeypatch.setattr(gemm_suite, "build", lambda *a: None)

    def rows(job, sw, args, deadline, late=False):
        calls.append((job.label, late))
        return [{"section": job.section, "shape": job.label, "impl": "Helion" if late else "ours"}]
    monkeypatch.setattr(gemm_suite, "shape_rows", rows)
    monkeypatch.setattr(gemm_suite.report, "write", lambda out, rows, meta, stem: calls.append(("write", len(rows))))
    assert gemm_suite.main(["--out", str(tmp_path), "--target", "cpu-interpreter", "--helion-shapes", "2"]) == 0
    assert calls[0] == "store"
    shapes = [c for c in calls[1:-1]]
    early, late = [c for c in shapes if not c[1]], [c for c in shapes if c[1]]
    assert shapes == early + late and len(late) == 2  # the two Helion shapes, after all the rest
    assert {c[0] for c in late} <= {c[0] for c in early} and len(early) == len(gemm_suite.jobs(_args("--target", "cpu-interpreter")))
    assert calls[-1] == ("write", len(shapes))


def test_the_helion_check_is_ours_at_least_as_fast_in_a_fifth_of_its_time():
    def row(shape, impl, ms, tuning, shard="1/2"):
        return {"section": "gemm", "shape": shape, "impl": impl, "latency_ms": ms, "tuning_s": tuning,
                "verified": True, "shard": shard}
    rows = [row("a", report.OURS, 1.0, 50.0), row("a", "Helion autotune (full)", 1.1, 300.0),  # wall 50 <= 60
            row("b", report.OURS, 1.0, 90.0), row("b", "Helion autotune (full)", 1.0, 300.0),   # a tie; wall 90 > 60
            row("c", report.OURS, 1.2, 10.0, "2/2"), row("c", "Helion autotune (full)", 1.0, 500.0),  # slower
            row("d", report.OURS, 1.0, 10.0), dict(row("d", "Helion autotune (full)", 0.5, 500.0), verified=False)]
    metas = [{"shard": "1/2", "sweep_s": 140.0, "studies": 7}, {"shard": "2/2", "sweep_s": 70.0, "studies": 7}]
    got = {c["shape"]: (c["holds_wall"], c["holds_amortised"]) for c in report.helion_check(rows, metas)}
    assert got == {"a": (True, True), "b": (False, True), "c": (False, False)}  # d: Helion's row not verified
    text = report.markdown(rows, [dict(m, args={"seed": 1, "shapes": 4, "fused": 0, "clock": "auto"}) for m in metas])
    assert "1 of 3 shapes by our study's wall, 2 of 3 amortised" in text


def test_a_shapes_rows_are_timed_together_in_interleaved_rounds(monkeypatch):
    """Every made and verified row of a shape is timed once a round, the order rotated round to
    round; its quantiles are the medians of its rounds'; a row whose timing fails says why, and
    rows already made (a skipped peer) pass through in place."""
    from benchmarks import gemm_suite, side_by_side

    order, per_call = [], {"a": iter([(1.0, 2.0, 3.0), (1.2, 2.4, 3.3), (0.9, 1.9, 2.9)]),
                           "b": iter([(5.0, 6.0, 7.0)] * 3)}

    def timed(fn, clock, rep_ms):
        name = fn()
        order.append(name)
        if name == "c":
            raise RuntimeError("cannot be timed here")
        return next(per_call[name]), clock

    monkeypatch.setattr(side_by_side, "timed", timed)
    skipped = {"section": "gemm", "shape": "s", "impl": "Helion", "error": "skipped"}
    items = [side_by_side.Pending(lambda: "a", dict(section="gemm", shape="s", impl="ours", flops=1e9, tuning_s=1.0)),
             skipped,
             side_by_side.Pending(lambda: "b", dict(section="gemm", shape="s", impl="cuBLAS", flops=1e9, error=None)),
             side_by_side.Pending(lambda: "c", dict(section="gemm", shape="s", impl="torch.compile", flops=1e9))]
    rows = side_by_side.time_together(items, "wall", gemm_suite.row)
    assert order == ["a", "b", "c", "b", "a", "a", "b"]  # c fails in the first round and is not retried
    assert [r["impl"] for r in rows] == ["ours", "Helion", "cuBLAS", "torch.compile"] and rows[1] is skipped
    assert (rows[0]["latency_p20_ms"], rows[0]["latency_ms"], rows[0]["latency_p80_ms"]) == (1.0, 2.0, 3.0)
    assert rows[2]["latency_ms"] == 6.0 and rows[2]["clock"] == "wall" and rows[2]["error"] is None
    assert rows[3]["error"] == "RuntimeError: cannot be timed here" and "latency_ms" not in rows[3]
