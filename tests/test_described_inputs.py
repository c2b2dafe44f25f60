"""A compile slot compiles on described inputs (meta tensors: tuner/measure/described.py), and what
it compiles is what the GPU lane then launches: every built-in kernel's inputs are described with
the shapes, strides, dtypes and offsets its make_inputs gives on a device, and a launch on them
hands Triton the same arguments (the same specialization, so the same cache key) as a launch on
real tensors. No GPU is needed: a child process without TRITON_INTERPRET captures the launches
(as tests/test_gemm_sm90_compile.py does), real tensors on the CPU standing in for the device's.
"""
import json
import os
import sys

import pytest
from uninterpreted import run_child
import torch

from kernelevolve.kernels.spec import check_device, described
from kernelevolve.tuner.experiment import hardware, registry
from kernelevolve.tuner.measure.described import Described, make_described

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64  # every required size field of a kernel's problem: small enough for CPU inputs
# inputs from this position on are read by the eager peer only, never by a launch: aten's forward
# by-products of the embedding-bag backward (aten's meta kernel sizes them otherwise)
PEER_ONLY = {"embedding_bag_bwd": 5}


def small_problem(spec, size=SIZE):
    return spec.problem(**{k: (size if f.is_required() else f.default) for k, f in spec.problem.model_fields.items()})


def _shape_of(x):
    """What a launch can read of an input without its values."""
    if isinstance(x, torch.Tensor):
        return ("tensor", str(x.dtype), tuple(x.shape), tuple(x.stride()), x.storage_offset())
    if isinstance(x, (list, tuple)):
        return tuple(_shape_of(v) for v in x)
    return ("value", repr(x))


def test_meta_tensors_are_accepted_only_while_described():
    t = torch.empty(4, device="meta")
    with pytest.raises(ValueError, match="CUDA device"):
        check_device("op", t)
    with described():
        check_device("op", t)  # no raise
    with pytest.raises(ValueError, match="CUDA device"):
        check_device("op", t)


@pytest.mark.parametrize("name", sorted(registry.BUILTIN))
def test_described_inputs_are_the_device_inputs_without_their_values(name):
    spec = registry.load(registry.BUILTIN[name]).kernel
    try:
        problem = small_problem(spec)
    except Exception:  # noqa: BLE001 - a problem that needs more than sizes
        pytest.skip(f"{name}: no problem from sizes of {SIZE}")
    real = spec.make_inputs(problem, torch.device("cpu"), 1)
    meta = make_described(spec, problem)
    launched = PEER_ONLY.get(name, len(real))
    assert _shape_of(meta[:launched]) == _shape_of(real[:launched])
    assert all(t.device.type == "meta" for t in meta if isinstance(t, torch.Tensor))
    # the stand-in generator is gone afterwards: a real one is a real one again
    assert isinstance(torch.Generator(), torch._C.Generator)


class _Handle:
    def __init__(self, shared):
        self.metadata = type("M", (), {"shared": shared})()


class _Spec:
    """A spec whose launch reads its input's device, or its values."""

    def __init__(self, reads_values=False, shared=1024, error=None):
        self.reads_values, self.shared, self.error = reads_values, shared, error

    def make_inputs(self, problem, device, seed):
        gen = torch.Generator(device=device).manual_seed(seed)
        return (torch.randn(8, generator=gen, device=device),)

    def make_output(self, problem, inputs):
        return torch.empty_like(inputs[0])

    def launch(self, inputs, out, cfg):
        if self.error is not None:
            raise self.error
        if self.reads_values:
            float(inputs[0].sum())  # a host-side read: impossible on meta tensors
        assert inputs[0].device.type == "meta" and out.device.type == "meta"
        return _Handle(self.shared)


class CompileFailed(Exception):
    pass


def test_a_launcher_that_reads_values_is_compiled_on_device_tensors_instead():
    d = Described()
    assert d.compile(_Spec(), None, "s1", {}, (CompileFailed,)).metadata.shared == 1024
    assert d.usable("s1")
    assert d.compile(_Spec(reads_values=True), None, "s2", {}, (CompileFailed,)) is None
    assert not d.usable("s2") and d.fallbacks["s2"]  # why, recorded
    assert d.usable("s1")  # one study's launcher does not decide another's


def test_a_config_s_own_compile_error_is_its_result_not_a_fallback():
    d = Described()
    with pytest.raises(CompileFailed):
        d.compile(_Spec(error=CompileFailed("bad tile")), None, "s", {}, (CompileFailed,))
    assert d.usable("s")


def test_a_kernel_over_the_chip_s_shared_memory_is_out_of_resources_before_any_load():
    from triton.runtime.errors import OutOfResources

    d = Described()
    d.limit = 232448  # an H100's shared memory per block
    assert d.compile(_Spec(shared=200_000), None, "s", {}, (CompileFailed,)) is not None
    with pytest.raises(OutOfResources):
        d.compile(_Spec(shared=300_000), None, "s", {}, (CompileFailed,))


def test_the_target_profile_s_shared_memory_decides_without_asking_the_gpu(monkeypatch):
    from triton.runtime.errors import OutOfResources

    from kernelevolve.tuner.measure import described as described_mod

    monkeypatch.setattr(described_mod, "shared_limit", lambda: pytest.fail("the driver was asked"))
    h100 = hardware.profile("h100")
    d = Described()
    assert d.compile(_Spec(shared=200_000), None, "s", {}, (CompileFailed,), h100) is not None
    with pytest.raises(OutOfResources):
        d.compile(_Spec(shared=h100.smem_per_block + 1), None, "s", {}, (CompileFailed,), h100)


def test_a_described_persistent_launch_counts_the_target_s_sms():
    from kernelevolve.kernels.gemm_tiles import INTERPRETER_PROGRAM_SLOTS, program_slots

    meta = torch.device("meta")
    with described(sm_count=132):
        assert program_slots(meta) == 132
    with described():  # no count given, no GPU here: the interpreter's
        assert program_slots(meta) == INTERPRETER_PROGRAM_SLOTS


class _FakeDriver:
    """Stands in for Triton's active CUDA driver: torch's functions as instance attributes, as
    triton's GPUDriver sets them, each failing as torch would only by initialising CUDA."""

    def __init__(self):
        def cuda_init(*args):
            raise AssertionError("CUDA was initialised")
        self.get_current_stream = self.get_current_device = self.get_device_capability = cuda_init

    def get_current_target(self):  # CudaDriver's own, on the attributes above
        major, minor = self.get_device_capability(self.get_current_device())
        return ("cuda", major * 10 + minor, 32)


def test_a_compile_asks_the_profile_not_the_gpu_and_the_driver_is_restored(monkeypatch):
    from triton.runtime.driver import driver

    from kernelevolve.tuner.measure.described import described_driver

    fake = _FakeDriver()
    monkeypatch.setattr(driver, "_active", fake)
    real = dict(vars(fake))
    with described_driver(hardware.profile("h100")):
        assert fake.get_current_target() == ("cuda", 90, 32)
        assert fake.get_current_stream(0) == 0
    assert vars(fake) == real  # torch's functions back for a launch that runs
    with described_driver(hardware.profile("mi300x")):  # not an NVIDIA arch: only the stream
        assert fake.get_current_stream(0) == 0
        with pytest.raises(AssertionError, match="initialised"):
            fake.get_current_target()
    with described_driver(None):  # the judge's check kernels: this process's GPU, stream 0
        assert fake.get_current_stream(0) == 0
    assert vars(fake) == real


def test_an_evaluation_process_describes_its_device_only_when_asked(monkeypatch):
    """A compile slot that compiles on described inputs never needs its device: made at start,
    its description would initialise CUDA in every slot of a node at once."""
    from kernelevolve.tuner.experiment import hardware as hw_mod
    from kernelevolve.tuner.measure.compile_ahead import compile_request
    from kernelevolve.tuner.measure.evaluate import Evaluator

    calls = []
    monkeypatch.setattr(hw_mod, "detect_device", lambda: calls.append(1) or {
        "node": "n", "torch": "t", "triton": "tr", "gpu_name": "none (CPU)", "gpu_uuid": "cpu", "gpu_index": -1})
    ev = Evaluator()
    assert calls == [] and "info" not in vars(ev) and "device" not in vars(ev)
    req = {"kernel_ref": registry.BUILTIN["softmax"], "problem": {"rows": 8, "cols": 64, "dtype": "float32"},
           "hardware": "cpu-interpreter", "config": {"ONLINE": False, "BLOCK": 64, "ROWS": 1, "num_warps": 4, "num_stages": 1}}
    assert compile_request(ev, req)["status"] == "ok" and calls == []
    bad = compile_request(ev, dict(req, config={"ONLINE": False, "BLOCK": 48, "ROWS": 1, "num_warps": 4, "num_stages": 1}))  # a failure's record
    assert bad["status"] == "invalid" and bad["gpu_name"] == "none (CPU)" and calls == [1]
    assert ev.inputs.budget > 0 and ev.info["gpu_uuid"] == "cpu" and calls == [1]  # described once


# -- the launches themselves, captured in a child process without the interpreter ----------------
def _child() -> None:
    from unittest import mock

    from triton.runtime.jit import JITFunction

    from kernelevolve.tuner.measure.launch_failures import compile_only

    def launches(spec, problem, inputs, cfg, describe):
        calls = []

        def capture(self, *args, grid, warmup, **kwargs):
            calls.append([self.fn.__name__, [_shape_of(a) if not isinstance(a, torch.Tensor) else
                                             (str(a.dtype), a.data_ptr() % 16 == 0) for a in args],
                          sorted((k, repr(v)) for k, v in kwargs.items())])
        with mock.patch.object(JITFunction, "run", capture):
            if describe:
                with described(), compile_only():
                    spec.launch(inputs, spec.make_output(problem, inputs), cfg)
            else:
                spec.launch(inputs, spec.make_output(problem, inputs), cfg)
        return calls

    results = {}
    for name in sorted(registry.BUILTIN):
        tunable = registry.load(registry.BUILTIN[name])
        spec = tunable.kernel
        try:
            for size in (SIZE, 1024):  # a backward norm's space has no config at 64 columns
                problem = small_problem(spec, size)
                configs = tunable.space(problem, hardware.profile("h100")).valid_configs()[:3]
                if configs:
                    break
        except Exception as exc:  # noqa: BLE001 - reported, the parent skips it
            results[name] = {"skip": f"{type(exc).__name__}: {exc}"[:200]}
            continue
        out = {"described": [], "device": []}
        for cfg in configs:
            try:
                out["described"].append(launches(spec, problem, make_described(spec, problem), cfg, True))
            except Exception as exc:  # noqa: BLE001 - the compile slot falls back: reported
                out["described"].append(f"{type(exc).__name__}: {exc}"[:300])
            try:
                out["device"].append(launches(spec, problem, spec.make_inputs(problem, torch.device("cpu"), 1),
                                              cfg, False))
            except Exception as exc:  # noqa: BLE001 - a launcher that wants a CUDA device
                out["device"].append(f"{type(exc).__name__}: {exc}"[:300])
        results[name] = out
    print(json.dumps(results))


@pytest.fixture(scope="module")
def captured():
    return run_child(__file__, "--child")


@pytest.mark.parametrize("name", sorted(registry.BUILTIN))
def test_a_described_launch_hands_triton_what_a_device_launch_does(captured, name):
    r = captured[name]
    if "skip" in r:
        pytest.skip(r["skip"])
    assert r["described"], "no config to launch"
    for described_calls, device_calls in zip(r["described"], r["device"]):
        assert not isinstance(described_calls, str), f"a launch on described inputs failed: {described_calls}"
        if isinstance(device_calls, str):  # this launcher takes only CUDA tensors: nothing to compare here
            continue
        assert described_calls == device_calls


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child()
