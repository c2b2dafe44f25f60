"""Experiment files: good ones load, bad ones give one clear message naming file and field, exit 2."""
import textwrap
from pathlib import Path

import pytest

from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.cli import main

GOOD = """
name: t
kernels:
  - kernel: matmul
    problems: [{M: 100, N: 72, K: 130, dtype: float16}]
targets: [{name: cpu-interpreter}]
search: {sampler: tpe, samples: 4, concurrency: 2, seed: 0}
"""


def write(tmp_path, text, name="exp.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_good_file_loads(tmp_path):
    exp = config.load(write(tmp_path, GOOD))
    assert exp.name == "t" and exp.kernel_refs == ("kernelevolve.search_spaces.matmul:TUNABLE",)
    assert exp.timing.clock == "do_bench"  # do_bench unless the file names another clock
    assert config.load(write(tmp_path, GOOD + "timing: {clock: clean}\n")).timing.clock == "clean"
    studies = list(exp.studies())
    assert len(studies) == 1 and studies[0].key == "matmul/M100_N72_K130_float16/cpu-interpreter"
    assert studies[0].budget() == 4


@pytest.mark.parametrize("old,new,field,words", [
    ("seed: 0}", "seed: 0, sed: 1}", "search.sed", "Extra inputs"),
    ("samples: 4", "samples: four", "search.samples", "integer"),
    ("kernel: matmul", "kernel: matmull", "kernels[0].kernel", "unknown kernel 'matmull'"),
    ("sampler: tpe", "sampler: annealing", "search.sampler", "unknown sampler"),
    ("concurrency: 2", "concurrency: 9", "(top level)", "exceeds search.samples"),
    ("samples: 4", "samples: 0", "search.samples", "greater than 0"),
    ("dtype: float16", "dtype: float8", "kernels[0].problems[0].dtype", "float16"),
    ("M: 100", "M: -3", "kernels[0].problems[0].M", "greater than 0"),
    ("M: 100", "Q: 100", "kernels[0].problems[0]", "M"),
    ("name: cpu-interpreter", "name: tpu9", "targets[0]", "unknown hardware"),
    ("kernel: matmul", "kernel: nowhere/file.py:OBJ", "kernels[0].kernel", "not found"),
    ("kernel: matmul", "kernel: json:dumps", "kernels[0].kernel", "not a kernelevolve.tuner.experiment.registry.Tunable"),
    ("kernel: matmul", "kernel: no_such_module_x:OBJ", "kernels[0].kernel", "cannot import"),
    ("seed: 0}", "seed: 0}\ntiming: {clock: scrub}", "timing.clock", "'do_bench', 'clean', 'cudagraph' or 'auto'"),
])
def test_bad_field_names_file_and_field(tmp_path, old, new, field, words):
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    msg = str(err.value)
    assert msg.startswith(path) and field in msg and words in msg, msg


@pytest.mark.parametrize("text,words", [
    ("name: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("", "top level must be a mapping"),
    ("name: t\n", "kernels"),
])
def test_malformed_files(tmp_path, text, words):
    with pytest.raises(config.ConfigError, match=words):
        config.load(write(tmp_path, text))


def test_the_default_sampler_is_auto(tmp_path):
    """A file that names no sampler gets "auto" (learned or TPE by the size of the space); one that
    names a sampler keeps it."""
    exp = config.load(write(tmp_path, GOOD.replace("sampler: tpe, ", "")))
    assert exp.search.sampler == "auto"
    assert config.load(write(tmp_path, GOOD, "tpe.yaml")).search.sampler == "tpe"
    assert config.load(write(tmp_path, GOOD.replace("sampler: tpe", "sampler: auto"), "auto.yaml")).search.sampler == "auto"


def test_grid_budget_must_match_the_grid(tmp_path):
    path = write(tmp_path, GOOD.replace("sampler: tpe", "sampler: grid"))
    with pytest.raises(config.ConfigError, match="exhaustive"):
        config.load(path)
    exp = config.load(write(tmp_path, GOOD.replace("sampler: tpe, samples: 4, concurrency: 2",
                                                   "sampler: grid"), "grid.yaml"))
    study = next(iter(exp.studies()))
    assert study.budget() == len(study.space.valid_configs()) > 4


def test_user_kernel_by_file_path(tmp_path):
    (tmp_path / "mykernel.py").write_text("from kernelevolve.search_spaces.matmul import TUNABLE as MINE\n")
    exp = config.load(write(tmp_path, GOOD.replace("kernel: matmul", "kernel: mykernel.py:MINE")))
    assert exp.kernel_refs[0] == f"{tmp_path}/mykernel.py:MINE"


def test_user_kernel_by_module(tmp_path):
    exp = config.load(write(tmp_path, GOOD.replace("kernel: matmul", "kernel: search_spaces.matmul:TUNABLE")))
    assert exp.kernel_refs[0] == "kernelevolve.search_spaces.matmul:TUNABLE"


def test_cli_exit_code_2_and_one_line(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("kernel: matmul", "kernel: matmull"))
    assert main(["run", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kernelevolve: error: ") and "Traceback" not in err and "matmull" in err


def test_cli_missing_file_exit_2(capsys):
    assert main(["run", "/nonexistent/exp.yaml"]) == 2
    assert "no such experiment file" in capsys.readouterr().err


def test_gpu_target_without_gpu_is_a_clear_error(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the error under test is for machines without one")
    path = write(tmp_path, GOOD.replace("name: cpu-interpreter", "name: h100"))
    assert main(["run", path, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs GPU=1" in err and "no GPU" in err and "Traceback" not in err
    assert f"{path}: targets[0]:" in err and err.count("\n") == 1  # file and field, before Ray starts


def test_profile_for_gpu_names_the_chip_or_none():
    from kernelevolve.tuner.experiment import hardware

    assert hardware.profile_for_gpu("NVIDIA H100 80GB HBM3").name == "h100"
    assert hardware.profile_for_gpu("NVIDIA A100-SXM4-80GB").name == "a100"
    assert hardware.profile_for_gpu("none (CPU)") is None


@pytest.mark.parametrize("path", sorted(str(p) for p in (Path(__file__).parent.parent / "experiments").glob("*.yaml")))
def test_shipped_experiment_files_load(path):
    exp = config.load(path)
    assert list(exp.studies()) and exp.name == Path(path).stem


START = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1, "SPLIT_K": 1, "SPLIT_K_REDUCE": "atomic",
         "PERSISTENT": False, "num_warps": 4, "num_stages": 1, "STAGE_A": True}  # a valid matmul config


def test_kernel_start_points_come_first_and_are_checked(tmp_path):
    from kernelevolve.tuner.execution.studies import _start_points

    p1 = dict(START)
    p2 = dict(p1, BLOCK_M=32)
    text = GOOD.replace("problems: [{M: 100, N: 72, K: 130, dtype: float16}]",
                        f"problems: [{{M: 100, N: 72, K: 130, dtype: float16}}]\n    start_points: [{p2}]")
    text = text.replace("seed: 0}", f"seed: 0, start_points: [{p1}, {p2}]}}")
    study = next(config.load(write(tmp_path, text)).studies())
    assert _start_points(study, None, print) == ([p2, p1], None)  # the kernel's first, no repeats
    bad = text.replace("start_points: [{'BLOCK_M': 32", "start_points: [{'BLOCK_Q': 32", 1)
    with pytest.raises(config.ConfigError, match=r"kernels\[0\]\.start_points\[0\].*not the parameters"):
        config.load(write(tmp_path, bad, "bad.yaml"))


def test_sampler_none_budgets_the_start_points_and_nothing_else(tmp_path):
    p1 = dict(START)
    p2 = dict(p1, BLOCK_M=32)
    text = GOOD.replace("problems: [{M: 100, N: 72, K: 130, dtype: float16}]",
                        f"problems: [{{M: 100, N: 72, K: 130, dtype: float16}}]\n    start_points: [{p1}, {p2}, {p1}]")
    text = text.replace("sampler: tpe, samples: 4, concurrency: 2", "sampler: none, concurrency: 8")
    study = next(config.load(write(tmp_path, text)).studies())
    assert study.start_points == [p1, p2] and study.budget() == 2  # a repeated point is one candidate
    for old, new, field in [("concurrency: 8", "samples: 2, concurrency: 2", "search.samples"),
                            ("concurrency: 8", "concurrency: 8, warm_start: t.json", "search.warm_start"),
                            ("seed: 0}", "seed: 0}\nprofile: {steer: true}", "profile.steer"),
                            (f"start_points: [{p1}, {p2}, {p1}]", "start_points: []", "kernels[0].start_points")]:
        with pytest.raises(config.ConfigError, match=rf"{field.replace('[', '.').replace(']', '.')}: sampler none"):
            config.load(write(tmp_path, text.replace(old, new), "bad.yaml"))
