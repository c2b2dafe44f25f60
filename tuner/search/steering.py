"""Feedback from the counters into the search: rules that turn a profiled candidate's bottleneck
label into the next configs to try (experiment `profile.steer`, off by default).

A stated rule set, not a learned model: for each label, moves on the parameters a kernel's space
has, each move one step along the parameter's own ordered values (a Pow2 doubles or halves, an
IntRange adds or takes one, a Choice moves to its next or previous option), or a fixed value.
From the best config so far, each applicable move alone, then all of them together, gives a
proposal; proposals that break a constraint or were evaluated already are dropped. The search
(tuner.search.constrained.ConstrainedSearch.steer) evaluates them before asking its sampler
again, and tells the sampler their results like any other evaluated point.

Why these moves (the usual readings of each bottleneck for Triton templates):
  latency-bound  more work in flight to hide latency: a deeper software pipeline (num_stages),
                 more warps, more rows per program; smaller tiles where occupancy is the limit
                 (more programs per SM).
  memory-bound   fewer bytes from DRAM, more in flight: a wider GEMM swizzle group (GROUP_M: A
                 and B tiles re-read from L2, not DRAM), a deeper pipeline, more rows per program.
  compute-bound  more work per byte moved through shared memory and registers: bigger output
                 tiles, a deeper K step; more warps to feed the tensor cores.
  launch-bound   fewer kernels and fewer programs: no split-K, a persistent grid, bigger blocks.
"""
from __future__ import annotations

from kernelevolve.tuner.search.space import Const, Space, config_key

UP, DOWN = +1, -1
LOW_OCCUPANCY_PCT = 25.0  # below it, a latency-bound kernel is occupancy-limited: smaller tiles
MAX_PROPOSALS = 4  # configs proposed per profiled candidate

RULES: dict[str, tuple] = {
    "latency-bound": (("num_stages", UP), ("num_warps", UP), ("ROWS", UP)),
    "memory-bound": (("GROUP_M", UP), ("num_stages", UP), ("ROWS", UP), ("IDS_PER_STEP", UP)),
    "compute-bound": (("BLOCK_N", UP), ("BLOCK_M", UP), ("BLOCK_K", UP), ("num_warps", UP)),
    "launch-bound": (("SPLIT_K", DOWN), ("PERSISTENT", True), ("BLOCK", UP), ("ROWS", UP)),
}
# latency-bound with achieved occupancy under LOW_OCCUPANCY_PCT: the tiles, not the pipeline
OCCUPANCY_RULES = (("BLOCK_M", DOWN), ("BLOCK_N", DOWN), ("num_stages", DOWN))


def moves_for(label: str, counters: dict) -> tuple:
    """The moves the rules give a label (and, for latency-bound, its occupancy)."""
    occupancy = counters.get("ncu_occupancy_pct")
    if label == "latency-bound" and occupancy is not None and occupancy < LOW_OCCUPANCY_PCT:
        return OCCUPANCY_RULES
    return RULES.get(label, ())


def apply(space: Space, config: dict, move) -> dict | None:
    """The config with one move applied, or None where the space has no such parameter or the
    parameter's values end in that direction."""
    name, how = move
    domain = next((d for d in space.domains if d.name == name and not isinstance(d, Const)), None)
    if domain is None or name not in config:
        return None
    values = domain.values()
    if how in (UP, DOWN) and not isinstance(how, bool):
        if config[name] not in values:
            return None
        i = values.index(config[name]) + how
        return {**config, name: values[i]} if 0 <= i < len(values) else None
    return {**config, name: how} if how in values and config[name] != how else None


def proposals(label: str, counters: dict, best: dict, space: Space, seen=()) -> list[dict]:
    """Up to MAX_PROPOSALS valid, not yet evaluated configs near `best`, by the label's rules."""
    seen = set(seen) | {config_key(best)}
    singles = [c for c in (apply(space, best, m) for m in moves_for(label, counters)) if c is not None]
    combined = dict(best)
    for c in singles:
        combined.update({k: v for k, v in c.items() if v != best.get(k)})
    out = []
    for cfg in singles + [combined]:
        cfg = space.canonicalize(cfg)
        key = config_key(cfg)
        if key in seen or space.violations(cfg):
            continue
        seen.add(key)
        out.append(cfg)
    return out[:MAX_PROPOSALS]
