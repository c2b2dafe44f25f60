"""Each study's seeded input sets and their float64 references, cached in the evaluation process.

Why cached: the references are computed once per set, not once per candidate (a float64 GEMM
reference of 8192^3 costs ~20 ms on an H100: as much as timing the candidate). No kernel is ever
handed these tensors (it gets guarded copies, tuner/measure/guards.py), and the judge fingerprints
each set and reference as made and audits them after every request (tuner/measure/judge.py), so a
cached reference holds for every candidate after the one that made it.
"""
from __future__ import annotations

from collections import OrderedDict

# Seeded input sets per study; a candidate is verified on two of them and timed on a third, all
# chosen by its seed.
INPUT_SETS = 4


class InputSets:
    """Each study's input sets and references, least recently used dropped past `budget` bytes."""

    def __init__(self, budget_bytes):
        """`budget_bytes`: the bytes, or a function that gives them when first asked (a GPU's
        memory is read only where a set is made: a compile slot makes none)."""
        self._budget = budget_bytes
        self.entries: OrderedDict = OrderedDict()  # (study key, index) -> [inputs, ref, bytes]
        self.generation: dict = {}  # (study key, index) -> which making of it (the judge's key)
        self._made = 0
        self.evicted: list = []  # (study key, index, generation) dropped since take_evicted()

    @property
    def budget(self) -> int:
        if callable(self._budget):
            self._budget = int(self._budget())
        return self._budget

    @staticmethod
    def _nbytes(obj) -> int:
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, (tuple, list)):
            return sum(InputSets._nbytes(o) for o in obj)
        if isinstance(obj, dict):
            return sum(InputSets._nbytes(o) for o in obj.values())
        return 0

    def get(self, key, make_inputs, make_ref=None):
        entry = self.entries.get(key)
        if entry is None:
            inputs = make_inputs()
            entry = self.entries[key] = [inputs, None, self._nbytes(inputs)]
            self._made += 1
            self.generation[key] = self._made
        self.entries.move_to_end(key)
        if make_ref is not None and entry[1] is None:
            entry[1] = make_ref(entry[0])
            entry[2] += self._nbytes(entry[1])
        evicted = False
        while len(self.entries) > 1 and sum(e[2] for e in self.entries.values()) > self.budget:
            self._drop(next(iter(self.entries)))
            evicted = True
        if evicted:
            import torch

            if torch.cuda.is_available():
                # hand the memory back: torch's allocator otherwise keeps it for this process,
                # and 16 compiling processes per GPU each keeping every study's inputs (2 GB
                # embedding tables) ran the GPU out of memory
                torch.cuda.empty_cache()
        return entry[0], entry[1]

    def nbytes(self, key) -> int:
        """A cached set's bytes, with its reference (0 if not cached)."""
        entry = self.entries.get(key)
        return entry[2] if entry is not None else 0

    def room(self) -> int:
        """Bytes the cache takes before it drops a set."""
        return self.budget - sum(e[2] for e in self.entries.values())

    def _drop(self, key) -> None:
        self.entries.pop(key)
        self.evicted.append((*key, self.generation.get(key, 0)))

    def clear(self) -> None:
        """Every set dropped (after running out of device memory)."""
        for key in list(self.entries):
            self._drop(key)

    def take_evicted(self) -> list:
        """The sets dropped since the last call (the judge is told to let go of them)."""
        out, self.evicted = self.evicted, []
        return out
