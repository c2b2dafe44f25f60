"""Guards around a verified launch: what a candidate must not be able to fool.

Pure helpers the evaluator (tuner/measure/evaluate.py) calls around each verified launch:

  guard_inputs       the inputs the kernel sees are copies, each inside a canary band of its own
                     allocation; afterwards they must be bitwise equal to what they were copied
                     from and the canary bands intact. A kernel that rewrites its inputs (so that
                     a reference computed from them would agree) or writes past an input's ends
                     is caught. What they are compared with: the cached input set itself where
                     the judge holds it (a dense tensor, over CUDA IPC), else a pristine copy
                     taken before the launch.
  perturbed          an input set equal to another but for one element per floating tensor: a
                     kernel that memoises on a small fingerprint of its inputs replays a stale,
                     wrong result for it.
  input_damage       the comparison itself (the judge, tuner/measure/judge.py, runs it)
  ceiling_violation  a latency that implies more than the device's measured bandwidth or FLOP
                     ceiling (tuner/experiment/hardware.py) is not a fast kernel: it skipped work.

Launches during a call are counted and watched in tuner/measure/launch_watch.py, the harness's
functions sealed in tuner/measure/seal.py. The evaluator prepares guarded inputs in the
candidate's own process; the comparisons that decide (input_damage, the output check) run in the
judge's process, where no candidate code runs (tuner/measure/judge.py). See docs/reliability.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Canary bytes on each side of every input copy (a multiple of 256 bytes, so a copy keeps the
# 16-byte alignment TMA descriptors need, and the 128-byte alignment vector loads like).
CANARY_BYTES = 1 << 16
CANARY_BYTE = 0xA5  # as fp16 0xA5A5 is -0.0227, as fp32 -2.9e-16: plausible data, never all zeros


# -- inputs inside canary bands, and their pristine copies ---------------------------------------
def _span(t: torch.Tensor) -> int:
    """Elements of storage a strided tensor reaches (from its first element)."""
    if t.numel() == 0:
        return 0
    return 1 + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))


@dataclass
class GuardedTensor:
    buf: torch.Tensor  # bytes: canary | the tensor's storage span | canary
    view: torch.Tensor  # what the kernel gets: same shape, strides and dtype as the original
    # bytes, a copy of buf taken before the launch; None where the copy is compared with the
    # tensor it was made from (`pristine` then is that tensor: the judge holds it)
    pristine_buf: torch.Tensor | None
    pristine: torch.Tensor  # the tensor as it was before the launch (a view into pristine_buf, or the source)
    lo: int  # byte range of the tensor's span inside buf
    hi: int


def _new_bytes(nbytes: int, device) -> torch.Tensor:
    return torch.empty((nbytes,), dtype=torch.uint8, device=device)


def dense(t: torch.Tensor) -> bool:
    """t's elements fill its storage span with no gap: its guarded copy's middle bytes are t's
    bytes, so the copy can be compared with t itself."""
    return t.is_contiguous() and t.numel() == _span(t)


def guard_tensor(t: torch.Tensor, canary_bytes: int = CANARY_BYTES, alloc=None,
                 keep_pristine: bool = True) -> GuardedTensor:
    """A copy of t (same shape, strides, dtype, device) in the middle of a canary-filled byte
    buffer, and a pristine copy of the whole buffer. `alloc(nbytes)`: where the bytes come from
    (the evaluator's arena, tuner/measure/arena.py; a fresh allocation by default).
    `keep_pristine=False`: no pristine copy for a dense t (its copy is compared with t itself,
    which the caller keeps unchanged and the judge holds): half the bytes copied per launch (an
    embedding table of 512 MB was copied twice for each of a candidate's five input sets)."""
    if any(s < 0 for s in t.stride()):
        raise ValueError("negative strides are not supported")
    esize = t.element_size()
    span_bytes = _span(t) * esize
    pad = (-span_bytes) % esize
    lo = canary_bytes
    size = 2 * canary_bytes + span_bytes + pad
    keep_pristine = keep_pristine or not dense(t)
    # the launched buffer and its pristine copy: two halves of one allocation (the judge opens
    # one CUDA IPC handle for both)
    both = alloc((2 if keep_pristine else 1) * size) if alloc is not None else \
        _new_bytes((2 if keep_pristine else 1) * size, t.device)
    buf = both[:size]
    if dense(t):  # the copy fills the middle: fill the bands only
        buf[:lo].fill_(CANARY_BYTE)
        buf[lo + span_bytes:].fill_(CANARY_BYTE)
    else:  # the gaps between a strided tensor's elements stay canary bytes too
        buf.fill_(CANARY_BYTE)
    typed = buf.view(t.dtype) if t.dtype != torch.uint8 else buf
    view = typed.as_strided(tuple(t.shape), tuple(t.stride()), typed.storage_offset() + lo // esize)
    view.copy_(t)
    if not keep_pristine:
        return GuardedTensor(buf, view, None, t, lo, lo + span_bytes)
    pristine_buf = both[size:]
    pristine_buf.copy_(buf)
    ptyped = pristine_buf.view(t.dtype) if t.dtype != torch.uint8 else pristine_buf
    # as_strided counts its offset from the start of the storage, which both halves share
    pristine = ptyped.as_strided(tuple(t.shape), tuple(t.stride()), ptyped.storage_offset() + lo // esize)
    return GuardedTensor(buf, view, pristine_buf, pristine, lo, lo + span_bytes)


@dataclass
class GuardedInputs:
    inputs: tuple  # what the kernel is launched with
    pristine: tuple  # the same structure over pristine copies: what the reference is computed from
    guarded: list  # (input index, GuardedTensor)
    standing: bool = False  # kept across candidates, its buffers held by the judge (tuner/measure/handover.py)

    def damage(self) -> str:
        """Why the inputs or their canaries are not as they were before the launch ('' if they are)."""
        for i, g in self.guarded:
            before = g.pristine_buf if g.pristine_buf is not None else as_bytes(g.pristine)
            why = input_damage(i, g.buf, before, g.lo, g.hi)
            if why:
                return why
        return ""


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor's bytes, as a flat uint8 view (no copy)."""
    flat = t.detach().reshape(-1)
    return flat.view(torch.uint8) if flat.dtype != torch.uint8 else flat


def words_of(t: torch.Tensor) -> torch.Tensor:
    """Flat bytes viewed as the widest integer words their length and address allow: a
    comparison of 8-byte words reads the same bytes as one of single bytes but writes an eighth
    of the flags (an equality of two 512 MB buffers: ~3x less memory traffic)."""
    for dtype, size in ((torch.int64, 8), (torch.int32, 4)):
        if t.numel() % size == 0 and t.data_ptr() % size == 0:
            return t.view(dtype)
    return t


def bytes_differ(now: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """Whether two flat uint8 buffers of one length differ anywhere (a bool on the device: the
    caller reads it back with whatever else it needs)."""
    a, b = words_of(now), words_of(before)
    if a.dtype != b.dtype:
        a, b = now, before
    return torch.ne(a, b).any()


def input_changed(now: torch.Tensor, before: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Whether guarded bytes `now` differ from `before` (a whole pristine copy of them, or the
    bytes of the tensor they were copied from: then the canary bands around [lo, hi) are
    compared with the canary byte). A bool on the device."""
    return inputs_changed([(now, before, lo, hi)])[0] > 0


def inputs_changed(entries: list, middles: list | None = None) -> torch.Tensor:
    """`input_changed` of each (now, before, lo, hi), as float64 flags on the device, in a few
    operations whatever their number: the canary bands of the inputs compared with their source
    tensor are checked together (each torch operation costs the judge ~10-20 us of host time, and
    a candidate's checks name 10-20 inputs). `middles[k]`, where given (not None): whether entry
    k's bytes in [lo, hi) differ from its source, already decided (the judge's word hash)."""
    if not entries:
        return torch.zeros(0, dtype=torch.float64)
    flags, bands, banded = [], [], []
    for k, (now, before, lo, hi) in enumerate(entries):
        lo, hi = int(lo), int(hi)
        if before.numel() == now.numel():
            flags.append(bytes_differ(now, before))
        else:
            middle = middles[k] if middles else None
            flags.append(middle if middle is not None else bytes_differ(now[lo:hi], before))
            bands += [now[:lo], now[hi:]]
            banded.append(k)
    changed = torch.stack(flags)
    if banded:
        if len({b.numel() for b in bands}) == 1:  # the harness's bands: one length, stacked
            written = (torch.stack(bands) != CANARY_BYTE).any(dim=1).reshape(-1, 2).any(dim=1)
        else:
            written = torch.stack([(torch.cat(bands[2 * j:2 * j + 2]) != CANARY_BYTE).any()
                                   for j in range(len(banded))])
        changed[banded] |= written.to(changed.device)
    return changed.to(torch.float64)


def input_damage(i: int, now: torch.Tensor, before: torch.Tensor, lo: int, hi: int) -> str:
    """Why input #i's guarded bytes `now` differ from what they were ahead of the launch ('' if
    they do not): `before` is a pristine copy of all of `now`, or the bytes of the tensor `now`'s
    [lo, hi) was copied from (the canary bands around them are then compared with the canary
    byte)."""
    was = before if before.numel() == hi - lo and before.numel() != now.numel() else before[lo:hi]
    if not torch.equal(now[lo:hi], was):
        n = int((now[lo:hi] != was).sum())
        return (f"rewrote its input #{i} ({n} bytes changed); inputs must be left as "
                "they were (the reference is computed from a pristine copy)")
    outside = int((now[:lo] != CANARY_BYTE).sum()) + int((now[hi:] != CANARY_BYTE).sum())
    if outside:
        return f"wrote {outside} bytes into the canary band around its input #{i}"
    return ""


def restore(now: torch.Tensor, source: torch.Tensor, lo, hi) -> None:
    """A standing copy a candidate changed, as it was: its source's bytes between canary bands.
    The judge calls it (tuner/measure/judge.py): the next candidate is given the same copy, and
    the judge, not the process the candidate ran in, is what decides that it is intact."""
    lo, hi = int(lo), int(hi)
    now[lo:hi].copy_(source)
    now[:lo].fill_(CANARY_BYTE)
    now[hi:].fill_(CANARY_BYTE)
    if now.is_cuda:
        torch.cuda.synchronize(now.device)


def _map(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map(o, fn) for o in obj)
    return obj


def tensors_of(inputs) -> list:
    """The tensors among the inputs, in guard_inputs' order (input #i is the i-th)."""
    found: list = []
    _map(inputs, lambda t: found.append(t) or t)
    return found


def guard_inputs(inputs, canary_bytes: int = CANARY_BYTES, alloc=None, keep_pristine: bool = True) -> GuardedInputs:
    """Guarded copies of every tensor among the inputs (nested tuples and lists too).
    `keep_pristine=False`: the inputs are a cached set the judge holds (guard_tensor)."""
    guarded: list = []

    def one(t):
        g = guard_tensor(t, canary_bytes, alloc, keep_pristine)
        guarded.append((len(guarded), g))
        return g.view

    kernel_in = _map(inputs, one)
    it = iter(guarded)
    pristine = _map(inputs, lambda t: next(it)[1].pristine)
    return GuardedInputs(tuple(kernel_in), tuple(pristine), guarded)


def perturbed(inputs, seed: int, delta: float = 4.0):
    """A copy of the inputs with one element of the first floating tensor moved by `delta`, at a
    seeded position: nearly the same input set, so a kernel that memoises on a fingerprint of a
    few elements replays its earlier result, which is now wrong where that element matters.
    Only the first floating tensor: later ones may be derived from it (a norm's saved mean and
    rstd), and moving those would make the input set inconsistent for an honest kernel."""
    g = torch.Generator().manual_seed(seed)
    moved = []

    def one(t: torch.Tensor):
        c = t.clone()
        if not moved and c.is_floating_point() and c.numel() > 1:
            moved.append(True)
            idx = int(torch.randint(c.numel(), (1,), generator=g))
            if c.is_contiguous():
                flat = c.view(-1)
                flat[idx] = (flat[idx].float() + delta).to(c.dtype)
            else:
                pos = tuple(int(p) for p in torch.unravel_index(torch.tensor(idx), c.shape))
                c[pos] = (c[pos].float() + delta).to(c.dtype)
        return c

    return _map(inputs, one)


# -- faster than the hardware allows --------------------------------------------------------------
CEILING_MARGIN = 1.15  # measured ceilings are one run's figure: 15% of headroom for its noise


def ceiling_violation(ms: float, flops: float, nbytes: float, hw, dtype: str,
                      margin: float = CEILING_MARGIN, bandwidth: bool = True) -> str:
    """Why a latency is physically impossible on hw ('' if it is not): the work (flops at the
    dtype's FLOP ceiling) or the fewest bytes a perfect kernel moves (at the copy bandwidth
    ceiling) would take longer than `margin` times the measured time. `bandwidth=False` where L2
    was not flushed between repetitions (data may then come from cache, faster than HBM)."""
    from kernelevolve.tuner.experiment.hardware import ceiling_for

    if not ms or ms <= 0 or getattr(hw, "interpreter", False):
        return ""
    s = ms * 1e-3
    checks = [(f"{dtype}_flops", flops, "FLOP/s", 1e12, "TFLOP/s")]
    if bandwidth:
        checks.append(("copy_bytes", nbytes, "B/s", 1e9, "GB/s"))
    for key, amount, _, scale, unit in checks:
        ceil = ceiling_for(hw, key)
        if not ceil or not amount:
            continue
        rate = amount / s
        if rate > margin * ceil.value:
            return (f"faster than the hardware allows: {ms:.4g} ms means {rate / scale:.4g} {unit}, "
                    f"over {margin:g}x the {hw.name} ceiling of {ceil.value / scale:.4g} {unit} "
                    f"({key}, {ceil.source}); the kernel skipped work")
    return ""
