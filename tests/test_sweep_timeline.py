"""A sweep's timeline read from its records (benchmarks/sweep_timeline.py): start, steady state,
trial slots and lanes, on an export made up so that each figure is known."""
import gzip
import json

import pytest

from benchmarks import sweep_timeline


def _run(trial: int, index: int, actor: float, start: float, end: float, gpu: str, lane_s: float) -> dict:
    return {"run_id": f"r{trial}-{index}", "end_time": int(end * 1e3) + 5,
            "tags": {"kernelevolve.role": "candidate", "candidate_id": f"t{trial}-{index}", "ray_gpu_ids": gpu},
            "metrics": {"trial_started": start, "actor_started": actor, "timed_to": end, "lane_s": lane_s,
                        "compile_wall_s": 0.3}}


def _sweep() -> list[dict]:
    """Two actors on two GPUs, 100 trials of 2 candidates each, back to back: a trial starts 0.1 s
    after the one before it on its actor ends, its candidates end 0.5 and 1.0 s after its start,
    each holding its lane 0.25 s. The first trial starts at t = 100; a parent run ends 3 s after
    the last candidate."""
    rows = []
    for actor, gpu in ((1.0, "0"), (2.0, "1")):
        t = 100.0
        for n in range(50):
            trial = int(actor) * 1000 + n
            rows += [_run(trial, 0, actor, t, t + 0.5, gpu, 0.25), _run(trial, 1, actor, t, t + 1.0, gpu, 0.25)]
            t += 1.1
    last = max(r["metrics"]["timed_to"] for r in rows)
    rows.append({"run_id": "parent", "end_time": int((last + 3) * 1e3), "tags": {"kernelevolve.role": "study"},
                 "metrics": {}})
    return rows


def test_the_figures_of_a_known_sweep():
    t = sweep_timeline.timeline(_sweep())
    assert t["candidates"] == 200 and t["trials"] == 100 and t["candidates_per_trial"] == 2
    assert t["ramp_s"] == pytest.approx(0.5)
    assert t["after_s"] == pytest.approx(3.0, abs=0.01)
    # two slots, each ends 2 candidates every 1.1 s
    assert t["steady_per_s"] == pytest.approx(2 * 2 / 1.1, rel=0.05)
    assert t["trials_in_flight"] == pytest.approx(2 * 1.0 / 1.1, rel=0.05)
    assert t["trial_life_s"]["median"] == pytest.approx(1.0)
    assert t["trial_tail_share"]["median"] == pytest.approx(0.5)  # held 0.5 s for the second
    assert t["refill_gap_s"]["median"] == pytest.approx(0.1)
    assert t["lane_busy_share"]["0"] == pytest.approx(2 * 0.25 / 1.1, rel=0.05)
    assert set(t["lane_busy_share"]) == {"0", "1"}
    # the first wave: the two trials begun before the first result at t = 100.5
    assert t["first_wave"]["candidates"] == 4
    assert t["first_wave"]["compile_wall_s"]["median"] == pytest.approx(0.3)
    assert t["first_wave"]["slot_start_s"] is None  # not in these records
    assert t["driver_lag_s"] is None and t["first_report_lag_s"] is None  # nor these


def test_the_driver_lag_from_the_reports_to_their_hearing():
    rows = _sweep()
    for r in rows:
        m = r["metrics"]
        if "trial_started" in m:  # each trial reports 1.0 s after its start; the first heard 3 s later
            m["trial_reported"] = m["trial_started"] + 1.0
            m["driver_heard"] = m["trial_reported"] + (3.0 if m["trial_started"] == 100.0 else 0.05)
    t = sweep_timeline.timeline(rows)
    assert t["first_report_lag_s"] == pytest.approx(3.0)
    assert t["driver_lag_s"]["median"] == pytest.approx(0.05)
    assert "the first one after 3.00 s" in sweep_timeline.describe("x", t)


def test_the_lanes_replies_on_their_way_back_first_wave_apart():
    """Each reply reaches its trial 0.01 s after the lane ended it, 2 s for the first wave's; a
    trial reports at once after its last reply, the first wave's 0.5 s later."""
    rows = _sweep()
    for r in rows:
        m = r["metrics"]
        if "trial_started" in m:
            first = m["trial_started"] == 100.0
            m["lane_ended"] = m["timed_to"]
            m["lane_answered"] = m["lane_ended"] + (2.0 if first else 0.01)
            m["trial_reported"] = m["trial_started"] + 1.0 + (2.5 if first else 0.01)
            m["driver_heard"] = m["trial_reported"]
    t = sweep_timeline.timeline(rows)
    a = t["answers"]
    assert a["first_wave_return_s"]["median"] == pytest.approx(2.0)
    assert a["return_s"]["median"] == pytest.approx(0.01)
    assert a["first_wave_report_wait_s"]["median"] == pytest.approx(0.5)
    assert a["report_wait_s"]["median"] == pytest.approx(0.0, abs=1e-6)
    assert "reached its trial after 0.010 s (first wave 2.000 s)" in sweep_timeline.describe("x", t)
    assert "reached its trial" not in sweep_timeline.describe("x", sweep_timeline.timeline(_sweep()))


def test_the_command_reads_an_export_and_says_when_it_holds_no_candidates(tmp_path, capsys):
    path = tmp_path / "sweep.runs.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in _sweep())
    assert sweep_timeline.main([str(path), "--json", str(tmp_path / "t.json")]) == 0
    assert "200 candidates in 100 trials" in capsys.readouterr().out
    assert json.loads((tmp_path / "t.json").read_text())[str(path)]["trials"] == 100
    empty = tmp_path / "empty.runs.jsonl.gz"
    with gzip.open(empty, "wt") as fh:
        fh.write(json.dumps({"run_id": "p", "tags": {"kernelevolve.role": "study"}, "metrics": {}}) + "\n")
    assert sweep_timeline.main([str(empty)]) == 2
    assert "no candidate runs" in capsys.readouterr().err
