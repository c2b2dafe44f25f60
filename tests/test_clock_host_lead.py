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


class _FakeCuda:
    """torch.cuda's calls host_lead makes, recorded instead of run (no GPU here)."""

    def __init__(self):
        self.sleeps = []

    def install(self, monkeypatch):
        import torch

        from kernelevolve.tuner.measure import host_lead

        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
        monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: self.sleeps.append(cycles), raising=False)
        monkeypatch.setitem(host_lead._cycles_per_s, 0, 1e9)  # calibrated: 1 GHz
        return host_lead


def test_the_probe_times_the_hosts_repetitions_behind_a_wait(monkeypatch):
    cuda = _FakeCuda()
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
    host_lead = _FakeCuda().install(monkeypatch)
    monkeypatch.setattr(host_lead, "HOST_PROBE_WAIT_S", 1e-4)
    assert host_lead.host_probe(lambda *ev: time.sleep(1e-3), [(0, 0)]) is None


def test_do_bench_hook_enqueues_the_lead_once_and_runs_before_every_time(monkeypatch):
    from kernelevolve.tuner.measure.clocks import _BeforeEachTimedCall

    cuda = _FakeCuda()
    cuda.install(monkeypatch)
    calls = []
    hook = _BeforeEachTimedCall(lambda: calls.append("before"), lead_s=0.25)
    for _ in range(3):
        hook.grad = None  # what do_bench does to each grad_to_none entry ahead of a timed call
    assert calls == ["before"] * 3 and cuda.sleeps == [int(0.25 * 1e9)]
    quiet = _BeforeEachTimedCall(None)
    quiet.grad = None
    assert cuda.sleeps == [int(0.25 * 1e9)] and quiet.grad is None
