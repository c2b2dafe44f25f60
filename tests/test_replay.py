"""Recorded spaces and their replay on the CPU: the format, the conversion from the engine's MLflow
export, the replay through the sweep's own searcher, and `kernelevolve dataset` / `replay`.

The committed space CI replays is the attention forward (non-causal) of the H100 operators' sweep:
30 configs, every valid config of its space recorded (docs/results/engine/ops_bench.runs.jsonl.gz).
"""
import gzip
import json
import os

import numpy as np
import pytest

from kernelevolve.tuner.cli import main
from kernelevolve.tuner.records import recorded_space, to_recorded
from kernelevolve.tuner.records.recorded_space import RecordedSpace, RecordedSpaceError
from kernelevolve.tuner.search import replay
from kernelevolve.tuner.search.space import config_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDED = os.path.join(ROOT, "benchmarks", "data", "recorded", "ops_bench")
CI_SPACE = os.path.join(RECORDED, "attention__batch4_heads16_seq_len4096_head_dim128_causalFalse_bfloat16__h100.jsonl.gz")
PARTIAL_SPACE = os.path.join(RECORDED, "attention__batch4_heads16_seq_len4096_head_dim128_causalTrue_bfloat16__h100.jsonl.gz")
EXPORT = os.path.join(ROOT, "docs", "results", "engine", "ops_bench.runs.jsonl.gz")


@pytest.fixture(scope="module")
def ci_space() -> RecordedSpace:
    return recorded_space.read(CI_SPACE)


def test_committed_space_is_exhaustive_and_complete(ci_space):
    h = ci_space.header
    assert h["space"]["exhaustive"] and h["space"]["valid_configs"] == len(ci_space.candidates) == 30
    assert h["gpu_name"].startswith("NVIDIA H100") and h["triton"] and h["torch"]
    assert all("n_regs" in c and "shared_bytes" in c for c in ci_space.ok())  # compiled metadata kept
    assert ci_space.oracle_ms() == min(c["latency_ms"] for c in ci_space.ok())


def test_write_then_read_gives_the_same_space(ci_space, tmp_path):
    path = str(tmp_path / "s.jsonl.gz")
    recorded_space.write(ci_space, path)
    again = recorded_space.read(path)
    assert again.header == ci_space.header and again.candidates == ci_space.candidates


def _write_lines(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for line in lines:
            fh.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


@pytest.mark.parametrize("case, message", [
    ("plain", "not a gzipped JSON-lines"),
    ("no_header", "not a kernelevolve.recorded_space header"),
    ("bad_status", "status 'fast' is not one of"),
    ("wrong_count", "the header says 30 candidates"),
    ("bad_keys", "are not the header's parameters"),
])
def test_a_broken_file_is_one_clear_error(ci_space, tmp_path, case, message):
    path = str(tmp_path / "bad.jsonl.gz")
    header, cands = ci_space.header, ci_space.candidates
    if case == "plain":
        path = str(tmp_path / "bad.txt")
        open(path, "w").write("not gzip")
    elif case == "no_header":
        _write_lines(path, cands)
    elif case == "bad_status":
        _write_lines(path, [header, dict(cands[0], status="fast"), *cands[1:]])
    elif case == "wrong_count":
        _write_lines(path, [header, *cands[1:]])
    else:
        _write_lines(path, [header, dict(cands[0], config={"X": 1}), *cands[1:]])
    with pytest.raises(RecordedSpaceError, match=message) as err:
        recorded_space.read(path)
    assert "\n" not in str(err.value)


def test_the_engine_export_converts_to_recorded_spaces():
    runs = [r for r in to_recorded.read_export(EXPORT)
            if "attention" in (r["tags"].get("study") or r["tags"].get("kernelevolve.study") or "")]
    spaces = to_recorded.recorded_spaces(runs, EXPORT, command="test")
    assert len(spaces) == 2
    for sp in spaces:
        parent = next(r for r in runs if r["run_id"] == sp.header["parent_run_id"])
        children = [r for r in runs if to_recorded.parent_of(r) == parent["run_id"]]
        assert len(sp.candidates) == len(children) and sp.header["command"] == "test"
        assert sp.header["kernel_ref"] == parent["tags"]["kernel_ref"]
        best = min(float(r["metrics"]["latency_ms"]) for r in children if r["tags"]["status"] == "ok")
        assert sp.oracle_ms() == best


def test_an_export_in_the_newer_form_converts_the_same():
    """Newer exports (benchmarks/export_runs.py) leave MLflow's tags out and name the parent."""
    runs = [r for r in to_recorded.read_export(EXPORT)
            if "attention" in (r["tags"].get("study") or r["tags"].get("kernelevolve.study") or "")]
    newer = [dict(r, parent_run_id=r["tags"].get("mlflow.parentRunId"),
                  tags={k: v for k, v in r["tags"].items() if not k.startswith("mlflow.")}) for r in runs]
    a, b = to_recorded.recorded_spaces(runs, "x"), to_recorded.recorded_spaces(newer, "x")
    assert [s.candidates for s in a] == [s.candidates for s in b] and len(a) == 2


def test_replay_answers_every_candidate_from_the_recording(ci_space):
    by_key = ci_space.by_key()
    space, valid = replay.space_of(ci_space)
    run = replay.run_seed(ci_space, "tpe", 0, budget=len(valid), space=space, valid=valid)
    assert len(run.latencies) == 30 and run.statuses == {"ok": 30}  # the whole space, once each
    assert sorted(run.latencies) == sorted(c["latency_ms"] for c in by_key.values())
    regret = run.regret(ci_space.oracle_ms())
    assert np.all(np.diff(regret) <= 0) and regret[-1] == 0.0


@pytest.mark.parametrize("sampler", ["tpe", "random", "uniform", "learned"])
def test_replay_summary_and_seeds_reproduce(ci_space, sampler):
    a = replay.replay(ci_space, sampler, seeds=3, budget=20)
    b = replay.replay(ci_space, sampler, seeds=3, budget=20)
    assert a == b
    assert a["seeds"] == 3 and a["valid_configs"] == 30 and a["budget"] == 20
    assert all(h is None or 1 <= h <= 20 for h in a["hits"])
    assert a["median_pct"] == pytest.approx(100 * a["median"] / 30)
    assert len(a["regret_median"]) == 20 and a["not_recorded"] == 0


def test_configs_absent_from_the_recording_count_as_failed():
    partial = recorded_space.read(PARTIAL_SPACE)  # 48 of the space's 60 valid configs
    out = replay.replay(partial, "uniform", seeds=2, space_mode="kernel")
    assert out["valid_configs"] == 60
    assert out["not_recorded"] == 2 * 12 and out["statuses"]["ok"] == 2 * 48


def test_concurrency_keeps_several_in_flight(ci_space):
    out = replay.replay(ci_space, "tpe", seeds=2, concurrency=8)
    assert out["statuses"] == {"ok": 60}


def test_cli_replay_prints_the_table_and_writes_json(tmp_path, capsys):
    js, png = str(tmp_path / "r.json"), str(tmp_path / "r.png")
    assert main(["replay", CI_SPACE, "--sampler", "random,learned", "--seeds", "2", "--json", js,
                 "--plot", png]) == 0
    out = capsys.readouterr().out
    assert "to_2pct_median" in out and "median regret after 1:" in out
    results = json.load(open(js))
    assert [r["sampler"] for r in results] == ["random", "learned"] and os.path.getsize(png) > 0


def test_cli_learned_with_a_prior_of_another_problem(capsys):
    assert main(["replay", CI_SPACE, "--sampler", "learned", "--prior", PARTIAL_SPACE, "--seeds", "2"]) == 0
    assert "learned+prior" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["replay", "nowhere.jsonl.gz", "--sampler", "tpe"], "no such recorded space"),
    (["replay", CI_SPACE, "--sampler", "annealing"], "unknown sampler 'annealing'"),
    (["replay", CI_SPACE, "--sampler", "tpe", "--seeds", "0"], "positive integers"),
    (["replay", CI_SPACE, "--sampler", "tpe", "--within", "2"], "a fraction of the oracle"),
    (["replay", EXPORT, "--sampler", "tpe"], "not a kernelevolve.recorded_space header"),
    (["dataset", "nowhere.jsonl.gz", "-o", "."], "neither a file nor a tracking URI"),
    (["replay", CI_SPACE, "--sampler", "tpe", "--prior", PARTIAL_SPACE], "add --sampler learned"),
])
def test_cli_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_dataset_writes_one_file_per_study(tmp_path, capsys):
    runs = [r for r in to_recorded.read_export(EXPORT)
            if "attention" in (r["tags"].get("study") or r["tags"].get("kernelevolve.study") or "")]
    export = str(tmp_path / "x.runs.jsonl.gz")
    to_recorded.write_export(runs, export)
    out_dir = tmp_path / "spaces"
    out_dir.mkdir()
    assert main(["dataset", export, "-o", str(out_dir)]) == 0
    files = sorted(os.listdir(out_dir))
    assert len(files) == 2 and "(exhaustive)" in capsys.readouterr().out
    mine = recorded_space.read(str(out_dir / os.path.basename(CI_SPACE)))
    committed = recorded_space.read(CI_SPACE)
    assert [config_key(c["config"]) for c in mine.candidates] == [config_key(c["config"]) for c in committed.candidates]


def test_replay_compare_splits_spaces_across_runs_and_combines_them(tmp_path):
    """benchmarks/replay_compare.py: `--replay` searches some spaces while every given space can
    still be a prior (spaces split across processes), `--combine` merges the runs' JSONs into one
    table; the combined results are the two runs' own."""
    from benchmarks import replay_compare

    a, b, both = (str(tmp_path / f"{n}.json") for n in ("a", "b", "both"))
    common = [CI_SPACE, PARTIAL_SPACE, "--seeds", "2", "--samplers", "random,learned"]
    assert replay_compare.main(common + ["--replay", "causalFalse", "--out", a]) == 0
    assert replay_compare.main(common + ["--replay", "causalTrue", "--out", b]) == 0
    first, second = json.load(open(a)), json.load(open(b))
    assert [r["sampler"] for r in first["results"]] == ["random", "learned", "learned+prior"]
    assert first["results"][2]["prior"] and "causalTrue" in first["results"][2]["prior"][0]  # the other, as a prior
    assert len(first["meta"]["spaces"]) == 1 and "causalFalse" in first["meta"]["spaces"][0]
    assert replay_compare.main(["--combine", a, b, "--out", both]) == 0
    merged = json.load(open(both))
    assert merged["results"] == first["results"] + second["results"]
    assert "learned+prior" in open(str(tmp_path / "both.md")).read()
    only = str(tmp_path / "only.json")
    assert replay_compare.main([CI_SPACE, PARTIAL_SPACE, "--seeds", "1", "--samplers", "learned+prior",
                                "--replay", "causalFalse", "--out", only]) == 0
    assert [r["sampler"] for r in json.load(open(only))["results"]] == ["learned+prior"]


def test_replay_compare_combines_runs_of_other_seeds_and_budget(tmp_path):
    """A slow sampler replayed with fewer seeds and a smaller --budget combines with the others:
    each result keeps its seeds and budget, its column's header and a note say so, and a median
    past its own smaller budget counts as B + 1 but never as at most half TPE's."""
    from benchmarks import replay_compare

    a, b, both = (str(tmp_path / f"{n}.json") for n in ("a", "b", "both"))
    assert replay_compare.main([CI_SPACE, "--seeds", "2", "--samplers", "tpe,random", "--out", a]) == 0
    assert replay_compare.main([CI_SPACE, "--seeds", "1", "--budget", "3", "--samplers", "qmc", "--out", b]) == 0
    assert replay_compare.main(["--combine", a, b, "--out", both]) == 0
    merged = json.load(open(both))
    assert merged["meta"]["seeds"] == 2 and merged["meta"]["budget"] is None  # the run with the most results
    assert [(r["sampler"], r["seeds"], r["budget"]) for r in merged["results"]] == \
        [("tpe", 2, 30), ("random", 2, 30), ("qmc", 1, 3)]
    md = open(str(tmp_path / "both.md")).read()
    assert "| tpe | random | qmc (1 seed, B=3) |" in md and "qmc: 1 seed, B=3." in md

    def row(sampler, median, budget):
        return {"label": "s", "sampler": sampler, "median": median, "p90": median, "budget": budget,
                "valid_configs": 2000, "median_pct": median / 20, "seeds": 5}

    table = replay_compare.markdown([row("tpe", 100, 400), row("gp", 31, 30), row("learned", 20, 400)],
                                    ["tpe", "gp", "learned"], {"seeds": 5, "tolerance": 0.02, "budget": 400})
    assert "| s | 2000 | 100 (100) | >30 (>30) | 20 (20) |" in table
    assert "| **geomean of median / TPE's** | | 1.00 | 0.31 | 0.20 |" in table  # '>30' counted as 31
    assert "| **spaces with at most half TPE's median** | | 0/1 | 0/1 | 1/1 |" in table
    assert "gp (B=30)" in table and "| tpe |" in table
