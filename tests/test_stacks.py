"""tuner/execution/stacks.py: a process's stacks, sampled over time, name where it was."""
import gzip
import json
import os
import threading
import time

from kernelevolve.tuner.execution.stacks import StackSampler, sample_this_process, summarize


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


def test_a_process_samples_all_its_threads_for_a_while_into_a_file_of_its_own(tmp_path):
    waiting = threading.Event()
    helper = threading.Thread(target=waiting.wait, name="helper-thread", daemon=True)
    helper.start()
    sampler = sample_this_process(str(tmp_path), "trial", time.time(), seconds=0.4)
    _busy_here(0.3)
    sampler.join(timeout=5)
    waiting.set()
    assert not sampler.is_alive()  # stopped by itself
    (path,) = tmp_path.iterdir()
    assert path.name == f"trial-{os.getpid()}.jsonl.gz"
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    threads = {r["thread"] for r in rows}
    assert {"MainThread", "helper-thread"} <= threads and "stack-sampler" not in threads
    assert summarize(str(path), 0, 10, thread="helper-thread")[0][1] == 1.0
    assert any("_busy_here" in f for f, _ in summarize(str(path), 0, 10, thread="MainThread"))
