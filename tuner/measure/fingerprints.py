"""Secret fingerprints of the evaluator's cached input sets and references, kept by the judge.

Why: the evaluator caches each study's input sets and float64 references across candidates
(tuner/measure/input_sets.py), and a candidate runs in that process: one that writes into the cache
would fail or pass the candidates after it. The judge (tuner/measure/judge.py) fingerprints each set
when the evaluator makes it, before any candidate launches with it, and compares after every request
that used it. A fingerprint is a projection of a tensor's values on pseudo-random weights at
pseudo-random positions, both seeded by a secret that never leaves the judge's process: no one
without the secret can change a tensor and keep its fingerprint.
"""
from __future__ import annotations

import secrets

import torch

SAMPLED = 1 << 16  # positions of an input tensor fingerprinted
REF_SAMPLED = 1 << 22  # ... of a reference (all of them up to this many)


class Fingerprints:
    def __init__(self):
        self.secret = secrets.randbits(62)  # the weights' and positions' seed: never leaves this process
        self.taken: dict = {}  # (study, set, generation, part) -> the fingerprint first taken
        self._drawn: dict = {}  # the secret positions and weights, per size

    # -- taking them ---------------------------------------------------------------------------
    def of(self, t: torch.Tensor, sampled: bool = False) -> torch.Tensor:
        """t's fingerprint. `sampled`: at SAMPLED positions (input sets can be GBs, checked after
        every candidate: a stray write changes a region, which a sample of 65536 positions finds
        unless it covers under ~1e-4 of the tensor); otherwise (references) every element of a
        tensor up to REF_SAMPLED elements, and REF_SAMPLED positions of a larger one (a change
        covering a millionth of it is found with probability 98%, more with certainty in
        practice). The positions and weights are drawn once per size and kept: an audit then
        costs one gather and one dot product per tensor. A 0-d float64 tensor on t's device:
        `read` brings a request's fingerprints back in one transfer."""
        part = torch.nan_to_num(self._sample(t, sampled).to(torch.float64), nan=1.5, posinf=2.5, neginf=-2.5)
        return torch.dot(part, self._weights(part.numel(), t.device))

    def _sample(self, t: torch.Tensor, sampled: bool) -> torch.Tensor:
        flat = t.detach().reshape(-1)
        n, m = flat.numel(), SAMPLED if sampled else REF_SAMPLED
        return flat[self._positions(n, m, t.device)] if n > m else flat

    def _positions(self, n: int, m: int, device) -> torch.Tensor:
        key = ("positions", n, m, str(device))
        if key not in self._drawn:
            g = torch.Generator(device=device).manual_seed((self.secret ^ n ^ 0x5A5A) % (1 << 63))
            self._drawn[key] = torch.randint(n, (m,), generator=g, device=device)
        return self._drawn[key]

    def _weights(self, n: int, device) -> torch.Tensor:
        key = ("weights", n, str(device))
        if key not in self._drawn:
            g = torch.Generator(device=device).manual_seed((self.secret + n) % (1 << 63))
            self._drawn[key] = torch.rand(n, dtype=torch.float64, device=device, generator=g)
        return self._drawn[key]

    def parts(self, key: tuple, ref, inputs) -> dict:
        """{(*key, part): fingerprint tensor} of a set's inputs ("in<i>") and reference ("ref")."""
        found = {f"in{i}": self.of(t, sampled=True) for i, t in enumerate(inputs or [])}
        if ref is not None:
            found["ref"] = self.of(ref)
        return {(*key, part): fp for part, fp in found.items()}

    def of_set(self, key: tuple, ref, inputs) -> dict:
        """{(*key, "set", has ref): one fingerprint of a whole set}: the positions `parts` reads,
        of all its tensors in one concatenation, projected once. Why: the audit after every
        candidate reads each set it used, and a set's 3-5 tensors cost ~2 operations each this
        way instead of ~5 (each ~10-20 us of the judge's host time on an H100). {} for a set of
        no tensor."""
        tensors = [(t, True) for t in inputs or []] + ([(ref, False)] if ref is not None else [])
        if not tensors:
            return {}
        device = tensors[0][0].device
        values = torch.cat([self._sample(t, sampled).to(device=device, dtype=torch.float64)
                            for t, sampled in tensors])
        values = torch.nan_to_num(values, nan=1.5, posinf=2.5, neginf=-2.5)
        return {(*key, "set", ref is not None): torch.dot(values, self._weights(values.numel(), device))}

    @staticmethod
    def read(prints: dict) -> dict:
        """The fingerprints' values, one transfer per device (a read back each cost ~0.1 ms)."""
        from kernelevolve.tuner.measure.readback import read_parts

        return {k: v[0] for k, v in zip(prints, read_parts(list(prints.values())))}

    def hash_keys(self, device) -> torch.Tensor:
        """The word hash's secret odd multipliers (check_kernel.word_hash), drawn once per device."""
        from kernelevolve.tuner.measure.check_kernel import HASH_KEYS

        key = ("hash_keys", str(device))
        if key not in self._drawn:
            g = torch.Generator(device=device).manual_seed((self.secret ^ 0x3C3C3C) % (1 << 63))
            keys = torch.randint(-(1 << 62), 1 << 62, (HASH_KEYS,), generator=g, device=device, dtype=torch.int64)
            self._drawn[key] = keys | 1
        return self._drawn[key]

    def word_hash(self, words: torch.Tensor) -> torch.Tensor:
        """A keyed hash of every word of a flat integer tensor (0-d int64 on its device)."""
        from kernelevolve.tuner.measure.check_kernel import word_hash

        return word_hash(words, self.hash_keys(words.device))

    # -- comparing them ------------------------------------------------------------------------
    def remember(self, values: dict) -> None:
        """Fingerprints read at registration: the first taken of each is the one compared with."""
        for k, fp in values.items():
            self.taken.setdefault(k, fp)

    def same(self, k: tuple, fp: float) -> bool:
        """Whether a fingerprint read now equals the first taken (remembered now if it is the first)."""
        return self.taken.setdefault(k, fp) == fp

    def changed_part(self, key: tuple, ref, inputs) -> str:
        """Which part of a set whose fingerprint changed: 'reference', 'input #i', or 'data'."""
        for k, fp in self.read(self.parts(key, ref, inputs)).items():
            if k in self.taken and fp != self.taken[k]:
                return "reference" if k[-1] == "ref" else f"input #{k[-1][2:]}"
        return "data"
