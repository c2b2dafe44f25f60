"""The event clocks (`clean`, `do_bench`) time the GPU's work, not the host's: where a call's launch
costs the host more than a repetition runs on the GPU, the timed loop starts behind a GPU wait
(tuner/measure/host_lead.py lead_s), so the events never time the GPU waiting for Python."""
import time

import pytest

from kernelevolve.tuner.measure.host_lead import LEAD_MARGIN_S, LEAD_SAFETY, MAX_LEAD_S, lead_s


def test_no_wait_where_the_host_keeps_up():
    # four 85 us read passes a repetition against a 60 us launch: the GPU is never starved
    assert lead_s(host_rep_s=100e-6, gpu_rep_s=340e-6, reps=1000) == 0.0
    assert lead_s(host_rep_s=340e-6, gpu_rep_s=340e-6, reps=1000) == 0.0


def test_the_wait_covers_the_hosts_deficit_over_every_repetition():
    # a staged GEMM's launch: 450 us of host a repetition against 340 us of read passes, 500 reps
    assert lead_s(host_rep_s=450e-6, gpu_rep_s=340e-6, reps=500) == pytest.approx(LEAD_SAFETY * 500 * 110e-6 + LEAD_MARGIN_S)


def test_the_wait_is_bounded():
    assert lead_s(host_rep_s=0.1, gpu_rep_s=340e-6, reps=1000) == MAX_LEAD_S


@pytest.mark.gpu
@pytest.mark.parametrize("clock", ["clean", "do_bench"])
def test_a_host_heavy_call_is_timed_at_its_gpu_time(clock):
    """A call that spends 400 us of Python before launching a few-microsecond kernel: timed by
    either event clock at about the kernel's time (without the lead: about the host's 400 us)."""
    import torch

    from kernelevolve.tuner.measure.clocks import measure

    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    x = torch.randn(1 << 20, device="cuda")
    y = torch.empty_like(x)

    def light():
        torch.mul(x, 2.0, out=y)

    def heavy():
        end = time.perf_counter() + 400e-6
        while time.perf_counter() < end:  # the host's cost of a staged launch, spent in Python
            pass
        torch.mul(x, 2.0, out=y)

    p20, p50, p80 = measure(light, clock, 5, 30)
    h20, h50, h80 = measure(heavy, clock, 5, 30)
    assert p50 < 0.1  # a 4 MB elementwise pass: tens of microseconds at most
    assert h50 < p50 + 0.05 and h80 < p80 + 0.1, ((p20, p50, p80), (h20, h50, h80))


class _FakeGpu:
    """A GPU timeline in milliseconds (no GPU here), for host_lead and Triton's real do_bench loop:
    events read it, the L2 zeroing, the calls and torch.cuda._sleep advance it (the host's time is
    not on it)."""

    def __init__(self):
        self.now_ms, self.sleeps, self.log = 0.0, [], []
        gpu = self

        class Event:
            def __init__(self, enable_timing=True):
                self.t = None

            def record(self):
                self.t = gpu.now_ms

            def elapsed_time(self, other):
                return other.t - self.t

        self.Event = Event

    # triton's driver and device interface
    def get_device_interface(self):
        return self

    def synchronize(self):
        pass

    def get_empty_cache_for_benchmark(self):
        return "cache"

    def clear_cache(self, cache):
        self.now_ms += 0.08
        self.log.append("zero")

    def sleep(self, cycles):
        self.sleeps.append(cycles)
        self.log.append("wait")
        self.now_ms += cycles / 1e6  # at 1 GHz

    def install(self, monkeypatch):
        """torch.cuda's calls and Triton's driver replaced by this timeline; returns host_lead."""
        import torch
        import triton

        from kernelevolve.tuner.measure import host_lead

        monkeypatch.setattr(triton.runtime.driver, "_active", self)
        monkeypatch.setattr(torch.cuda, "Event", self.Event)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "_sleep", self.sleep, raising=False)
        monkeypatch.setitem(host_lead._cycles_per_s, 0, 1e9)  # calibrated: 1 GHz
        monkeypatch.setattr(host_lead, "_pass_s", {})
        return host_lead


def test_the_probe_times_the_hosts_repetitions_behind_a_wait(monkeypatch):
    cuda = _FakeGpu()
    host_lead = cuda.install(monkeypatch)
    made = []

    def rep(*ev):
        made.append(ev)
        end = time.perf_counter() + 1e-3
        while time.perf_counter() < end:
            pass

    host_s = host_lead.host_probe(rep, [(1, 2), (3, 4), (5, 6)])
    assert made == [(1, 2), (3, 4), (5, 6)]  # each repetition given its own events
    assert 1e-3 <= host_s < host_lead.HOST_PROBE_WAIT_S
    assert cuda.sleeps == [int(host_lead.HOST_PROBE_WAIT_S * 1e9)]  # enqueued before them


def test_a_repetition_that_outlasts_the_wait_gets_no_lead(monkeypatch):
    """A launcher that waits on the GPU itself drains the queue every repetition: no lead helps."""
    host_lead = _FakeGpu().install(monkeypatch)
    monkeypatch.setattr(host_lead, "HOST_PROBE_WAIT_S", 1e-4)
    assert host_lead.host_probe(lambda *ev: time.sleep(1e-3), [(0, 0)]) is None


def test_do_bench_hook_enqueues_the_lead_once_and_runs_before_every_time(monkeypatch):
    from kernelevolve.tuner.measure.clocks import _BeforeEachTimedCall

    cuda = _FakeGpu()
    cuda.install(monkeypatch)
    calls = []
    hook = _BeforeEachTimedCall(lambda: calls.append("before"), lead_s=0.25)
    for _ in range(3):
        hook.grad = None  # what do_bench does to each grad_to_none entry ahead of a timed call
    assert calls == ["before"] * 3 and cuda.sleeps == [int(0.25 * 1e9)]
    quiet = _BeforeEachTimedCall(None)
    quiet.grad = None
    assert cuda.sleeps == [int(0.25 * 1e9)] and quiet.grad is None


def test_do_bench_runs_triton_s_own_loop_behind_the_lead(monkeypatch):
    """time_gpu through Triton's real do_bench, on a stand-in driver and GPU timeline: a call
    costly on the host gets one GPU wait, enqueued ahead of the first timed call's L2 zeroing,
    and `before` runs ahead of every timed call; the times are the calls' own."""
    from kernelevolve.tuner.measure import clocks

    gpu = _FakeGpu()
    host_lead = gpu.install(monkeypatch)
    befores = []

    def heavy():  # 0.5 ms of host, 0.01 ms of GPU
        end = time.perf_counter() + 5e-4
        while time.perf_counter() < end:
            pass
        gpu.now_ms += 0.01
        gpu.log.append("call")

    p20, p50, p80 = clocks.time_gpu(heavy, warmup_ms=1, rep_ms=5, before=lambda: befores.append(gpu.log.count("call")))
    assert p20 == p50 == p80 == pytest.approx(0.01)
    assert len(gpu.sleeps) == 2  # the probe's wait, then the loop's lead
    lead_at = [i for i, e in enumerate(gpu.log) if e == "wait"][1]
    assert gpu.log[lead_at + 1] == "zero"  # the lead sits right ahead of the first timed call's zeroing
    assert gpu.sleeps[1] > 0.5e-3 * 1e9  # at least one repetition's deficit
    timed_calls = gpu.log[lead_at:].count("call")
    assert len(befores) == host_lead.HOST_PROBE_REPS + timed_calls  # the probe's calls and each timed one
