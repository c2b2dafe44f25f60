"""Where a thread's time goes, over time: its Python stack sampled every `interval` seconds by a
daemon thread and written as JSON lines ({"t": seconds since `t0`, "stack": ["file:line func", ...]},
innermost last). Why not cProfile: it sums a whole run, and the question here is what the sweep's
driver does in one span of it (the seconds between the Tuner's start and the first result it
takes in); why not py-spy: it is not on the GPU image.

    sampler = StackSampler(path, t0); sampler.start(); ...; sampler.stop()
    python benchmarks/stack_sampler.py SAMPLES.jsonl --from 10 --to 20   (the frames most seen)
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import threading
import time


class StackSampler(threading.Thread):
    def __init__(self, path: str, t0: float, interval: float = 0.02, depth: int = 40,
                 target: int | None = None):
        super().__init__(daemon=True, name="stack-sampler")
        self.path, self.t0, self.interval, self.depth = path, t0, interval, depth
        self.target = target if target is not None else threading.main_thread().ident
        self._done = threading.Event()

    def run(self) -> None:
        with open(self.path, "w", encoding="utf-8") as fh:
            while not self._done.wait(self.interval):
                frame = sys._current_frames().get(self.target)
                stack = []
                while frame is not None and len(stack) < self.depth:
                    code = frame.f_code
                    stack.append(f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_name}")
                    frame = frame.f_back
                fh.write(json.dumps({"t": round(time.time() - self.t0, 3), "stack": stack[::-1]}) + "\n")

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)


def summarize(path: str, start: float, end: float, top: int = 25) -> list[tuple[str, float]]:
    """The frames seen most between `start` and `end` (seconds since t0): each frame's share of
    the samples whose stack holds it (a frame counted once per sample)."""
    seen, n = collections.Counter(), 0
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if start <= row["t"] <= end:
                n += 1
                seen.update(set(row["stack"]))
    return [(frame, count / n) for frame, count in seen.most_common(top)] if n else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("samples")
    ap.add_argument("--from", dest="start", type=float, default=0.0)
    ap.add_argument("--to", dest="end", type=float, default=1e9)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    for frame, share in summarize(args.samples, args.start, args.end, args.top):
        print(f"{share:6.1%}  {frame}")


if __name__ == "__main__":
    main()
