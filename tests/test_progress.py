"""The live progress display: what it shows on a terminal, and that it is silent anywhere else."""
import io
from types import SimpleNamespace

from rich.console import Console

from kernelevolve.tuner.execution import commands
from kernelevolve.tuner.review.progress import Progress, RichProgress
from kernelevolve.tuner.search.space import IntRange, Space


def _study(key="matmul/M64_N64_K64_float16/h100", interpreter=False, space=Space((IntRange("BLOCK_M", 1, 4),))):
    target = SimpleNamespace(name=key.rsplit("/", 1)[1], profile=SimpleNamespace(interpreter=interpreter),
                             ray_resources=lambda: {"CPU": 1.0, "GPU": 1.0})
    return SimpleNamespace(key=key, target=target, space=space,
                           experiment=SimpleNamespace(search=SimpleNamespace(sampler="tpe", concurrency=2)))


CANDIDATES = [
    {"status": "ok", "latency_ms": 0.52, "speedup": 0.91, "config": {"BLOCK_M": 64}},
    {"status": "invalid", "config": {"BLOCK_M": 512}, "error": "too much shared memory"},
    {"status": "compile_error", "config": {"BLOCK_M": 256}, "error": "boom"},
    {"status": "ok", "latency_ms": 0.4133, "speedup": 1.27, "config": {"BLOCK_M": 128}},
    {"status": "timeout", "config": {"BLOCK_M": 32}, "error": "killed after 60 s"},
]


def _drive(display, study, budget=6):
    display.study_started(study, budget, 0)
    for rec in CANDIDATES:
        display.candidate(study, rec)


def test_on_a_terminal_each_study_shows_progress_best_failures_and_eta():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, color_system=None)
    study = _study()
    with RichProgress(console) as display:
        _drive(display, study)
        display.log("a driver message")
    text = buf.getvalue()
    last = [line for line in text.splitlines() if study.key in line][-1]
    assert "4/6" in last  # invalid proposals cost nothing and do not count
    assert "best 0.4133 ms" in last and "1.27x vs torch" in last
    assert "compile_error=1" in last and "invalid=1" in last and "timeout=1" in last
    assert "ETA" in last and "a driver message" in text


def test_finished_study_shows_the_retimed_winner_and_interpreter_label():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, color_system=None)
    study = _study("matmul/M64_N64_K64_float16/cpu-interpreter", interpreter=True)
    with RichProgress(console) as display:
        _drive(display, study, budget=4)
        display.study_finished(study, {"counts": {"ok": 2, "invalid": 7, "compile_error": 1, "timeout": 1},
                                       "best": {"latency_ms": 0.4, "speedup": None}})
    last = [line for line in buf.getvalue().splitlines() if study.key in line][-1]
    assert "done" in last and "best 0.4 ms (interpreter)" in last and "4/4" in last
    assert "invalid=7" in last  # the journal's counts: rejects the sampler never handed over


def test_silent_when_not_a_terminal():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False)
    study = _study()
    with RichProgress(console) as display:
        _drive(display, study)
        display.study_finished(study, {"counts": {"ok": 2}, "best": {"latency_ms": 0.41}})
    assert buf.getvalue() == ""


def test_run_picks_rich_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False, raising=False)
    with commands._progress_display(quiet=False) as shown:
        assert type(shown) is Progress and shown.log is print
    with commands._progress_display(quiet=True) as shown:
        assert type(shown) is Progress and shown.log is not print
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    with commands._progress_display(quiet=False) as shown:
        assert isinstance(shown, RichProgress)


def test_plain_lines_keep_their_format(capsys):
    _drive(Progress(print), _study())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("study matmul/") and "[4/6] timeout" in lines[-1]


def test_once_two_studies_run_each_candidate_line_names_its_study(capsys):
    shown, first, second = Progress(print), _study(), _study("matmul/M128_N64_K64_float16/h100")
    shown.study_started(first, 6, 0)
    shown.candidate(first, CANDIDATES[0])  # alone: the line as it always was
    shown.study_started(second, 6, 0)
    shown.candidate(second, CANDIDATES[3])
    shown.candidate(first, CANDIDATES[2])
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("study ")]
    assert lines[0].startswith("  [1/6] ok ")
    assert lines[1].startswith("  matmul/M128_N64_K64_float16/h100 [1/6] ok ")
    assert lines[2].startswith("  matmul/M64_N64_K64_float16/h100 [2/6] compile_error ")


def test_a_study_says_whether_its_valid_configs_are_listed(capsys):
    """A space past the listing limit is searched by rejection: its log line says so."""
    Progress(print).study_started(_study(), 6, 0)
    huge = Space(tuple(IntRange(f"P{i}", 1, 16) for i in range(7)))  # 268M raw points
    Progress(print).study_started(_study(space=huge), 6, 0)
    listed, rejected = capsys.readouterr().out.splitlines()
    assert listed.endswith("its valid configs listed")
    assert "searched by rejection (268,435,456 raw points" in rejected


def test_a_finished_study_says_where_its_end_went(capsys):
    shown, study = Progress(print), _study()
    _drive(shown, study)
    shown.study_finished(study, {"counts": {"ok": 2}, "best": {"latency_ms": 0.41, "measured_by": "sweep"},
                                 "end_s": {"retime": 0.62, "profile": 0.0, "plots": 2.14, "writer_wait": 3.0,
                                           "parent_run": 1.25}})
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith("; its end: re-timing 0.6 s, plots 2.1 s, waiting for the writer 3.0 s, "
                         "its parent run 1.2 s")  # a phase that took no time is left out
