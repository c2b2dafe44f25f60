"""How a candidate's launch fails, as the evaluation process classifies it: Triton's exception
types by status (out_of_resources, compile_error; their module paths moved across Triton
versions), compiling without running (the compile slots), and the short form of an error that a
record carries."""
from __future__ import annotations

from contextlib import contextmanager


def error_classes():
    """Triton's exception types by failure status (their module paths moved across versions)."""
    import importlib

    found = {"oor": [], "compile": []}
    for mod, name, bucket in (("triton.runtime.errors", "OutOfResources", "oor"),
                              ("triton.runtime.autotuner", "OutOfResources", "oor"),
                              ("triton.compiler.errors", "CompilationError", "compile"),
                              ("triton.runtime.errors", "PTXASError", "compile"),
                              ("triton.compiler.errors", "CompileTimeAssertionFailure", "compile"),
                              # the interpreter reports kernel-code errors (what the compiler
                              # would reject) when it runs the kernel
                              ("triton.runtime.interpreter", "InterpreterError", "compile")):
        try:
            found[bucket].append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found["oor"]), tuple(found["compile"])


@contextmanager
def compile_only(compiled: list | None = None):
    """Every Triton launch inside compiles (or finds the binary in the cache) without running:
    JITFunction.run's own warm-up mode, on triton 3.6 to 3.9. Torch work in a launcher (a staging
    copy, an index check) still runs. Why: the compile slots compile ahead of the GPU lane and must
    not put work on the GPU the lane is timing. `compiled`: each compiled kernel is added to it."""
    from triton.runtime.jit import JITFunction

    original = JITFunction.run

    def warm(self, *args, grid, warmup, **kwargs):
        kernel = original(self, *args, grid=grid, warmup=True, **kwargs)
        if compiled is not None:
            compiled.append(kernel)
        return kernel

    JITFunction.run = warm
    try:
        yield
    finally:
        JITFunction.run = original


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 4000 else text[:4000] + " ..."
