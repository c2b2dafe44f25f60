"""The `retime` request of an evaluation process: a study's finalists and its peer, re-timed side by side.

Why a request of its own: a search's best candidate was measured once, among many, and the
fastest of many measurements is biased low (the winner's curse). At a study's end its top configs
(and the vendor paths beside them) are timed again, interleaved round by round with the torch
peer on the same clock, and the study's result is the median of those rounds; every timed call's
output is sampled and checked by the judge as a candidate's are (tuner/measure/timed_outputs.py).
"""
from __future__ import annotations


def retime_request(ev, req: dict) -> dict:
    """Re-time the top configs and the peer, interleaved round by round (no winner's curse:
    a candidate that won on a lucky measurement is measured again beside the others). Every
    config's timed calls alternate between two input sets (a skipped call leaves the other
    set's output), and a sample of them, across all rounds, is checked by the judge: a row
    whose calls are wrong is `incorrect`."""
    tunable, problem, hw, study = ev._load(req)
    spec, rounds, bench = tunable.kernel, int(req.get("rounds", 5)), req.get("bench", {})
    sets, shape_of = ev._timed_inputs(spec, problem, study, (0, 1))
    outputs = {i: ev._timed_outputs(spec, c, sets, shape_of, bench) for i, c in enumerate(req["configs"])}
    pooled, _ = ev._set(spec, problem, study, 0, with_ref=False)
    samples = {k: [] for k in (*outputs, "baseline")}
    with ev._lock():
        for _ in range(rounds):
            for i, timed_outputs in outputs.items():
                fn, before = timed_outputs.loop()
                samples[i].append(ev._time(fn, bench, bench.get("retime_rep_ms"), before=before)[1])
                timed_outputs.end_loop()
            samples["baseline"].append(ev._time(lambda: spec.baseline(pooled), bench,
                                                  bench.get("retime_rep_ms"))[1])
        checks = {i: ev._check_timed(spec, problem, study, sets, o, row=i) for i, o in outputs.items()}
    med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    rows = [{"config": c, "latency_ms": med[i], "rounds_ms": samples[i],
             "status": "ok" if checks[i].ok else "incorrect", "error": checks[i].reason,
             "timed_calls": outputs[i].total_calls(), "timed_checked": len(outputs[i].samples())}
            for i, c in enumerate(req["configs"])]
    base = None if ev.interpreter else med["baseline"]
    for r in rows:
        if base:
            r.update(speedup=base / r["latency_ms"], **ev._rates(spec, problem, hw, r["latency_ms"]))
    return {"status": "ok", "rows": rows, "baseline_ms": base, **ev._tags(),
            "timing": "interpreter" if ev.interpreter else "gpu"}
