"""Output buffers of verified and timed calls, all alike, and an unpredictable sample of timed calls.

Why: a kernel that can tell a verified call from a timed one (its output buffer is NaN-poisoned
only when verified, or a timed call reuses a buffer it already wrote) can work only when checked.
So every call, verified or timed, writes into a buffer from `guarded_output`: one allocation of
poisoned guard zones around a poisoned output of the same layout, and a skipped timed call must
leave behind something the check rejects.

Timed calls alternate between two input sets (different seeded data, the same shape), chosen per
call so that the buffer a call writes holds NaN (never written) or the *other* set's output: a
call that skips its work, or part of it, leaves an output that is wrong for its own set. Nothing
has to be written between timed calls for that (a timed call used to be preceded by poisoning
its whole buffer again: on an H100 up to a fifth of a timing loop's wall time for 64 MB outputs).
A uniform random sample of the timed calls (reservoir sampling, drawn from the operating system's
randomness after each call: the candidate cannot know whether the call it is in will be checked)
keeps its buffer aside; the judge (tuner/measure/judge.py) checks those outputs against their own
set's reference after the timing loop.

A kernel that skips a fraction s of its timed calls escapes with probability (1 - s)^m for m
sampled calls (m = 16: 3% at s = 0.2, 2e-5 at s = 0.5); on a GPU the ceiling check
(guards.ceiling_violation) catches what skips more than the hardware allows. A kernel that keeps
both sets' outputs and copies the right one is not caught here (it is the memoising kernel of
docs/reliability.md's limits; the ceiling check is what bounds it).

Under the `cudagraph` clock the captured calls replay back to back: nothing can run between them
without being timed. There the captured calls write round robin into a capture ring that no eager
call writes and that is poisoned before the capture (first set only), and the ring is checked
after the last replay: a launcher that skips work when captured leaves NaN; a kernel that tests
its own output on the device and skips within a replay is caught only by the ceiling check.
"""
from __future__ import annotations

import contextlib
import random

import torch

from kernelevolve.tuner.measure.verify import poison

# Poisoned elements on each side of every output: a kernel that writes past its output's ends
# lands here and is caught (instead of silently corrupting a neighbour).
GUARD_ELEMENTS = 1 << 16
MAX_SAMPLES = 16  # timed calls checked per timing loop, at most
# share of the eager timed calls whose Triton launches' stream is watched (each drawn at random)
WATCH_SHARE = 0.25
SAMPLE_BYTES = 256 << 20  # ... and at most this many bytes of kept outputs (at least 2 samples)

_RANDOM = random.SystemRandom()  # unpredictable from inside the process (no state to read)


def span(shape, stride) -> int:
    """Elements an output of this layout holds: its numel when contiguous; for a GEMM's C whose
    rows are padded (kernels/gemm_tiles.py output_for) whole rows of the pitch, the last one's padding
    too (cuBLAS writes the padded product there), inside its slot and never checked."""
    shape, stride = tuple(shape), tuple(stride)
    if len(shape) == 2 and shape[0] and stride[1] == 1 and stride[0] > shape[1]:
        return shape[0] * stride[0]
    n = 1
    for size in shape:
        n *= size
    return n


def dense_strides(shape) -> tuple:
    """The strides of a contiguous tensor of this shape."""
    return torch.empty(tuple(shape), device="meta").stride()


def layout_ok(shape, stride) -> bool:
    """Whether (shape, stride) is a layout an output may have: contiguous, or 2-D rows one pitch
    apart, the pitch at least the row (no element seen twice: the judge takes the layout from the
    evaluator's message and must not be shown one element for many)."""
    shape, stride = tuple(shape), tuple(stride)
    if stride == dense_strides(shape):
        return True
    return len(shape) == 2 and stride[1] == 1 and stride[0] >= shape[1]


def extent(shape_of: torch.Tensor) -> int:
    """span() of a tensor's own layout."""
    return span(shape_of.shape, shape_of.stride())


def output_view(slot: torch.Tensor, shape, stride) -> torch.Tensor:
    """The output inside a guarded slot (GUARD_ELEMENTS on each side), in the layout (shape,
    stride) it was made with: the launcher's, the judge's and every check's one view of it."""
    inner = slot[GUARD_ELEMENTS:slot.numel() - GUARD_ELEMENTS]
    return inner.as_strided(tuple(shape), tuple(stride))


def guarded_output(shape_of: torch.Tensor, alloc=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(buffer, output view): `shape_of`'s shape and dtype in the middle of one allocation with
    GUARD_ELEMENTS on each side, all poisoned."""
    return guarded_outputs(shape_of, 1, alloc)[0]


def guarded_outputs(shape_of: torch.Tensor, count: int, alloc=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` guarded_output buffers, slots of one allocation (each with its own guard zones).
    Why one: the judge opens an allocation's CUDA IPC handle once per message, whatever the
    number of slots it reads there; a handle per buffer cost ~0.2 ms each to open and close.
    `alloc(nbytes)`: where the bytes come from (the evaluator's arena, tuner/measure/arena.py)."""
    n = extent(shape_of)
    slot = n + 2 * GUARD_ELEMENTS
    if alloc is not None:
        slab = alloc(slot * count * shape_of.element_size()).view(shape_of.dtype)
    else:
        slab = shape_of.new_empty(slot * count)
    poison(slab)
    bufs = [slab[i * slot:(i + 1) * slot] for i in range(count)]
    return [(buf, output_view(buf, shape_of.shape, shape_of.stride())) for buf in bufs]


def guard_zone_writes(buf: torch.Tensor) -> int:
    """Elements written into a guarded_output buffer's guard zones (0 if none)."""
    return guard_zone_counts([buf])[0]


def guard_zone_counts(bufs: list) -> list[int]:
    """guard_zone_writes of each buffer, read back from the device once for all of them."""
    return [int(c) for c in guard_zone_tensor(bufs).tolist()] if bufs else []


def as_rows(bufs: list):
    """(slab, rows): buffers that are equal slots of one allocation (guarded_outputs) as the rows
    of one 2-D view over it, and each buffer's row, so that one operation reads all of them; or
    (None, None) where they are not. Why: on an H100 host every torch operation per buffer costs
    the judge ~10-20 us, and a check reads up to 17 of them."""
    first = bufs[0]
    slot, esize = first.numel(), first.element_size()
    same = all(b.numel() == slot and b.dtype == first.dtype and b.is_contiguous()
               and b.untyped_storage().data_ptr() == first.untyped_storage().data_ptr() for b in bufs)
    if not same:
        return None, None
    low = min(bufs, key=lambda b: b.data_ptr())
    gaps = [b.data_ptr() - low.data_ptr() for b in bufs]
    if any(g % (slot * esize) for g in gaps):
        return None, None
    rows = [g // (slot * esize) for g in gaps]
    try:
        return low.as_strided((max(rows) + 1, slot), (slot, 1)), rows
    except RuntimeError:  # not inside one storage after all
        return None, None


def _written(zone: torch.Tensor) -> torch.Tensor:
    return ~torch.isnan(zone) if zone.is_floating_point() else zone != torch.iinfo(zone.dtype).min


def guard_zone_tensor(bufs: list) -> torch.Tensor:
    """The elements written into each buffer's guard zones, on the device (the caller reads them
    back with whatever else it needs): every zone read by a few operations, whatever the number
    of buffers (16 sampled timed calls' zones took 1.1 ms one by one on an H100)."""
    g = GUARD_ELEMENTS
    slab, rows = as_rows(bufs) if len(bufs) > 2 else (None, None)  # one or two: stacked is fewer operations
    if slab is not None:
        per_row = _written(slab[:, :g]).sum(dim=1) + _written(slab[:, slab.shape[1] - g:]).sum(dim=1)
        return per_row[torch.tensor(rows, device=per_row.device)]
    zones = torch.stack([buf[:g] for buf in bufs] + [buf[buf.numel() - g:] for buf in bufs])
    return _written(zones).reshape(2, len(bufs), g).sum(dim=(0, 2))


def sample_count(shape_of: torch.Tensor) -> int:
    nbytes = (extent(shape_of) + 2 * GUARD_ELEMENTS) * shape_of.element_size()
    return max(2, min(MAX_SAMPLES, SAMPLE_BYTES // max(1, nbytes)))


class TimedOutputs:
    """The output buffers of one config's timed calls. `launch(out, which)` runs the candidate on
    input set `which` (0 or 1) into `out`. `loop()` gives (fn, before) for one timing loop
    (clocks.measure(fn, ..., before=before)); `samples()` the (buffer, call number, input set)
    triples to check afterwards. Kept across loops (the end-of-study re-timing times each config
    in rounds)."""

    def __init__(self, launch, shape_of: torch.Tensor, graph: bool = False, samples: int | None = None,
                 alloc=None, watch: bool = False, interpreter: bool = False):
        self.launch, self.shape_of, self.graph = launch, shape_of, graph
        # `watch`: every captured call's launches, and a random share of the eager timed calls'
        # (all of them on the interpreter, whose wall clock is no performance figure), watched for
        # stray launches: from another thread, or on a GPU to another stream (_watched)
        self.watch, self.interpreter = watch, interpreter
        self.stray = 0  # stray launches seen (launch_watch.STRAY_LAUNCH)
        self.library: set = set()  # library operators the watched calls ran (launch_watch.LIBRARY_CALL)
        self.watched = 0  # timed calls whose launches were watched
        self._watching = None  # the open watch of the timed call being made
        self.m = samples or sample_count(shape_of)
        self.kept: list = []  # [(buf, out, call number, input set)] the reservoir
        self.which = 0  # the input set of the call being made (warm-up calls: whatever is current)
        self.writer: dict = {}  # a buffer's address -> the input set that last wrote it
        # m kept and one being written are all the reservoir ever holds; cudagraph: m more, the
        # captured calls' own buffers, never written by an eager call
        slots = guarded_outputs(shape_of, self.m + 1 + (self.m if graph else 0), alloc)
        self.spare: list = slots[1:self.m + 1]  # [(buf, out)] buffers to reuse
        self.current = slots[0]  # what the next call writes
        self.ring = slots[self.m + 1:]
        self.calls = 0  # timed calls so far (all loops)
        self._pending = False  # the last call was a timed one, not yet offered to the reservoir
        self._captured = 0

    # -- one timing loop -----------------------------------------------------------------------
    def loop(self):
        self._settle()
        if self.graph:  # a fresh capture: its ring poisoned now, eagerly, outside any timed region
            for buf, _ in self.ring:
                poison(buf)
            self._captured = 0
        return self._call, (None if self.graph else self._before)

    def end_loop(self):
        """After a timing loop: the last timed call offered to the reservoir and its watch, if it
        had one, closed (before another config's loop is timed: an open launch hook would add its
        host cost to that loop's calls)."""
        self._settle()

    def _call(self):
        if self.graph and torch.cuda.is_current_stream_capturing():
            buf, out = self.ring[self._captured % len(self.ring)]
            self._captured += 1
            # a capture is never timed: every captured call's launches are watched
            with self._watched() if self.watch else contextlib.nullcontext():
                return self.launch(out, 0)
        buf, out = self.current  # under cudagraph: warm-up and estimate calls only
        self.writer[buf.data_ptr()] = self.which
        return self.launch(out, self.which)

    @contextlib.contextmanager
    def _watched(self):
        from kernelevolve.tuner.measure.launch_watch import count_launches

        with count_launches(self.interpreter, watch=True) as seen:
            yield
        self.stray += seen.stray
        self.library |= seen.library
        self.watched += 1

    def _before(self):
        """Ahead of a timed call: offer the previous timed call's buffer to the reservoir, then
        choose this call's input set: not the one whose output its buffer holds (NaN, never
        written: either, unpredictably); and, unpredictably too (WATCH_SHARE), whether its
        launches are watched. The launch hook's host cost lands while the clock's L2
        flush runs on the GPU, ahead of the call's start event."""
        self._settle()
        self._pending = True
        self.calls += 1
        last = self.writer.get(self.current[0].data_ptr())
        self.which = 1 - last if last is not None else _RANDOM.randrange(2)
        if self.watch and (self.interpreter or _RANDOM.random() < WATCH_SHARE):
            self._watching = self._watched()
            self._watching.__enter__()

    def _settle(self):
        if self._watching is not None:  # the watched call has been made: its launches counted
            watching, self._watching = self._watching, None
            watching.__exit__(None, None, None)
        if not self._pending:
            return
        self._pending = False
        entry = (*self.current, self.calls, self.which)
        if len(self.kept) < self.m:
            self.kept.append(entry)
        else:
            j = _RANDOM.randrange(self.calls)  # keep call number `calls` with probability m / calls
            if j >= self.m:
                return  # not kept: its buffer is poisoned again and reused by the next call
            self.spare.append(self.kept[j][:2])
            self.kept[j] = entry
        self.current = self.spare.pop()  # m + 1 slots: one is always free here

    # -- after the loops -----------------------------------------------------------------------
    def samples(self) -> list[tuple[torch.Tensor, int, int]]:
        """(guarded buffer, timed call number, input set) of the calls to check."""
        self._settle()
        if self.graph:
            n = min(self._captured, len(self.ring))
            return [(buf, i + 1, 0) for i, (buf, _) in enumerate(self.ring[:n])]
        return [(buf, call, which) for buf, _, call, which in self.kept]

    def total_calls(self) -> int:
        return self._captured if self.graph else self.calls


def differs(bufs: list, views: list) -> torch.Tensor:
    """Whether each output after the first differs from it anywhere (bool, on the device). The
    sampled timed calls' buffers are slots of one allocation (timed_outputs.guarded_outputs): read
    as the rows of one 2-D view, all of them are compared in one pass instead of one each."""
    first = views[0][0]
    if not first.is_contiguous():  # a GEMM's padded C: the rest stacked into dense rows, one comparison
        rest = torch.stack([out for out, *_ in views[1:]])
        return (rest != first.unsqueeze(0)).flatten(1).any(dim=1)
    slab, rows = as_rows(bufs)
    if slab is not None:
        n = first.numel()
        inner = slab[:, GUARD_ELEMENTS:GUARD_ELEMENTS + n]
        ne = (inner != first.reshape(1, n)).any(dim=1)
        return ne[torch.tensor(rows[1:], device=ne.device)]
    return torch.stack([(out != views[0][0]).any() for out, *_ in views[1:]])
