"""The clean clock times the GPU's work, not the host's: a call whose launch costs the host more
than the repetition's read passes run on the GPU starts behind a GPU wait (clocks.lead_s), so the
events never time the GPU waiting for Python."""
import time

import pytest

from kernelevolve.tuner.measure.clocks import LEAD_MARGIN_S, MAX_LEAD_S, lead_s


def test_no_wait_where_the_host_keeps_up():
    # four 85 us read passes a repetition against a 60 us launch: the GPU is never starved
    assert lead_s(host_rep_s=100e-6, gpu_rep_s=340e-6, reps=1000) == 0.0
    assert lead_s(host_rep_s=340e-6, gpu_rep_s=340e-6, reps=1000) == 0.0


def test_the_wait_covers_the_hosts_deficit_over_every_repetition():
    # a staged GEMM's launch: 450 us of host a repetition against 340 us of read passes, 500 reps
    assert lead_s(host_rep_s=450e-6, gpu_rep_s=340e-6, reps=500) == pytest.approx(500 * 110e-6 + LEAD_MARGIN_S)


def test_the_wait_is_bounded():
    assert lead_s(host_rep_s=0.1, gpu_rep_s=340e-6, reps=1000) == MAX_LEAD_S


@pytest.mark.gpu
def test_a_host_heavy_call_is_timed_at_its_gpu_time():
    """A call that spends 400 us of Python before launching a few-microsecond kernel: timed by the
    clean clock at about the kernel's time (without the lead: about the host's 400 us)."""
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

    p20, p50, p80 = measure(light, "clean", 5, 30)
    h20, h50, h80 = measure(heavy, "clean", 5, 30)
    assert p50 < 0.1  # a 4 MB elementwise pass: tens of microseconds at most
    assert h50 < p50 + 0.05 and h80 < p80 + 0.1, ((p20, p50, p80), (h20, h50, h80))
