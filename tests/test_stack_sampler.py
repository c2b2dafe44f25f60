"""benchmarks/stack_sampler.py: the main thread's stack, sampled over time, names where it was."""
import json
import time

from benchmarks.stack_sampler import StackSampler, summarize


def _busy_here(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        sum(range(1000))


def test_samples_name_the_function_the_main_thread_was_in_and_when(tmp_path):
    path = str(tmp_path / "stacks.jsonl")
    t0 = time.time()
    sampler = StackSampler(path, t0, interval=0.01)
    sampler.start()
    time.sleep(0.3)
    _busy_here(0.4)
    sampler.stop()
    rows = [json.loads(line) for line in open(path)]
    assert len(rows) > 20 and all(rows[i]["t"] <= rows[i + 1]["t"] for i in range(len(rows) - 1))
    busy = [r for r in rows if any("_busy_here" in f for f in r["stack"])]
    assert busy and min(r["t"] for r in busy) >= 0.25  # only once it was called
    assert busy[0]["stack"][-1].split(" ")[-1] in ("_busy_here", "<genexpr>")  # innermost last
    top = dict(summarize(path, 0.35, 10.0))
    assert max(share for frame, share in top.items() if "_busy_here" in frame) > 0.8
    assert summarize(path, 100.0, 200.0) == []
