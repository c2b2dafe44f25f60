"""A run's share of a node's CPUs, in whole physical cores (both hyperthreads of each).

Why: the scaling runs give each GPU 16 of a node's logical CPUs, as a one-GPU machine has. Unpinned,
a run on one GPU of a 4-GPU node could spread its 16 processes over all 64 logical CPUs, one per
physical core, while the run on four GPUs had 64 processes on the cores' hyperthreads: on the 4 x
H200 node (records of `engine_scaling.sh`) a candidate's compile took 0.28 s on average on one GPU
and 0.50 s on four. So the one-GPU baseline likely had more CPU than its share. Pinned to whole cores
(a core's sibling threads together), n GPUs' runs get n times one GPU's CPU, as n machines would.

    python3 benchmarks/cpu_share.py I N     # the logical CPUs of share I (0-based) of N, comma-separated
"""
from __future__ import annotations

import os
import sys


def cores() -> list[list[int]]:
    """The logical CPUs this process may use, grouped by physical core (from the kernel's topology;
    each CPU its own core where the topology cannot be read), cores in order of their first CPU."""
    groups: dict[tuple, list[int]] = {}
    for cpu in sorted(os.sched_getaffinity(0)):
        groups.setdefault(_siblings(cpu), []).append(cpu)
    return sorted(groups.values(), key=lambda g: g[0])


def _siblings(cpu: int) -> tuple:
    try:
        with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as fh:
            return tuple(_parse(fh.read()))
    except (OSError, ValueError):
        return (cpu,)


def _parse(text: str) -> list[int]:
    """A kernel CPU list ("0,32" or "0-1") as its CPUs."""
    out = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def share(index: int, count: int) -> list[int]:
    """The logical CPUs of share `index` of `count` equal shares of whole cores."""
    all_cores = cores()
    per = max(1, len(all_cores) // count)
    return [cpu for core in all_cores[index * per:(index + 1) * per] for cpu in core]


def first(n: int) -> list[int]:
    """At least `n` logical CPUs made of the first whole cores (all of them if there are fewer)."""
    out: list[int] = []
    for core in cores():
        if len(out) >= n:
            break
        out += core
    return out


def pin(n: int) -> list[int]:
    """Pin this process (and every process it starts) to first(n); returns the CPUs."""
    cpus = first(n)
    os.sched_setaffinity(0, cpus)
    return cpus


if __name__ == "__main__":
    print(",".join(str(c) for c in share(int(sys.argv[1]), int(sys.argv[2]))))
