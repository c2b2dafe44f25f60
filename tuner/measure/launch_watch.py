"""Triton launches during a call: counted, and the stray ones told apart.

The evaluator (tuner/measure/evaluate.py) counts the Triton launches of each verified call (a
candidate that computes its output with torch and launches no Triton kernel would be timed as if it
were the candidate: NO_LAUNCH), and watches for stray launches there, in every captured call and in
a random share of the timed calls (tuner/measure/timed_outputs.py): a launch from another thread
than the caller's, or on a GPU to another stream than the one it was called on (STRAY_LAUNCH),
whose work the clocks' events do not cover. The judge (tuner/measure/judge.py) turns both counts
into verdicts. See docs/reliability.md.
"""
from __future__ import annotations

import contextlib
import threading


class LaunchCount:
    """Triton launches seen during a block, and how many of them were stray (`watch`): sent from a
    thread other than the one that opened the block, or, on a GPU, to a stream other than
    `expected` (the one the harness called the candidate on)."""

    def __init__(self, expected: int | None = None, watch: bool = False):
        self.n = 0
        self.route = ""
        self.expected, self.watch = expected, watch
        self.thread = threading.get_ident()
        self.stray = 0

    def __call__(self, *args, **kwargs):
        self.n += 1
        if not self.watch:
            return
        if threading.get_ident() != self.thread:
            self.stray += 1
        elif self.expected is not None:
            stream = launch_stream(args[0] if args else None)
            if stream is not None and int(stream) != int(self.expected):
                self.stray += 1


def launch_stream(metadata):
    """The stream a Triton launch went to, from the launch-enter hook's argument (triton 3.x's
    LazyDict: {"name", "function", "stream"} in `.data`, read without its lazy extras), or None."""
    data = getattr(metadata, "data", None)
    if isinstance(data, dict):
        return data.get("stream")
    return None


# Why stray launches fail a candidate: the clocks time the calls with events on the stream the
# harness calls the candidate on (do_bench, clean) or capture that stream (cudagraph). A launcher
# that sends its kernel to a stream of its own (`with torch.cuda.stream(side): ...`) is not covered
# by those events, and under capture its launch runs eagerly and is no part of the graph; one that
# hands the launch to a thread of its own and returns has it land after the call's end event. Each
# would be timed at the cost of an empty call, while its output (written a little later) checks out.
STRAY_LAUNCH = ("launched a Triton kernel on a stream other than the one it was called on, or from "
                "another thread (its work would run outside the timed events)")


@contextlib.contextmanager
def count_launches(interpreter: bool, expected_stream: int | None = None, watch: bool = False):
    """Count Triton kernel launches inside the block; `watch`: also the stray ones (another
    thread's than the one entering the block; on a GPU, another stream than `expected_stream`,
    by default the stream current as the block is entered: LaunchCount.stray).

    Compiled Triton: the launch-enter hook (triton >= 3.4: `triton.knobs.runtime.launch_enter_hook`,
    a HookChain with add/remove from 3.5, a plain attribute before; older: the class attribute
    `CompiledKernel.launch_enter_hook`). Under TRITON_INTERPRET=1 that hook never fires (the
    interpreter runs the kernel's Python body through its own GridExecutor, never a launcher),
    so there the grid executor's __call__ is wrapped for the duration of the block instead.
    """
    if watch and not interpreter and expected_stream is None:  # the caller's stream, as its thread
        import torch

        expected_stream = torch.cuda.current_stream().cuda_stream
    counter = LaunchCount(None if interpreter else expected_stream, watch)
    undo = []
    if interpreter:
        from triton.runtime import interpreter as interp

        cls = getattr(interp, "GridExecutor", None)
        if cls is not None:
            original = cls.__call__

            def counted(self, *a, **k):
                counter()
                return original(self, *a, **k)

            cls.__call__ = counted
            counter.route = "interpreter GridExecutor"
            undo.append(lambda: setattr(cls, "__call__", original))
        else:  # an interpreter without GridExecutor: count InterpretedFunction.run
            fcls = interp.InterpretedFunction
            original_run = fcls.run

            def counted_run(self, *a, **k):
                if not k.get("warmup"):
                    counter()
                return original_run(self, *a, **k)

            fcls.run = counted_run
            counter.route = "interpreter InterpretedFunction.run"
            undo.append(lambda: setattr(fcls, "run", original_run))
    else:
        knobs = getattr(__import__("triton"), "knobs", None)
        runtime = getattr(knobs, "runtime", None) if knobs is not None else None
        if runtime is not None and hasattr(runtime, "launch_enter_hook"):
            chain = runtime.launch_enter_hook
            if hasattr(chain, "add") and hasattr(chain, "remove"):
                chain.add(counter)
                undo.append(lambda: chain.remove(counter))
            else:  # a single hook slot: chain ours in front of whatever is there
                previous = chain

                def both(*a, **k):
                    counter(*a, **k)
                    if previous is not None:
                        previous(*a, **k)

                runtime.launch_enter_hook = both
                undo.append(lambda: setattr(runtime, "launch_enter_hook", previous))
            counter.route = "triton.knobs.runtime.launch_enter_hook"
        else:
            from triton.compiler.compiler import CompiledKernel

            previous = getattr(CompiledKernel, "launch_enter_hook", None)

            def both_old(*a, **k):
                counter(*a, **k)
                if previous is not None:
                    previous(*a, **k)

            CompiledKernel.launch_enter_hook = both_old
            counter.route = "CompiledKernel.launch_enter_hook"
            undo.append(lambda: setattr(CompiledKernel, "launch_enter_hook", previous))
    try:
        yield counter
    finally:
        for u in reversed(undo):
            u()


NO_LAUNCH = "launched no Triton kernel (the candidate must compute its output with Triton)"
