"""`timing.clock: auto`: one clock per study, fixed before its search by a stated rule on the study's
roofline (tuner.measure.clocks.choose_clock), the same for the same file on the same target; the
sweep's study context, its parent run and its summary carry it; a bad clock name is one error,
exit code 2. No GPU and no timing: the rule reads the kernel's cost model and the profile's ceilings."""
import textwrap
from types import SimpleNamespace

import pytest

from kernelevolve.tuner.cli import main
from kernelevolve.tuner.experiment import config, hardware, registry
from kernelevolve.tuner.measure.clocks import SHORT_KERNEL_US, ClockChoice, choose_clock

MATMUL = registry.load(registry.resolve_ref("matmul")).kernel
H100 = hardware.profile("h100")
TINY = MATMUL.problem(M=256, N=256, K=256, dtype="bfloat16")  # 34 MFLOP, 393 kB: well under a us
BIG = MATMUL.problem(M=8192, N=8192, K=8192, dtype="bfloat16")  # 1.1 TFLOP: 1.48 ms at 742 TFLOP/s

EXP = """
name: clocks
kernels:
  - kernel: matmul
    problems: [{M: 256, N: 256, K: 256, dtype: bfloat16}, {M: 8192, N: 8192, K: 8192, dtype: bfloat16}]
targets: [{name: h100}]
search: {sampler: tpe, samples: 4, concurrency: 1, seed: 0}
timing: {clock: auto}
"""


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# -- the rule ----------------------------------------------------------------------------------
def test_a_tiny_gemm_is_timed_in_graphs_and_a_big_one_on_the_long_clock():
    tiny = choose_clock("auto", "clean", MATMUL, TINY, H100)
    big = choose_clock("auto", "clean", MATMUL, BIG, H100)
    assert tiny.clock == "cudagraph" and tiny.estimate_us < SHORT_KERNEL_US
    assert big.clock == "clean" and big.estimate_us >= SHORT_KERNEL_US
    assert big.estimate_us == pytest.approx(2 * 8192 ** 3 / 742e12 * 1e6)  # compute-bound: the bf16 ceiling
    assert choose_clock("auto", "do_bench", MATMUL, BIG, H100).clock == "do_bench"  # timing.long_clock
    assert "roofline" in tiny.rule and f"< {SHORT_KERNEL_US:g} us" in tiny.rule


def test_the_rule_is_deterministic():
    """No measurement enters it: the same study resolves to the same clock and estimate every time."""
    first = [choose_clock("auto", "clean", MATMUL, p, H100) for p in (TINY, BIG)]
    assert all(first == [choose_clock("auto", "clean", MATMUL, p, H100) for p in (TINY, BIG)] for _ in range(5))


def test_the_threshold_is_the_estimated_time_of_the_study():
    """A stand-in spec whose roofline is just under and just over SHORT_KERNEL_US (bytes-bound)."""
    copy = H100.ceilings["copy_bytes"].value

    def spec(us):
        return SimpleNamespace(flops=lambda p: 0.0, bytes_moved=lambda p: us * 1e-6 * copy)
    problem = SimpleNamespace(dtype="bfloat16")
    assert choose_clock("auto", "clean", spec(SHORT_KERNEL_US * 0.99), problem, H100).clock == "cudagraph"
    assert choose_clock("auto", "clean", spec(SHORT_KERNEL_US), problem, H100).clock == "clean"


def test_a_named_clock_is_kept_and_the_interpreter_is_wall():
    assert choose_clock("do_bench", "clean", MATMUL, TINY, H100) == ClockChoice("do_bench", None, "timing.clock")
    interp = hardware.profile("cpu-interpreter")
    for clock in ("auto", "clean", "cudagraph"):
        assert choose_clock(clock, "clean", MATMUL, TINY, interp).clock == "wall"


def test_a_dtype_without_its_own_ceiling_runs_at_the_fastest_listed():
    """The H200 profile lists a bf16 FLOP ceiling only: an fp16 GEMM's roofline uses it (no kernel
    is faster), so a big fp16 GEMM is not mistaken for a short one."""
    h200 = hardware.profile("h200")
    assert "float16_flops" not in h200.ceilings
    fp16 = MATMUL.problem(M=8192, N=8192, K=8192, dtype="float16")
    choice = choose_clock("auto", "clean", MATMUL, fp16, h200)
    assert choice.clock == "clean" and choice.estimate_us == pytest.approx(2 * 8192 ** 3 / 788e12 * 1e6)
    assert hardware.least_time_s(hardware.profile("cpu-interpreter"), 1e9, 1e9, "float16") is None


# -- the experiment file -----------------------------------------------------------------------
def test_each_study_of_a_file_resolves_its_own_clock(tmp_path):
    exp = config.load(write(tmp_path, EXP))
    assert (exp.timing.clock, exp.timing.long_clock) == ("auto", "clean")
    tiny, big = exp.studies()
    assert (tiny.clock.clock, big.clock.clock) == ("cudagraph", "clean")
    assert tiny.bench_settings() == dict(exp.timing.bench_settings("cudagraph"))
    assert big.bench_settings()["clock"] == "clean"
    again = config.load(write(tmp_path, EXP, "again.yaml"))
    assert [st.clock for st in again.studies()] == [tiny.clock, big.clock]
    do_bench = config.load(write(tmp_path, EXP.replace("clock: auto", "clock: auto, long_clock: do_bench"), "d.yaml"))
    assert [st.clock.clock for st in do_bench.studies()] == ["cudagraph", "do_bench"]


def test_long_clock_without_auto_is_an_error(tmp_path):
    path = write(tmp_path, EXP.replace("clock: auto", "clock: clean, long_clock: do_bench"))
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}: timing:") and "clock: auto" in str(err.value)
    for bad in ("long_clock: cudagraph", "long_clock: auto"):  # a long kernel's clock flushes the L2
        with pytest.raises(config.ConfigError, match="timing.long_clock"):
            config.load(write(tmp_path, EXP.replace("clock: auto", f"clock: auto, {bad}"), "l.yaml"))


def test_an_unknown_clock_is_one_error_and_exit_code_2(tmp_path, capsys):
    path = write(tmp_path, EXP.replace("clock: auto", "clock: bogus").replace("name: h100", "name: cpu-interpreter"))
    assert main(["run", path, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kernelevolve: error: ") and "Traceback" not in err and err.count("\n") == 1
    assert f"{path}: timing.clock:" in err and "'auto'" in err and "'cudagraph'" in err


# -- the sweep: the study's context and its parent run ---------------------------------------------
class _Tracker:
    """What the sweep's writer hands a parent run: the fields the real trackers log (the MLflow
    side of it is the tiny real sweep's, tests/test_determinism.py)."""

    def __init__(self):
        self.parents = {}

    def start_study(self, study, sweep_id, artifacts, device, prior=None):
        from kernelevolve.tuner.records.tracking import study_run_fields

        self.parents[study.key] = study_run_fields(study, sweep_id, device, "commit", prior)
        return f"parent-{len(self.parents)}"


def test_the_sweep_times_each_study_and_logs_its_parent_run_with_the_resolved_clock(tmp_path, monkeypatch):
    """A study's plan, without Ray: the context every candidate, the re-timing and the peer of a
    study are timed from names its resolved clock; the parent run's params say which and why."""
    from kernelevolve.tuner.execution import study_plan
    from kernelevolve.tuner.execution import sweep as sweep_mod
    from kernelevolve.tuner.records.journal import SweepState

    monkeypatch.chdir(tmp_path)
    exp = config.load(write(tmp_path, EXP))
    monkeypatch.setattr(study_plan, "check_target", lambda target: {"CPU": 1.0, "GPU": 1.0})
    tracker, lines = _Tracker(), []
    state = SweepState.new(str(tmp_path / "state"), "sweep-1", exp.source_path)
    progress = SimpleNamespace(study_started=lambda *a: None)
    sweep = sweep_mod.Sweep(exp, state, tracker, progress, lines.append)
    sweep.devices["h100"] = {"gpu_name": "NVIDIA H100 80GB HBM3"}  # as the lanes' probe found it
    studies = list(exp.studies())
    try:
        for study in studies:
            study_plan.plan(sweep, study, str(tmp_path))
    finally:
        sweep.writer.close()
    tiny, big = (sweep.plans[st.key] for st in studies)
    assert tiny.ctx["bench"]["clock"] == "cudagraph" and big.ctx["bench"]["clock"] == "clean"
    assert tiny.ctx["bench"] == tiny.study.bench_settings()
    assert any("timed with cudagraph (auto: roofline" in line for line in lines), lines
    params = {key: fields[1] for key, fields in tracker.parents.items()}
    assert params[tiny.study.key]["clock"] == "auto" and params[tiny.study.key]["clock_resolved"] == "cudagraph"
    assert params[big.study.key]["clock_resolved"] == "clean"
    assert float(params[tiny.study.key]["clock_estimate_us"]) < SHORT_KERNEL_US
    assert float(params[big.study.key]["clock_estimate_us"]) == pytest.approx(big.study.clock.estimate_us, rel=1e-3)
