"""A benchmark run's share of a node's CPUs in whole cores (benchmarks/cpu_share.py)."""
from benchmarks import cpu_share


def test_shares_are_whole_cores_with_their_hyperthreads(monkeypatch):
    # a node of 8 physical cores, logical CPUs i and i + 8 on core i (as Linux numbers them)
    monkeypatch.setattr(cpu_share.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(cpu_share, "_siblings", lambda cpu: (cpu % 8, cpu % 8 + 8))
    assert cpu_share.cores()[0] == [0, 8] and len(cpu_share.cores()) == 8
    assert cpu_share.first(4) == [0, 8, 1, 9]  # two whole cores, not four cores' first threads
    quarters = [cpu_share.share(i, 4) for i in range(4)]
    assert quarters[0] == [0, 8, 1, 9] and quarters[3] == [6, 14, 7, 15]
    assert sorted(c for q in quarters for c in q) == list(range(16))  # each CPU in one share


def test_the_kernels_cpu_lists_are_read_as_written():
    assert cpu_share._parse("0-3,32-35\n") == [0, 1, 2, 3, 32, 33, 34, 35]
    assert cpu_share._parse("5") == [5]
