"""Where the sweep's own processes spend their time, over time: Python stacks sampled every
`interval` seconds by a daemon thread and written as JSON lines ({"t": seconds since `t0`,
"thread": its name, "stack": ["file:line func", ...], innermost last}).

Why not cProfile: it sums a whole run, and the questions here are about one span of it (what the
driver does between the Tuner's start and the first result it takes in; what a trial actor does
while its first lane replies are on their way); why not py-spy: it is not on the GPU image.

The benchmark driver samples its own main thread (benchmarks/engine_suite.py --stack-samples).
With STACK_SAMPLES_ENV set to a folder in the sweep's environment, every trial actor samples all
its threads for its first ACTOR_SECONDS into a file of its own there (tuner/execution/trial.py).

    python -m kernelevolve.tuner.execution.stacks SAMPLES.jsonl[.gz] --from 10 --to 20 [--thread NAME]
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import sys
import threading
import time

STACK_SAMPLES_ENV = "KERNELEVOLVE_STACK_SAMPLES"
STACK_T0_ENV = "KERNELEVOLVE_STACK_T0"  # the samples' t = 0 (unix time), the driver's where it sets it
ACTOR_SECONDS = 20.0  # a trial actor's sampled start


class StackSampler(threading.Thread):
    """`target`: the thread id to sample (default: the main thread); `all_threads`: every thread
    of the process instead (but this one). Stops at stop() or after `seconds`."""

    def __init__(self, path: str, t0: float, interval: float = 0.02, depth: int = 40,
                 target: int | None = None, all_threads: bool = False, seconds: float | None = None):
        super().__init__(daemon=True, name="stack-sampler")
        self.path, self.t0, self.interval, self.depth = path, t0, interval, depth
        self.target = target if target is not None else threading.main_thread().ident
        self.all_threads, self.seconds = all_threads, seconds
        self._done = threading.Event()

    def run(self) -> None:
        end = time.time() + self.seconds if self.seconds else None
        opener = gzip.open if self.path.endswith(".gz") else open
        with opener(self.path, "wt", encoding="utf-8") as fh:
            while not self._done.wait(self.interval) and (end is None or time.time() < end):
                frames = sys._current_frames()
                names = {t.ident: t.name for t in threading.enumerate()}
                idents = [i for i in frames if i != self.ident] if self.all_threads else [self.target]
                t = round(time.time() - self.t0, 3)
                for ident in idents:
                    frame, stack = frames.get(ident), []
                    while frame is not None and len(stack) < self.depth:
                        code = frame.f_code
                        stack.append(f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_name}")
                        frame = frame.f_back
                    if stack:
                        fh.write(json.dumps({"t": t, "thread": names.get(ident, str(ident)),
                                             "stack": stack[::-1]}) + "\n")

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)


def sample_actor_start(name: str, started: float) -> StackSampler | None:
    """Where STACK_SAMPLES_ENV names a folder: this process's threads over its next ACTOR_SECONDS,
    `t` counted from STACK_T0_ENV (else from `started`). None without it."""
    folder = os.environ.get(STACK_SAMPLES_ENV)
    if not folder:
        return None
    return sample_this_process(folder, name, float(os.environ.get(STACK_T0_ENV) or started))


def sample_this_process(folder: str, name: str, t0: float, seconds: float = ACTOR_SECONDS) -> StackSampler:
    """Every thread of this process, for its next `seconds`, into folder/name-<pid>.jsonl.gz."""
    os.makedirs(folder, exist_ok=True)
    sampler = StackSampler(os.path.join(folder, f"{name}-{os.getpid()}.jsonl.gz"), t0, interval=0.05,
                           depth=30, all_threads=True, seconds=seconds)
    sampler.start()
    return sampler


def summarize(path: str, start: float, end: float, top: int = 25, thread: str | None = None) -> list[tuple[str, float]]:
    """The frames seen most between `start` and `end` (seconds since t0): each frame's share of
    the samples whose stack holds it (a frame counted once per sample); `thread`: that thread's
    samples only (by name)."""
    seen, n = collections.Counter(), 0
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if start <= row["t"] <= end and (thread is None or row.get("thread") == thread):
                n += 1
                seen.update(set(row["stack"]))
    return [(frame, count / n) for frame, count in seen.most_common(top)] if n else []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="the frames a sampled process was seen in most, over a span")
    ap.add_argument("samples")
    ap.add_argument("--from", dest="start", type=float, default=0.0)
    ap.add_argument("--to", dest="end", type=float, default=1e9)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--thread", help="only this thread's samples (by name, e.g. MainThread)")
    args = ap.parse_args(argv)
    for frame, share in summarize(args.samples, args.start, args.end, args.top, args.thread):
        print(f"{share:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
