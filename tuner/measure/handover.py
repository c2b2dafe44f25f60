"""The evaluation process's side of its judge: what it registers, hands over, audits and lets go.

The evaluator (tuner/measure/evaluate.py) launches candidates; every verdict is the judge's
(tuner/measure/judge.py), a process where no candidate code runs. This class is the hand-over
between them, over the wire of tuner/measure/evidence.py:

  arena     the allocation every guarded buffer of a request is carved from (tuner/measure/arena.py),
            registered once (again only when it grows): over CUDA IPC a message then names its
            buffers by offset, and the judge opens no handle per message
  register  each cached input set (and its reference) as it is made, before any launch with it:
            the judge fingerprints it, and over CUDA IPC keeps its views, so later checks and
            audits name the set by key instead of sending it again (a set made in a request that
            judges nothing: at the first judged request that uses it, or, in a lane's prepare,
            at once, tuner/measure/prepare.py)
  submit    one check's evidence (a verified launch, or a timing loop's sampled calls): outputs
            between guard zones, the guarded inputs and their pristine copies, the reference (or
            its key), the number of Triton launches, the seal's word
  audit     after each evaluate or retime request, every cached set it used, against its
            fingerprints (a candidate that wrote into the cache is caught before the next one is
            judged with it)
  standing  the guarded copies of a cached set the judge holds, made once and kept across
            candidates: the judge checks them after every launch against the set (its word hash)
            and, where a candidate changed them, restores them itself before answering, so the
            next candidate gets them as they were whatever this process does (the copies of an
            embedding bag's 512 MB table, five per candidate, were a fifth of its verification)
  forget    the sets the cache dropped, so the judge lets go of their memory
  cost      what all of that cost the request (the record's verify_* fields)
"""
from __future__ import annotations

import time
from contextlib import contextmanager

from kernelevolve.tuner.measure.timed_outputs import GUARD_ELEMENTS


class Handover:
    def __init__(self, link, inputs, guards, seal, sync):
        self.link = link  # evidence.JudgeLink, or None in a process without a judge
        self.inputs = inputs  # the evaluator's InputSets
        self.guards, self.seal, self.sync = guards, seal, sync
        self.judging = False  # in an evaluate or retime request (a compile request has no judge)
        self.registered: set = set()  # (the judge's key of a cached set, with its reference)
        self.used: dict = {}  # the cached sets this request used: audited after it
        self.guard_s = 0.0  # this request's guarded copies and outputs (verification's memory work)
        self.arena = None  # tuner/measure/arena.Arena, over CUDA IPC only (made at the first begin)
        self.audited_with_check = False
        self.arena_failed = False  # the judge refused the arena once: never asked again
        self.standing: dict = {}  # the judge's key of a cached set -> its standing GuardedInputs
        self.standing_failed = False  # the judge refused a standing copy once: never asked again

    def begin(self, judging: bool) -> None:
        self.judging = judging and self.link is not None
        self.used, self.guard_s = {}, 0.0
        self.audited_with_check = False  # an audit went with a check this request
        if self.link is not None:
            self.link.spent = dict.fromkeys(self.link.spent, 0.0)
        if self.judging and self.link.ready():
            self._arena()

    def _arena(self) -> None:
        """Start the request's buffers at the arena's beginning; a new (larger) arena is handed to
        the judge first, itself over CUDA IPC (the judge keeps it and drops the one before)."""
        import torch

        from kernelevolve.tuner.measure.arena import Arena

        if self.arena_failed:
            return
        if self.arena is None:
            self.arena = Arena(torch.device("cuda", torch.cuda.current_device()))
        if self.arena.reset():
            self.link.arena = None  # the arena itself travels as an IPC handle
            reply = self.link.submit({"op": "arena", "generation": self.arena.generation,
                                      "tensor": self.arena.buf})
            if not reply.get("ok"):  # the judge cannot hold it: a handle per buffer, as before
                self.arena, self.arena_failed = None, True
                return
        self.link.arena = self.arena

    def mark(self):
        """Where the request's arena buffers end now (None without an arena)."""
        return self.arena.mark() if self.arena is not None else None

    def release(self, mark) -> None:
        """Buffers taken since `mark` are handed back to the arena (the caller keeps none of
        them: verified launches, once judged)."""
        if mark is not None and self.arena is not None:
            self.arena.release(mark)

    @contextmanager
    def step(self):
        """Buffers taken inside are handed back to the arena when it ends."""
        mark = self.mark()
        try:
            yield
        finally:
            self.release(mark)

    @property
    def alloc(self):
        """Where a guarded buffer's bytes come from: the arena over CUDA IPC (`take(nbytes)`);
        None otherwise (each buffer its own allocation, as guards and timed_outputs make it)."""
        return self.arena.take if self.arena is not None and self.judging else None

    def key(self, study, index: int) -> list:
        """How the judge names a cached input set and its reference: a fingerprint of each is
        taken the first time the judge sees them and compared at every later use."""
        return ["|".join(study), index, self.inputs.generation.get((study, index), 0)]

    def note(self, study, index: int, inputs, ref) -> None:
        """A cached set about to be used: registered with the judge if new (fingerprinted as made,
        before any launch with it), remembered for the audit; sets the cache dropped forgotten."""
        if self.judging:
            key = self.register(study, index, inputs, ref)
            used = self.used.get(tuple(key))
            self.used[tuple(key)] = [key, ref if ref is not None else (used or [None, None])[1], inputs]
        self.forget(self.inputs.take_evicted())

    def register(self, study, index: int, inputs, ref) -> list:
        """A cached set registered with the judge if it has not been (with its reference, if made);
        its key. Outside a judged request only where the judge is known to run (a lane's prepare,
        tuner/measure/prepare.py): nothing else would answer."""
        key = self.key(study, index)
        seen = (tuple(key), ref is not None)
        if self.link is not None and seen not in self.registered:
            self.registered.add(seen)
            self.link.submit({"op": "register", "ref_key": key, "ref": ref,
                              "inputs": self.guards.tensors_of(inputs)})
        return key

    def forget(self, sets) -> None:
        """Tell the judge which cached sets are gone, so it lets go of its views of them (their
        memory is freed once it has: torch's CUDA IPC keeps a shared buffer until then)."""
        if self.link is None:
            return
        for study, index, generation in sets:
            key = ("|".join(study), index, generation)
            if not {(key, True), (key, False)} & self.registered:
                # made in a request that judged nothing and dropped before any did: the judge
                # holds nothing of it, and in a process whose judge never started (a compile slot,
                # or one prepared without asking for it) a message would wait for no answer
                continue
            self.registered -= {(key, True), (key, False)}
            self.standing.pop(key, None)
            self.link.submit({"op": "forget", "ref_key": list(key)})

    def held(self, key: list) -> bool:
        """Whether the judge keeps this registered set (and its reference) itself: over CUDA IPC,
        a check or an audit then names it by key instead of sending it again."""
        return bool(self.link.ipc) and (tuple(key), True) in self.registered

    def inputs_for(self, study, index, pooled):
        """The guarded copies (guards.GuardedInputs) a launch on cached set `index` is given: the
        set's standing copies where the judge holds the set and keeps them, else copies made for
        this request (in the arena; with pristine copies unless the judge holds the set)."""
        key = self.key(study, index)
        held = self.held(key)
        if held and not self.standing_failed:
            standing = self.standing.get(tuple(key)) or self._stand(key, pooled)
            if standing is not None:
                return standing
        alloc = self.alloc
        return self.guarded(lambda: self.guards.guard_inputs(pooled, alloc=alloc, keep_pristine=not held))

    def _stand(self, key: list, pooled):
        """Standing copies of a held set, registered with the judge (None where they do not fit
        the input cache's budget beside the others, a tensor is not dense, or the judge refuses)."""
        tensors = self.guards.tensors_of(pooled)
        nbytes = sum(t.numel() * t.element_size() + 2 * self.guards.CANARY_BYTES for t in tensors)
        standing_bytes = sum(g.buf.numel() for made in self.standing.values() for _, g in made.guarded)
        # at most a quarter of the input cache's budget again (~5 GB on an 80 GB GPU): a study's
        # own buffers, and a profiler's process beside this one, need the rest
        if not all(self.guards.dense(t) for t in tensors) or standing_bytes + nbytes > self.inputs.budget // 4:
            return None
        made = self.guarded(lambda: self.guards.guard_inputs(pooled, keep_pristine=False))
        reply = self.link.submit({"op": "standing", "ref_key": key, "bufs": [g.buf for _, g in made.guarded]})
        if not reply.get("ok"):
            self.standing_failed = True
            return None
        made.standing = True
        self.standing[tuple(key)] = made
        return made

    def _message(self, kind: str, what: str, outs: list, shape_of, sets: list, guarded: list, reduction,
                 launches=None, row=None, calls=None, stray_launches: int = 0, library_calls=()) -> dict:
        """One check's evidence. `outs`: (buffer, timed call number or None, input set); `sets`:
        per input set (reference, the judge's key of the cached set); `guarded`: the
        GuardedInputs the calls were given, per set."""
        return {
            "kind": kind, "what": what, "row": row, "guard": GUARD_ELEMENTS,
            "outs": [[buf, call, which] for buf, call, which in outs], "shape": list(shape_of.shape),
            "stride": list(shape_of.stride()),
            "calls": calls, "reduction": reduction, "launches": launches,
            # Triton launches from another thread or to another stream (launch_watch.STRAY_LAUNCH)
            "stray_launches": int(stray_launches or 0),
            # the library operators its calls ran through torch (launch_watch.LIBRARY_CALL)
            "library_calls": [str(op) for op in library_calls or ()],
            "sets": [{"ref": None if self.held(key) else ref, "ref_key": key} for ref, key in sets],
            # per guarded input: its bytes, their pristine copy (None: compare with the cached
            # set's tensor the judge holds, named by the set's key and the input's place)
            # (a standing copy's bytes: None, the judge holds them under the set's key)
            "inputs": [[None if inputs.standing else g.buf, g.pristine_buf, g.lo, g.hi, key, i]
                       for (_, key), inputs in zip(sets, guarded) for i, g in inputs.guarded],
            "seal": self.seal.broken()}

    def _link(self):
        if self.link is None:
            raise RuntimeError("no judge: run evaluation processes through tuner.execution.worker."
                               "CandidateWorker, which starts one beside each")
        self.sync()
        return self.link

    def submit(self, kind: str, what: str, outs: list, shape_of, sets: list, guarded: list, reduction,
               launches=None, row=None, calls=None, audit: bool = False, stray_launches: int = 0,
               library_calls=()):
        """Hand one check's evidence to the judge (`_message`); its outcome as a Check (to stop
        early: the verdict itself is the judge's, which the parent reads). `audit`: the cached
        sets used so far are audited in the same message (one round trip fewer)."""
        msg = self._message(kind, what, outs, shape_of, sets, guarded, reduction, launches, row, calls,
                            stray_launches, library_calls)
        link = self._link()
        if audit:
            msg["audit"] = self._audit_sets()
            self.audited_with_check = True
        return _check(link.submit(msg))

    def submit_all(self, evidence: list) -> list:
        """Several checks' evidence (dicts of `_message`'s arguments) in one message: one round
        trip for a candidate's three verified launches. Their outcomes as Checks, in order."""
        msgs = [self._message(**ev) for ev in evidence]
        reply = self._link().submit({"op": "batch", "items": msgs})
        results = reply.get("results") or []
        if len(results) != len(msgs):
            return [_check({"ok": False, "reason": reply.get("reason") or "the judge did not answer each check"})
                    for _ in msgs]
        return [_check(r) for r in results]

    def guarded(self, make):
        """make(): guarded copies or outputs, their time counted as verification's."""
        t0 = time.perf_counter()
        out = make()
        self.sync()
        self.guard_s += time.perf_counter() - t0
        return out

    def _audit_sets(self) -> list:
        """The cached sets used since the last audit, as the judge's audit reads them."""
        sets = [[key, None, None] if self.held(key) else [key, ref, self.guards.tensors_of(inputs)]
                for key, ref, inputs in self.used.values()]
        self.used = {}
        return sets

    def audit(self) -> float:
        """After each evaluate or retime request: the judge compares every cached set it used
        (since an audit sent with a check) with its fingerprints from when it was made. Returns
        the seconds it took."""
        t0 = time.perf_counter()
        sets = self._audit_sets()
        if not sets and self.audited_with_check:
            return 0.0
        try:
            self.link.submit({"op": "audit", "sets": sets})
        except Exception:  # a broken channel: the parent finds the judge gone and records it
            pass
        return time.perf_counter() - t0

    def cost(self) -> dict:
        """What verification cost this request, outside the timing loop: every round trip to the
        judge (registering sets, the checks, the audit) and the guarded copies it checks."""
        spent = self.link.spent
        out = {"verify_s": spent["round_trip"] + self.guard_s, "verify_guard_s": self.guard_s}
        for part in ("encode", "decode", "check", "release"):
            out[f"verify_{part}_s"] = spent[part]
        return out


def _check(ack: dict):
    from kernelevolve.tuner.measure.verify import Check

    return Check(bool(ack.get("ok")), float(ack.get("rel", float("inf"))),
                 float(ack.get("max", float("inf"))), str(ack.get("reason", "")))
