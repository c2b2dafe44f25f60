"""A sweep that starts from recorded spaces: `search: {prior: recorded/}` fits each study's learned
sampler first on the recorded spaces of its kernel at other shapes or on other GPU kinds (never its
own problem and hardware: that would be the answer), `auto` then searches with it whatever the size
of the space, and the parent run records the prior and the sampler that searched."""
import gzip
import json
import os
import shutil
import textwrap
from types import SimpleNamespace

import optuna
import pytest
import yaml
from optuna.samplers import TPESampler

import tiny_sweep
from kernelevolve.tuner.cli import main
from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.records import recorded_space
from kernelevolve.tuner.records.tracking import _resolved
from kernelevolve.tuner.search import prior as prior_mod
from kernelevolve.tuner.search.learned_sampler import LearnedSampler
from kernelevolve.tuner.search.samplers import AUTO_LEARNED_MIN, WITH_PRIOR, auto_choice, make_sampler, resolved

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the DLRM dot interaction recorded on the H100 at a production shape (48 candidates of 240)
DOT_H100 = os.path.join(ROOT, "benchmarks/data/recorded/ops_bench/"
                        "dot_interaction__batch16384_features27_dim128_bfloat16__h100.jsonl.gz")
SOFTMAX_H100 = os.path.join(ROOT, "benchmarks/data/recorded/h100/"
                            "softmax__rows8192_cols4096_bfloat16__h100.jsonl.gz")
TINY_PROBLEM = {"batch": 16, "features": 6, "dim": 64, "dtype": "float16"}  # tiny_sweep's study
EXP = tiny_sweep.EXP.replace("sampler: tpe, ", "").replace("top_k: 2}", "top_k: 2, prior: recorded}")


def _like(base, **header) -> recorded_space.RecordedSpace:
    """A recorded space with `base`'s candidates and a header changed as given."""
    return recorded_space.RecordedSpace(dict(base.header, **header), base.candidates)


def _folder(tmp_path):
    """recorded/: the dot interaction on the H100 (a prior of the tiny study), the tiny study's own
    problem on its own hardware (its answer: never a prior), and another kernel."""
    folder = tmp_path / "recorded"
    (folder / "h100").mkdir(parents=True)
    shutil.copy(DOT_H100, folder / "h100")
    shutil.copy(SOFTMAX_H100, folder / "h100")
    dot = recorded_space.read(DOT_H100)
    own = _like(dot, problem=TINY_PROBLEM, hardware="cpu-interpreter", target="cpu-interpreter",
                study="dot_interaction/batch16_features6_dim64_float16/cpu-interpreter")
    recorded_space.write(own, str(folder / "own.jsonl.gz"))
    return folder


def _write(tmp_path, text=EXP):
    (tmp_path / "exp.yaml").write_text(textwrap.dedent(text))
    return str(tmp_path / "exp.yaml")


# -- the experiment file ---------------------------------------------------------------------------
def test_the_prior_path_is_resolved_against_the_file(tmp_path):
    _folder(tmp_path)
    exp = config.load(_write(tmp_path))
    assert exp.search.prior == str(tmp_path / "recorded")
    assert yaml.safe_load(config.dump(exp))["search"]["prior"] == str(tmp_path / "recorded")
    one = config.load(_write(tmp_path, EXP.replace("prior: recorded", "prior: recorded/own.jsonl.gz")))
    assert one.search.prior == str(tmp_path / "recorded" / "own.jsonl.gz")
    assert config.load(_write(tmp_path, tiny_sweep.EXP)).search.prior is None  # optional


@pytest.mark.parametrize("prior, make, words", [
    ("missing", None, r"search\.prior: .*missing: no such file or folder"),
    ("empty", "folder", r"search\.prior: .*empty: the folder holds no recorded spaces"),
    ("table.json", "text", r"search\.prior: .*table\.json: not a gzipped JSON-lines recorded space"),
    ("other.jsonl.gz", "gzip", r"search\.prior: .*other\.jsonl\.gz: its first line is not a "
                               r"kernelevolve\.recorded_space header"),
])
def test_a_bad_prior_is_one_clear_message_and_exit_2(tmp_path, capsys, prior, make, words):
    target = tmp_path / prior
    if make == "folder":
        target.mkdir()
    elif make == "text":
        target.write_text('{"schema": 1, "entries": []}')
    elif make == "gzip":
        with gzip.open(target, "wt") as fh:
            fh.write(json.dumps({"format": "something else"}) + "\n")
    path = _write(tmp_path, EXP.replace("prior: recorded", f"prior: {prior}"))
    with pytest.raises(config.ConfigError, match=words) as err:
        config.load(path)
    assert str(err.value).startswith(path) and "kernelevolve dataset" in str(err.value)
    assert main(["run", path]) == 2
    out = capsys.readouterr().err
    assert "search.prior" in out and "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_a_prior_needs_a_sampler_that_learns(tmp_path):
    _folder(tmp_path)
    with pytest.raises(config.ConfigError, match=r"search\.prior: the tpe sampler learns nothing"):
        config.load(_write(tmp_path, EXP.replace("search: {", "search: {sampler: tpe, ")))
    assert config.load(_write(tmp_path, EXP.replace("search: {", "search: {sampler: learned, ")))


# -- which recorded spaces a study learns from ------------------------------------------------------
def test_a_studys_prior_is_its_kernel_never_its_own_problem_on_its_own_hardware():
    dot, softmax = recorded_space.read(DOT_H100), recorded_space.read(SOFTMAX_H100)
    own_h100 = _like(dot, problem=TINY_PROBLEM)
    own_here = _like(dot, problem=TINY_PROBLEM, hardware="cpu-interpreter")
    other_shape_here = _like(dot, problem=dict(TINY_PROBLEM, batch=32), hardware="cpu-interpreter")
    every = [dot, softmax, own_h100, own_here, other_shape_here]
    got = prior_mod.prior_for(every, "dot_interaction", TINY_PROBLEM, "cpu-interpreter")
    # the other kernel and the answer itself are out; another GPU kind of the same problem stays
    assert got == [dot, own_h100, other_shape_here]
    # the replay benchmark's transfer across shapes only: the same problem on another GPU is out too
    assert prior_mod.prior_for(every, "dot_interaction", TINY_PROBLEM, "cpu-interpreter",
                               other_problems=True) == [dot, other_shape_here]
    # a problem read back from JSON matches the study's own dump
    assert prior_mod.prior_for([own_here], "dot_interaction", json.loads(json.dumps(TINY_PROBLEM)),
                               "cpu-interpreter") == []


def test_a_recording_of_another_version_of_the_space_is_left_out():
    from kernelevolve.tuner.experiment import hardware, registry

    tunable = registry.load("kernelevolve.search_spaces.interaction:TUNABLE")
    space = tunable.space(tunable.kernel.problem(**TINY_PROBLEM), hardware.profile("cpu-interpreter"))
    dot = recorded_space.read(DOT_H100)
    params = [p for p in dot.header["space"]["parameters"] if p["name"] != "num_stages"]
    older = _like(dot, space=dict(dot.header["space"], parameters=params))
    assert prior_mod.prior_for([dot, older], "dot_interaction", TINY_PROBLEM, "cpu-interpreter",
                               space=space) == [dot]


def test_the_replay_picks_its_prior_the_same_way():
    from kernelevolve.tuner.search.replay import with_prior

    dot, softmax = recorded_space.read(DOT_H100), recorded_space.read(SOFTMAX_H100)
    other = _like(dot, problem=dict(dot.header["problem"], batch=4096))
    assert with_prior(dot, [dot, softmax, other]).prior == [other]


# -- the sampler ------------------------------------------------------------------------------------
def _tiny_space():
    from kernelevolve.tuner.experiment import hardware, registry

    tunable = registry.load("kernelevolve.search_spaces.interaction:TUNABLE")
    return tunable.space(tunable.kernel.problem(**TINY_PROBLEM), hardware.profile("cpu-interpreter"))


def test_auto_with_a_prior_is_the_learned_sampler_with_it_even_on_a_small_space():
    space, prior = _tiny_space(), [recorded_space.read(DOT_H100)]
    assert space.valid_count() < AUTO_LEARNED_MIN and auto_choice(space) == "tpe"
    assert auto_choice(space, prior) == WITH_PRIOR == "learned+prior"
    assert auto_choice(space, []) == "tpe"  # an empty prior: the size rule
    sampler = make_sampler("auto", space, 0, prior, TINY_PROBLEM)
    study = optuna.create_study(sampler=sampler)
    first = space.decode(study.ask(fixed_distributions=space.distributions()).params)
    assert sampler.chosen == WITH_PRIOR and isinstance(sampler.inner, LearnedSampler)
    assert sampler.inner.prior is not None and sampler.inner.problem == TINY_PROBLEM
    assert not space.violations(first)
    assert sampler.prior == []  # fit into the learned sampler, not carried along
    # "learned" uses the prior too; a sampler that does not learn searches as it would without one
    assert make_sampler("learned", space, 0, prior, TINY_PROBLEM).prior is not None
    assert isinstance(make_sampler("tpe", space, 0, prior, TINY_PROBLEM), TPESampler)


def test_the_parent_run_says_learned_plus_prior():
    space, prior = _tiny_space(), [recorded_space.read(DOT_H100)]
    study = SimpleNamespace(space=space)
    assert _resolved("auto", study, prior) == _resolved("learned", study, prior) == "learned+prior"
    assert _resolved("auto", study, []) == "tpe" and _resolved("learned", study, []) == "learned"
    assert _resolved("auto", study) == "tpe" and resolved("random", space, prior) == "random"


# -- a real sweep -----------------------------------------------------------------------------------
def test_a_sweep_starts_from_the_recorded_spaces_of_its_kernel(tmp_path):
    """A real sweep (Ray Tune, the interpreter, MLflow) of the tiny study with a prior folder that
    holds its kernel on the H100, its own problem on its own hardware and another kernel: the
    sampler is fit on the H100 recording alone, and the parent run says so."""
    from mlflow.tracking import MlflowClient

    _folder(tmp_path)
    exp, [summary] = tiny_sweep.run_in(str(tmp_path), EXP)
    assert exp.search.sampler == "auto" and exp.search.prior == str(tmp_path / "recorded")
    evaluated = [r for r in tiny_sweep.journal(str(tmp_path), exp.name) if r["status"] != "invalid"]
    assert len(evaluated) == 5 and all(r["status"] == "ok" for r in evaluated)
    assert len({json.dumps(r["config"], sort_keys=True) for r in evaluated}) == 5
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    [parent] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                                  "tags.`kernelevolve.role` = 'study'")
    params = parent.data.params
    assert (params["sampler"], params["sampler_resolved"], params["prior_spaces"]) == ("auto", "learned+prior", "1")
    path = client.download_artifacts(parent.info.run_id, "prior_spaces.json", str(tmp_path))
    with open(path) as fh:
        [used] = json.load(fh)
    assert used["space"] == "dot_interaction/batch16384_features27_dim128_bfloat16/h100"
    assert used["hardware"] == "h100" and used["candidates"] == 48
    assert used["path"] == str(tmp_path / "recorded" / "h100" / os.path.basename(DOT_H100))
