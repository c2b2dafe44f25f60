"""What a candidate's call ran: its Triton launches counted, the stray ones told apart, and the
library kernels it called through torch named.

The evaluator (tuner/measure/evaluate.py) counts the Triton launches of each verified call (a
candidate that computes its output with torch and launches no Triton kernel would be timed as if it
were the candidate: NO_LAUNCH), and watches for stray launches there, in every captured call and in
a random share of the timed calls (tuner/measure/timed_outputs.py): a launch from another thread
than the caller's, or on a GPU to another stream than the one it was called on (STRAY_LAUNCH),
whose work the clocks' events do not cover. In the same calls it names the torch operators of the
library's whole-operator kernels the candidate ran (LIBRARY_OPS: a candidate that launches some
Triton kernel and computes its result with cuBLAS would pass as a Triton kernel as fast as
cuBLAS: LIBRARY_CALL). The judge (tuner/measure/judge.py) turns the counts into verdicts. See
docs/reliability.md.
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
        self.library: set = set()  # LIBRARY_OPS the block ran (`watch` only: LibraryCalls)

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
        if watch:
            with library_mode()(counter):
                yield counter
        else:
            yield counter
    finally:
        for u in reversed(undo):
            u()


NO_LAUNCH = "launched no Triton kernel (the candidate must compute its output with Triton)"


# The torch operators (aten overload packets, by name) that run a library's whole-operator kernel:
# the GEMMs, convolutions and attentions whose FLOPs torch's own counter knows
# (torch.utils.flop_counter), cuBLASLt's GEMM with its epilogue, and the library kernels of the
# memory-bound families tuned here (softmax, norms, embedding bags). Why these and no more: a
# candidate that launches some Triton kernel and computes its result with one of them would be
# recorded, dispatched and reported as a Triton kernel as fast as the library (the vendor path is
# a candidate of its own, named so, kernels/gemm_vendor.py). Elementwise and data-movement
# operators stay allowed: a launcher may allocate, pad, cast, copy or sum offsets with torch, and
# pays for it inside its timed call. A gather (index_select, embedding) is data movement too.
LIBRARY_OPS = frozenset((
    "aten.mm", "aten.addmm", "aten._addmm_activation", "aten.bmm", "aten.baddbmm", "aten.addbmm",
    "aten.mv", "aten.addmv", "aten.dot", "aten.vdot", "aten._int_mm", "aten._scaled_mm",
    "aten._scaled_grouped_mm", "aten._grouped_mm",
    "aten.convolution", "aten._convolution", "aten.convolution_overrideable", "aten.cudnn_convolution",
    "aten.cudnn_convolution_transpose", "aten._slow_conv2d_forward",
    "aten._scaled_dot_product_flash_attention", "aten._scaled_dot_product_efficient_attention",
    "aten._scaled_dot_product_cudnn_attention", "aten._flash_attention_forward",
    "aten._efficient_attention_forward",
    "aten._softmax", "aten._log_softmax", "aten.native_layer_norm", "aten._fused_rms_norm",
    "aten.native_group_norm", "aten.native_batch_norm", "aten._native_batch_norm_legit",
    "aten._embedding_bag", "aten._embedding_bag_forward_only",
))

LIBRARY_CALL = ("computed with the library's kernels through torch ({ops}): a Triton candidate may "
                "allocate, copy and view tensors with torch, not compute its result with them")


_LIBRARY_MODE: list = []  # the dispatch mode's class, made once (library_mode)


def library_mode() -> type:
    """The torch dispatch mode that adds to its counter's `library` every LIBRARY_OPS operator run
    inside it. Why a dispatch mode: it sees each aten operator as it runs, whichever torch function
    or composite (torch.matmul, F.linear, einsum) called it, on any device and under capture. Made
    once, where torch is imported (this module is not: the judge's framing imports it), and by the
    evaluator before its seal is taken, which then holds its __torch_dispatch__; a mode is ~6 us
    to enter and leave, a class made per watch cost ~160 us (seen on an H200: 12% longer timing
    loops when each watched call made its own)."""
    if not _LIBRARY_MODE:
        from torch.utils._python_dispatch import TorchDispatchMode

        class LibraryCalls(TorchDispatchMode):
            def __init__(self, counter: LaunchCount):
                super().__init__()
                self.counter = counter

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = str(getattr(func, "overloadpacket", func))
                if name in LIBRARY_OPS:
                    self.counter.library.add(name)
                return func(*args, **(kwargs or {}))

        _LIBRARY_MODE.append(LibraryCalls)
    return _LIBRARY_MODE[0]
