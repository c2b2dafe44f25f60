"""The harness's own functions, sealed when the evaluator is imported (before any candidate code
runs in its process): verification's checks (CHECK_NAMES) and the clocks' timers (TIMER_NAMES),
whose swap by a candidate each check's evidence reports (HarnessSeal.broken). See
docs/reliability.md for what a seal can and cannot stop.
"""
from __future__ import annotations

import sys

# The functions a candidate's verdict rests on (HarnessSeal's default)...
CHECK_NAMES = ("kernelevolve.tuner.measure.verify:check", "kernelevolve.tuner.measure.verify:poison",
               "kernelevolve.tuner.measure.guards:guard_inputs",
               "kernelevolve.tuner.measure.launch_watch:count_launches",
               "kernelevolve.tuner.measure.launch_watch:LaunchCount.__call__",
               "kernelevolve.tuner.measure.launch_watch:library_mode",
               "kernelevolve.tuner.measure.timed_outputs:guarded_output",
               "kernelevolve.tuner.measure.timed_outputs:guarded_outputs",
               "kernelevolve.tuner.measure.timed_outputs:TimedOutputs._before",
               "kernelevolve.tuner.measure.timed_outputs:TimedOutputs._call",
               "kernelevolve.tuner.measure.timed_outputs:TimedOutputs._watched")
# ... and those its latency rests on: the clocks (tuner/measure/clocks.py) and what they call at
# each timing, looked up by attribute then. A kernel that swaps one (`triton.testing.do_bench =`
# a wrapper that halves its result, `torch.cuda.Event.elapsed_time`, the interpreter's
# `time.perf_counter`) would report the latency it likes with a right output.
TIMER_NAMES = ("kernelevolve.tuner.measure.clocks:measure", "kernelevolve.tuner.measure.clocks:time_gpu",
               "kernelevolve.tuner.measure.clocks:time_graph", "kernelevolve.tuner.measure.clocks:time_gpu_clean",
               "kernelevolve.tuner.measure.clocks:time_wall", "kernelevolve.tuner.measure.clocks:clean_counts",
               "triton.testing:do_bench", "triton.testing:do_bench_cudagraph",
               "torch.cuda:Event", "torch.cuda:Event.record", "torch.cuda:Event.elapsed_time",
               "torch.cuda:synchronize", "time:perf_counter", "statistics:median", "statistics:quantiles")


class HarnessSeal:
    """Identity of the functions verification and timing rely on, taken when the evaluator is
    imported (before any candidate code runs in the process): a candidate that swaps one of them,
    or its code object, is caught at its next check (each check's evidence carries the seal's
    word: the timed calls' check comes after the timing), and its process replaced. `owners`
    seals methods of classes too ({class: (method names)}: the evaluator's own). It cannot stop
    a candidate that patches this class too, or one that restores what it swapped before the
    check; the verdict itself is the judge's (tuner/measure/judge.py), in a process no candidate
    runs in."""

    def __init__(self, names: tuple = CHECK_NAMES + TIMER_NAMES, owners: dict | None = None):
        import importlib

        self.names = names
        for mod in dict.fromkeys(n.partition(":")[0] for n in names):
            if mod not in sys.modules:  # sealed as imported, not as absent (a later import is no swap)
                try:
                    importlib.import_module(mod)
                except ImportError:
                    pass
        self.sealed = {n: self._get(n) for n in names}
        self.owners = {cls: {m: self._code(getattr(cls, m, None)) for m in methods}
                       for cls, methods in (owners or {}).items()}

    @staticmethod
    def _code(obj):
        return obj, getattr(obj, "__code__", None)

    @staticmethod
    def _get(name: str):
        mod, _, attr = name.partition(":")
        obj = sys.modules.get(mod)
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        return obj, getattr(obj, "__code__", None)

    def broken(self) -> str:
        changed = [n.replace(":", ".") for n in self.names if self._get(n) != self.sealed[n]]
        changed += [f"{cls.__name__}.{m}" for cls, methods in self.owners.items()
                    for m, sealed in methods.items() if self._code(getattr(cls, m, None)) != sealed]
        if not changed:
            return ""
        return f"replaced the harness's {', '.join(changed)}"
