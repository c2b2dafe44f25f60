"""Described inputs: a study's input set as meta tensors, for the compile a compile slot runs ahead.

Why: a compile slot (tuner.execution.trial) compiles each candidate before its GPU's lane
verifies and times it. Compiling on device tensors, every slot needed a CUDA context of its own
and its study's input set on the GPU (16 slots a GPU: 16 contexts, up to 16 GB, random inputs
drawn on the GPU the lane was timing), and all of a node's slots made them at once as the sweep
began: on a 4-GPU node the first compiles of 64 slots took 5.7-12.6 s, 1.7-2.3 s on one GPU's 16.
A Triton compile reads only the shapes, strides, dtypes and address alignments of its arguments,
and meta tensors carry exactly those: the same binary, no context, no bytes.

A kernel's make_inputs seeds a torch.Generator on the device it is given, and there is no meta
generator: a CPU one stands in (meta tensors draw nothing from it). A launcher that reads values
(`.item()`, a host-side check of the data) cannot run on meta tensors: that study is compiled on
device tensors instead, as before, and `Described.fallbacks` says why.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from kernelevolve.kernels.spec import described
from kernelevolve.tuner.measure.launch_failures import compile_only, short_error

META = torch.device("meta")


@contextmanager
def _cpu_generators_for_meta():
    """torch.Generator(device=meta) made on the CPU, for the duration of one make_inputs call (the
    compile slot's process runs one request at a time, so nothing else sees the stand-in)."""
    real = torch.Generator

    class Generator(real):  # a class, as torch.Generator is (annotations and isinstance read it)
        def __new__(cls, device=None):
            if device is not None and torch.device(device).type == "meta":
                return real()
            return real() if device is None else real(device=device)

    torch.Generator = Generator
    try:
        yield
    finally:
        torch.Generator = real


def make_described(spec, problem, seed: int = 1) -> tuple:
    """The problem's inputs as meta tensors: shapes, strides, dtypes and offsets as make_inputs
    makes them on a device."""
    with _cpu_generators_for_meta():
        return spec.make_inputs(problem, META, seed)


def shared_limit() -> int | None:
    """The GPU's shared memory per block (the driver API's attribute: no CUDA context), or None."""
    try:
        from triton.runtime.driver import driver

        return int(driver.active.utils.get_device_properties(0)["max_shared_mem"])
    except Exception:  # noqa: BLE001 - no limit known: the lane's launch finds an excess
        return None


def _nvidia_capability(hw) -> tuple[int, int] | None:
    """(major, minor) of an NVIDIA target's profile arch ("sm90" -> (9, 0)), else None."""
    arch = getattr(hw, "arch", "") or ""
    if getattr(hw, "vendor", "") != "nvidia" or not arch.startswith("sm") or not arch[2:].isdigit():
        return None
    return int(arch[2:-1]), int(arch[-1])


@contextmanager
def described_driver(hw):
    """Triton's driver answering a compile from the target's profile, never from the GPU.

    Why: what a compile asks the driver (the current device, its capability for the target, the
    current stream) torch answers by initialising CUDA (cuInit, and at the stream a CUDA context:
    measured, the context appears there), and a node's compile slots all started at once as a
    sweep began: 64 of them took 4.1 s to their first compile on a 4-GPU node, 0.56 s for 16.
    A compile launches nothing: device 0, stream 0, and the capability of the target's arch stand
    in, on the driver object itself (so on any Triton 3.6 to 3.9). For an NVIDIA target the
    driver is made directly (CudaDriver): Triton's own choice of the active driver asks torch
    whether CUDA is available, which initialises it. Other vendors keep their driver; only the
    stream stands in there, as it does wherever `hw` is None (the judge's check kernels, compiled
    for whatever GPU this process has: tuner/measure/check_warmup.py)."""
    from triton.runtime.driver import driver

    capability = _nvidia_capability(hw)
    try:
        if capability is not None and getattr(driver, "_active", True) is None:
            from triton.backends.nvidia.driver import CudaDriver

            driver.set_active(CudaDriver())
        active = driver.active
    except Exception:  # noqa: BLE001 - no GPU driver here: nothing asks it anything
        yield
        return
    stand_ins = {"get_current_stream": lambda *args, **kwargs: 0}
    if capability is not None:
        stand_ins.update(get_current_device=lambda: 0, get_device_capability=lambda *args: capability)
    saved = {name: vars(active)[name] for name in stand_ins if name in vars(active)}
    for name, fn in stand_ins.items():
        setattr(active, name, fn)
    try:
        yield
    finally:
        for name in stand_ins:
            if name in saved:
                setattr(active, name, saved[name])
            else:
                delattr(active, name)


class Described:
    """A compile slot's described input sets, one per study, and the studies compiled on device
    tensors instead (with why)."""

    def __init__(self):
        self.sets: dict[str, tuple] = {}
        self.fallbacks: dict[str, str] = {}  # study -> why its launches need device tensors
        self.limit: int | None = None

    def usable(self, study: str) -> bool:
        return study not in self.fallbacks

    def compile(self, spec, problem, study: str, cfg, hard_errors: tuple, hw=None):
        """Compile `cfg`'s launch on the study's described inputs for the target `hw` (its profile:
        arch, SM count, shared memory; None: this process's GPU is asked); returns the compiled handle.
        `hard_errors` (Triton's compile and out-of-resources errors) are the config's own and are
        raised; any other failure is the launcher's need for device tensors: None is returned,
        and the caller compiles on device tensors."""
        try:
            if study not in self.sets:
                self.sets[study] = make_described(spec, problem)
            inputs = self.sets[study]
            with described(getattr(hw, "sm_count", 0)), compile_only(), described_driver(hw):
                handle = spec.launch(inputs, spec.make_output(problem, inputs), cfg)
        except hard_errors:
            raise
        except Exception as exc:  # noqa: BLE001 - the launcher reads values: device tensors instead
            self.fallbacks[study] = short_error(exc)[:300]
            self.sets.pop(study, None)
            return None
        self._check_shared(handle, getattr(hw, "smem_per_block", 0))
        return handle

    def _check_shared(self, handle, limit: int = 0) -> None:
        """A kernel over the chip's shared memory fails where the binary is loaded (which needs a
        CUDA context): the same check as Triton's loader, on the compiled metadata."""
        shared = getattr(getattr(handle, "metadata", None), "shared", None)
        if not isinstance(shared, int):
            return
        if limit:  # the target profile's opt-in shared memory per block: no driver call
            self.limit = limit
        elif self.limit is None:
            self.limit = shared_limit() or 0
        if self.limit and shared > self.limit:
            from triton.runtime.errors import OutOfResources

            raise OutOfResources(shared, self.limit, "shared memory")
