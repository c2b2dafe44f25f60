"""Where a sweep's time went, read from its records: its start, its steady state, its trials' slots
and its GPU lanes.

A sweep's end-to-end rate (candidates per minute from the command's start, engine_suite.py) mixes
three things that grow differently with a node's GPUs: the fixed start (the engine's import, Ray,
the first compiles), the ramp until every slot has work, and the steady state between. This reads
the candidates' own timestamps (records' `trial_started`, `actor_started`, `timed_to`, `lane_s`;
tuner/records/schema.py) from a benchmark's MLflow export (benchmarks/export_runs.py) and gives:

  ramp        the first trial's start to the first candidate's end
  steady      candidates a second between the 20th and the 80th percentile of their ends
  trials      trials in flight on average in that window, their life (first start to last end),
              the share of it after their first candidate ended (a slot held for the slowest)
  refill      on each trial actor, the gap between one trial's end and its next trial's start
              (Ray Tune's turnaround: the result to the driver, the next suggestion, the start)
  lanes       each GPU lane's busy share in the window (its requests' `lane_s`)
  first wave  the candidates whose trials began before the first result: their compile's wall
              time, of it the slot's process start and the study's load, the compile itself,
              the lane's queue and request (medians)
  driver lag  a trial's report (`trial_reported`) to the driver taking it in (`driver_heard`):
              Ray Tune's delivery and the driver's loop, over all trials and for the first
  answers     the lane's end of a candidate (`lane_ended`) to its trial having the reply
              (`lane_answered`), and a trial's last reply to its report, for the first wave
              and for the trials after it

    python benchmarks/sweep_timeline.py OUT/suite-h100-large_g4.runs.jsonl.gz [...] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from collections import defaultdict

STEADY = (0.2, 0.8)  # the steady window: between these quantiles of the candidates' ends
# a first-wave candidate's figures (tuner/records/schema.py)
WAVE_FIGURES = ("compile_wall_s", "slot_start_s", "slot_fork_wait_s", "slot_child_start_s", "slot_child_setup_s",
                "slot_child_module_s", "slot_child_evaluator_s", "study_load_s", "compile_s", "queue_s", "lane_s")


def read(path: str) -> list[dict]:
    """Every run of an export."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def candidates(rows: list[dict]) -> list[dict]:
    """The candidate child runs that carry the trial's timestamps."""
    return [r for r in rows if r.get("tags", {}).get("kernelevolve.role") == "candidate"
            and "trial_started" in r.get("metrics", {})]


def _end(run: dict) -> float:
    m = run["metrics"]
    return m.get("timed_to") or (run.get("end_time") or 0) / 1e3 or m["trial_started"]


def _trial(run: dict) -> str:
    return run["tags"].get("candidate_id", run["run_id"]).rsplit("-", 1)[0]


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "mean": statistics.fmean(values),
            "p90": _quantile(values, 0.9)}


def timeline(rows: list[dict]) -> dict:
    """The figures above for one sweep's runs (its export)."""
    runs = candidates(rows)
    if not runs:
        raise ValueError("no candidate runs with trial timestamps")
    ends = sorted(_end(r) for r in runs)
    first_start = min(r["metrics"]["trial_started"] for r in runs)
    lo, hi = _quantile(ends, STEADY[0]), _quantile(ends, STEADY[1])
    window = max(hi - lo, 1e-9)
    in_window = [r for r in runs if lo <= _end(r) <= hi]

    trials: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        trials[_trial(r)].append(r)
    spans = []  # (start, first end, last end, actor)
    for members in trials.values():
        m_ends = [_end(r) for r in members]
        spans.append((min(r["metrics"]["trial_started"] for r in members), min(m_ends), max(m_ends),
                      members[0]["metrics"].get("actor_started")))
    # trials in flight, averaged over the window: each trial's overlap with it
    overlap = sum(max(0.0, min(e, hi) - max(s, lo)) for s, _, e, _ in spans)
    steady_spans = [(s, f, e) for s, f, e, _ in spans if lo <= s <= hi]
    lives = [e - s for s, _, e in steady_spans]
    tails = [(e - f) / (e - s) for s, f, e in steady_spans if e > s]
    by_actor: dict = defaultdict(list)
    for s, _, e, actor in spans:
        if actor is not None:
            by_actor[actor].append((s, e))
    gaps = []
    for items in by_actor.values():
        items.sort()
        gaps += [b[0] - a[1] for a, b in zip(items, items[1:]) if lo <= b[0] <= hi]
    # the first wave (trials begun before the first result): where its wait went, by each
    # candidate's own figures (a slot's process start and study load are paid by its first)
    first_wave = [r for r in runs if r["metrics"]["trial_started"] < ends[0]]
    wave = {k: stats([r["metrics"][k] for r in first_wave if k in r["metrics"]])
            for k in WAVE_FIGURES}
    # the driver's delay: a trial's report to the driver taking it in (Tune's delivery and the
    # driver's loop), over all trials and for the first one reported
    reported = sorted((r["metrics"]["trial_reported"], r["metrics"]["driver_heard"]) for r in runs
                      if "trial_reported" in r["metrics"] and "driver_heard" in r["metrics"])
    lag = stats([h - t for t, h in reported])
    # where a trial's candidates were once the lane had finished them: Ray's return of each reply
    # (lane_ended -> lane_answered) and the trial's wait from its last reply to its report
    answered = [r for r in runs if "lane_answered" in r["metrics"] and "lane_ended" in r["metrics"]]
    in_wave = {id(r) for r in first_wave}
    by_trial: dict = defaultdict(list)
    for r in answered:
        by_trial[(r["tags"].get("study"), r["metrics"]["trial_reported"])].append(r["metrics"])
    waits = {True: [], False: []}  # first wave or not: the trial's report after its last reply
    for (_, reported_at), ms in by_trial.items():
        first = min(m["trial_started"] for m in ms) < ends[0]
        waits[first].append(reported_at - max(m["lane_answered"] for m in ms))
    answer = {"return_s": stats([r["metrics"]["lane_answered"] - r["metrics"]["lane_ended"] for r in answered]),
              "first_wave_return_s": stats([r["metrics"]["lane_answered"] - r["metrics"]["lane_ended"]
                                            for r in answered if id(r) in in_wave]),
              "first_wave_report_wait_s": stats(waits[True]), "report_wait_s": stats(waits[False])}
    lane_busy: dict[str, float] = defaultdict(float)
    for r in in_window:  # GPU targets only: an interpreter's candidate has no lane
        if "lane_s" in r["metrics"]:
            lane_busy[str(r["tags"].get("ray_gpu_ids", ""))] += r["metrics"]["lane_s"]

    return {
        "candidates": len(runs), "trials": len(spans),
        "candidates_per_trial": len(runs) / len(spans),
        "span_s": ends[-1] - first_start,
        # the last MLflow record (a parent run's end, after its study's re-timing) after the last
        # candidate's end
        "after_s": max([(r.get("end_time") or 0) / 1e3 for r in rows] + [ends[-1]]) - ends[-1],
        "ramp_s": ends[0] - first_start,
        "steady_window_s": window,
        "steady_per_s": len(in_window) / window,
        "trials_in_flight": overlap / window,
        "trial_life_s": stats(lives),
        "trial_tail_share": stats(tails),
        "refill_gap_s": stats(gaps),
        "lane_busy_share": {k: v / window for k, v in sorted(lane_busy.items())},
        "first_wave": {"candidates": len(first_wave), **wave},
        "driver_lag_s": lag,
        "first_report_lag_s": reported[0][1] - reported[0][0] if reported else None,
        "answers": answer,
    }


def describe(name: str, t: dict) -> str:
    def s(key, fmt="{:.2f}"):
        v = t[key]
        return "-" if v is None else f"{fmt.format(v['median'])} (mean {fmt.format(v['mean'])})"
    lanes = ", ".join(f"{k or '-'} {v:.0%}" for k, v in t["lane_busy_share"].items())
    wave = t["first_wave"]
    parts = ", ".join(f"{k} {v['median']:.2f}" for k, v in wave.items() if isinstance(v, dict))
    return (f"{name}: {t['candidates']} candidates in {t['trials']} trials over {t['span_s']:.1f} s; "
            f"first end {t['ramp_s']:.1f} s after the first trial began, last record "
            f"{t['after_s']:.1f} s after the last end; steady "
            f"{t['steady_per_s']:.1f} candidates/s over {t['steady_window_s']:.1f} s, "
            f"{t['trials_in_flight']:.1f} trials in flight, life {s('trial_life_s')} s, "
            f"after the first end {s('trial_tail_share')} of it, refill gap "
            f"{s('refill_gap_s', '{:.3f}')} s; lanes busy: {lanes or '-'}; first wave "
            f"({wave['candidates']} candidates, medians in s): {parts or '-'}; the driver took in a trial's "
            f"report after {s('driver_lag_s', '{:.3f}')} s"
            + (f", the first one after {t['first_report_lag_s']:.2f} s" if t["first_report_lag_s"] is not None else "")
            + answers(t.get("answers") or {}))


def answers(a: dict) -> str:
    """The lanes' replies on their way back, where the records carry them (lane_answered)."""
    if not a.get("return_s"):
        return ""
    m = {k: (v["median"] if v else float("nan")) for k, v in a.items()}
    return (f"; a lane's reply reached its trial after {m['return_s']:.3f} s (first wave "
            f"{m['first_wave_return_s']:.3f} s), a trial reported {m['report_wait_s']:.3f} s after its "
            f"last reply (first wave {m['first_wave_report_wait_s']:.3f} s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exports", nargs="+", help="benchmarks/export_runs.py files (.runs.jsonl.gz)")
    ap.add_argument("--json", help="write every export's figures here")
    args = ap.parse_args(argv)
    out = {}
    for path in args.exports:
        try:
            out[path] = timeline(read(path))
        except (OSError, ValueError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
        print(describe(path, out[path]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
