"""A tiny real sweep: Ray Tune + Optuna + the interpreter + MLflow, asserted from the store."""
import json
import os

import pytest
import torch
from mlflow.tracking import MlflowClient

from kernelevolve.kernels import matmul as mm
from kernelevolve.tuner.experiment import config
from kernelevolve.tuner.execution import sweep
from kernelevolve.tuner.cli import main
from kernelevolve.tuner.measure.verify import check, poison

EXP = """
name: e2e
kernels:
  - kernel: matmul
    problems: [{M: 100, N: 72, K: 130, dtype: float16}]
targets: [{name: cpu-interpreter}]
search: {sampler: tpe, samples: 6, concurrency: 2, seed: 3, timeout_s: 120, top_k: 2}
tracking: {uri: sqlite:///store/mlflow.db}
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "exp.yaml").write_text(EXP)
    (root / "store").mkdir()
    old = os.getcwd()
    os.chdir(root)
    try:
        exp = config.load("exp.yaml")
        lines: list = []
        summaries = sweep.run(exp, log=lines.append)
        (root / "sweep.log").write_text("\n".join(lines))
        yield root, exp, summaries
    finally:
        os.chdir(old)


def test_store_holds_one_parent_and_one_child_per_candidate(swept):
    root, exp, summaries = swept
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/store/mlflow.db")
    e = client.get_experiment_by_name("e2e")
    runs = client.search_runs([e.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kernelevolve.role") == "study"]
    children = [r for r in runs if r.data.tags.get("kernelevolve.role") == "candidate"]
    assert len(parents) == 1
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    counts = summaries[0]["counts"]
    # six Triton candidates (the budget) and the vendor paths, evaluated first: torch.mm, and
    # torch.mm on padded copies (K=130 fp16: A's rows of 260 bytes are not 16-byte aligned)
    assert len(children) == sum(counts.values()) and counts.get("ok", 0) == 8
    assert sorted(c.data.tags["impl"] for c in children) == ["triton"] * 6 + ["vendor"] * 2
    ids = [c.data.tags["candidate_id"] for c in children]
    assert len(set(ids)) == len(ids), "a candidate was logged twice"
    for c in children:
        assert c.data.tags["timing"] == "interpreter"
        assert c.data.metrics["latency_ms"] > 0 and "triton" in c.data.tags
        assert set(c.data.params) <= ({"IMPL", "PAD_BYTES"} if c.data.tags["impl"] == "vendor" else
                                      {d.name for d in next(exp.studies()).space.domains})
        assert "IMPL" in c.data.params or c.data.tags["impl"] == "triton"
        # real timestamps: the candidate's own measurement, not the epoch
        assert abs(c.info.start_time / 1e3 - c.data.metrics["timed_from"]) < 5
        assert c.info.start_time > 1.7e12 and c.info.end_time >= c.info.start_time
        # its trial's report, after its timing, and the driver taking it in after that
        m = c.data.metrics
        assert m["trial_started"] <= m["timed_to"] <= m["trial_reported"] <= m["driver_heard"]
    first = [line for line in (root / "sweep.log").read_text().splitlines() if line.startswith("first candidate ended")]
    assert len(first) == 1 and "its trial's report taken in" in first[0], first
    p = parents[0]
    assert p.data.tags["timing"] == "interpreter" and p.data.metrics["best_latency_ms"] > 0
    # where the study's end went: its re-timing and plots (study_end), seconds
    assert p.data.metrics["end_retime_s"] > 0 and p.data.metrics["end_plots_s"] > 0
    arts = {a.path for a in client.list_artifacts(p.info.run_id)}
    assert {"experiment.yaml", "search_space.json", "best_config.json"} <= arts


def test_no_invalid_proposal_becomes_a_child_run(swept):
    """The space has configs that break its constraints; the sampler's proposals that fall on them
    are moved to valid configs (or rejected) in the driver: every child run is a candidate that
    was compiled, verified and timed, and the parent run says what became of the proposals."""
    root, exp, summaries = swept
    space = next(exp.studies()).space
    assert len(space.valid_configs()) < space.size()  # invalid configs exist to be proposed
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/store/mlflow.db")
    e = client.get_experiment_by_name("e2e")
    runs = client.search_runs([e.experiment_id])
    children = [r for r in runs if r.data.tags.get("kernelevolve.role") == "candidate"
                and r.data.tags.get("impl") == "triton"]  # (the vendor path is no point of the space)
    [parent] = [r for r in runs if r.data.tags.get("kernelevolve.role") == "study"]
    assert len(children) == 6 and all(c.data.tags["status"] != "invalid" for c in children)
    assert all(not space.violations({k: json.loads(v.lower()) if v in ("True", "False") else
                                     (json.loads(v) if v[:1].isdigit() else v)
                                     for k, v in c.data.params.items()}) for c in children)
    m = parent.data.metrics
    assert m["proposals"] >= 6 and m["candidates"] == 8  # with the two vendor paths, no proposal
    proposals = summaries[0]["proposals"]
    assert proposals["proposals"] == m["proposals"]
    # a proposal moved to a valid config ("projected") is a candidate; one rejected or repeated is not
    assert proposals["rejected"] + proposals["duplicates"] == m["proposals"] - 6 + proposals["drawn"]


def test_concurrent_candidates_never_overlap_their_timed_sections(swept):
    root, exp, _ = swept
    from kernelevolve.tuner.records.journal import SweepState
    state = SweepState.latest(str(root / ".kernelevolve" / "e2e"))
    recs = [r for f in os.listdir(state.folder) if f.endswith(".jsonl")
            for r in state.journal(f[:-6]).records() if r["status"] == "ok"]
    spans = sorted((r["timed_from"], r["timed_to"]) for r in recs)
    assert len(spans) == 8 and len({r["worker_pid"] for r in recs}) >= 2
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, "two candidates were timed at the same time"
    # ... while two were evaluated at once: some candidate began before the one before it ended.
    # (How many worker processes that takes is Tune's business: a trial actor left idle while a
    # study waits for its oldest result, search.ordered, may be replaced by a new one.)
    lives = sorted((r["trial_started"], r["timed_to"]) for r in recs)
    assert any(start < end for (_, end), (start, _) in zip(lives, lives[1:])), lives


def test_best_candidate_is_correct(swept):
    _, _, summaries = swept
    best = summaries[0]["best"]
    assert best["status"] == "ok" and best["measured_by"] == "retime_interleaved"
    problem = mm.MatmulProblem(M=100, N=72, K=130, dtype="float16")
    for seed in (101, 202):  # fresh inputs the sweep never saw
        inputs = mm.make_inputs(problem, torch.device("cpu"), seed)
        out = mm.make_output(problem, inputs)
        poison(out)
        mm.launch(inputs, out, best["config"])
        assert check(out, mm.reference(inputs)).ok


def test_best_command_prints_the_table(swept, capsys):
    root, _, summaries = swept
    assert main(["best", "e2e", "--uri", f"sqlite:///{root}/store/mlflow.db", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["timing"] == "interpreter"
    assert rows[0]["config"] == summaries[0]["best"]["config"]  # typed: ints as ints, bools as bools
    assert rows[0]["retimed_ms"] == pytest.approx(summaries[0]["best"]["latency_ms"])


def test_unknown_experiment_is_exit_2(swept, capsys):
    root, _, _ = swept
    assert main(["best", "nope", "--uri", f"sqlite:///{root}/store/mlflow.db"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
