"""One device allocation that a request's guarded buffers are carved from, held open by the judge.

Why: the judge reads the evaluator's buffers where they are, over CUDA IPC (tuner/measure/evidence.py).
Sent as torch shares CUDA tensors, every allocation named in a message costs an IPC handle opened
by the judge (~0.3 ms on an H100), its reference counting and its release: about a third of
verification's cost per candidate, measured. Every buffer verification makes for a request (the
inputs' guarded and pristine copies, the poisoned outputs of verified and timed calls) is instead
carved from this one allocation; the judge opens it once and keeps the view, and a buffer travels
as (generation, byte offset, dtype, shape, strides) into it.

A request takes buffers from the start (`reset`, then `take`); what does not fit is allocated as
before (and shared the old way), and the next request gets an arena that fits. A candidate that
writes into the arena outside its buffers writes into other buffers of its own evidence (caught:
guard zones, canary bands, pristine copies) or into free space, which the next request overwrites
before use.
"""
from __future__ import annotations

import torch

ALIGN = 512  # bytes: every buffer starts on a boundary that TMA (16 B) and vector loads (128 B) accept
GROWTH = 1.25  # a new arena is this much larger than the request that did not fit


class Arena:
    def __init__(self, device: torch.device):
        self.device = device
        self.buf: torch.Tensor | None = None  # uint8, the whole arena
        self.generation = 0  # which arena the judge holds (a new one each time it grows)
        self.top = 0  # bytes taken by this request
        self.want = 0  # bytes the largest request so far needed

    @property
    def size(self) -> int:
        return 0 if self.buf is None else self.buf.numel()

    def reset(self) -> bool:
        """A new request: its buffers are taken from the start again. True if a new, larger arena
        was made (the caller registers it with the judge before taking from it)."""
        self.top = 0
        if self.want <= self.size:
            return False
        size = -(-int(self.want * GROWTH) // ALIGN) * ALIGN
        self.buf = None  # the old one goes first: both at once may not fit beside a study's inputs
        self.buf = torch.empty(size, dtype=torch.uint8, device=self.device)
        self.generation += 1
        return True

    def take(self, nbytes: int) -> torch.Tensor:
        """`nbytes` uint8 from the arena, or a tensor of its own where they do not fit."""
        start = -(-self.top // ALIGN) * ALIGN
        self.want = max(self.want, start + nbytes)
        if self.buf is None or start + nbytes > self.size:
            return torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        self.top = start + nbytes
        return self.buf[start:start + nbytes]

    def mark(self) -> int:
        """Where the request's buffers end now: `release(mark)` hands back what was taken after."""
        return self.top

    def release(self, mark: int) -> None:
        """Buffers taken after `mark` are no longer used (a verified launch, once judged): the
        next ones reuse their bytes, so a request needs the arena of its largest step, not of
        all its steps together."""
        self.top = min(self.top, mark)

    def locate(self, t: torch.Tensor):
        """("arena", generation, byte offset, dtype, shape, strides) if t lies in the arena."""
        if self.buf is None or not t.is_cuda or t.device != self.buf.device:
            return None
        base = self.buf.data_ptr()
        offset = t.data_ptr() - base
        if offset < 0 or offset >= self.size or offset % t.element_size():
            return None
        return ("arena", self.generation, offset, str(t.dtype).removeprefix("torch."), tuple(t.shape),
                tuple(t.stride()))


_ELEMENT_SIZE: dict = {}  # dtype -> bytes per element


def view(held: dict, ref: tuple, dtype: torch.dtype) -> torch.Tensor:
    """The judge's side: the tensor an arena reference names, in the arena view it holds (a
    generation it does not hold, or bounds outside the arena, raise: malformed evidence).
    Each arena's typed view is made once per dtype and kept in `held` beside it: a message names
    20-40 buffers, and every torch operation per buffer costs the judge host time."""
    _, generation, offset, _, shape, stride = ref
    buf = held.get(int(generation))
    if buf is None:
        raise ValueError(f"an arena the judge does not hold (generation {generation})")
    esize = _ELEMENT_SIZE.get(dtype)
    if esize is None:
        esize = _ELEMENT_SIZE[dtype] = torch.empty((), dtype=dtype).element_size()
    offset, shape, stride = int(offset), tuple(int(s) for s in shape), tuple(int(s) for s in stride)
    if offset < 0 or offset % esize or any(s < 0 for s in stride) or any(n < 0 for n in shape):
        raise ValueError("a malformed arena reference")
    span = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else 0
    if offset + span * esize > buf.numel():
        raise ValueError("an arena reference past the arena's end")
    typed = held.get((int(generation), dtype))
    if typed is None:
        typed = held[(int(generation), dtype)] = buf[:buf.numel() - buf.numel() % esize].view(dtype)
    return typed.as_strided(shape, stride, offset // esize)
