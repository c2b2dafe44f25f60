"""The judge: the process that decides whether a candidate's outputs are right; no candidate code runs here.

Why a process of its own: the evaluation process (tuner/measure/evaluate.py) runs candidate code,
and a candidate can replace anything in the process it runs in: the check, the guards, the seal
that watches them. So the evaluator only launches and gathers *evidence*; the judge, started beside
it by the same parent (tuner/execution/worker.py), computes every verdict: outputs against the
reference, guard zones, inputs unchanged, canary bands, whether a Triton kernel was launched. It
imports torch and tuner.measure.verify, never a kernel module, and reads the evaluator's messages as
plain data (tuner/measure/evidence.py), so nothing the evaluator sends can run here. Its verdict
goes to the parent over a channel the evaluator does not hold; the evaluator hears only each
check's outcome (to stop early).

What the judge holds against a candidate that takes over its evaluation process:
  - the verdict: an `ok` claim stands only with its evidence (three verified input sets and a
    sample of the timed calls, all passing here); a candidate that bypasses the harness, or an
    evaluator that claims `ok` after a failed check, ends `incorrect` and the process is
    replaced (`tampered`), so the candidate cannot judge the candidates after it;
  - each study's references and input sets: a fingerprint of each, taken when the evaluator makes
    it, before any candidate launches with it (a projection on weights only the judge knows), is
    compared after every request that used it, so a
    candidate that overwrites a cached reference or input set (to fail or pass the candidates
    after it) is caught, and the process replaced (tuner/measure/fingerprints.py);
  - the standing input copies it holds (tuner/measure/handover.py): checked after every launch
    against the cached set (a keyed word hash, tuner/measure/check_kernel.py), and restored here,
    before the judge answers, where a candidate changed them, so the next candidate is given them
    as they were whatever the evaluation process does.
Each message's checks are prepared on the device and read back in one transfer
(tuner/measure/readback.py): the judge's host time is most of what verification costs.
The checks that can be waived: NO_LAUNCH and LIBRARY_CALL, for the candidate (or, in a re-timing,
the rows) the parent names in its `begin` message as a built-in kernel's declared vendor config
(torch.mm / torch.addmm, timed beside the Triton candidates so that nothing slower than the vendor
library is dispatched). The parent decides that from its own request (tuner/measure/vendor.py);
nothing the evaluator sends can set it, and every other check stays on for that candidate.
What it cannot hold: a candidate that forges well-formed evidence for itself (hands over outputs
it did not compute with its kernel) from inside its own process. docs/reliability.md says so.

The process itself (its channels, their loop): tuner/measure/judge_process.py.
"""
from __future__ import annotations

import os
import time

import torch

from kernelevolve.tuner.measure.fingerprints import Fingerprints
from kernelevolve.tuner.measure.readback import Pending, read_parts, split
from kernelevolve.tuner.measure.guards import as_bytes, input_damage, inputs_changed, restore, words_of
from kernelevolve.tuner.measure.launch_watch import LIBRARY_CALL, NO_LAUNCH, STRAY_LAUNCH
from kernelevolve.tuner.measure.timed_outputs import (GUARD_ELEMENTS, dense_strides, differs, guard_zone_tensor,
                                                      layout_ok, output_view, span)
from kernelevolve.tuner.measure.verify import Check, check, check_stats, check_verdict, tolerance_for

NEEDED = {"evaluate": {"verify": 3, "timed": 1}}  # evidence an `ok` claim needs
NEEDED_AUDIT = ("evaluate", "retime")  # requests after which the evaluator audits its cache


def _at(where: str, reason: str) -> str:
    return f"{where}: {reason}" if where else reason


def _tampered(reason: str, tampered: str) -> str:
    if not tampered or tampered in reason:
        return reason
    return f"{reason} (harness tampered with: {tampered}; the evaluation process is replaced)"


def _short(text: str, n: int = 2000) -> str:
    return text if len(text) <= n else text[:n] + " ..."


class _Sections:
    """Where the judge's time goes, section by section, when KERNELEVOLVE_JUDGE_PROFILE names a
    folder (a line per message in judge-<pid>.jsonl there; the GPU synchronised at each boundary,
    so only for diagnosis, never in a timed sweep's normal run)."""

    def __init__(self):
        folder = os.environ.get("KERNELEVOLVE_JUDGE_PROFILE")
        self.fh = open(os.path.join(folder, f"judge-{os.getpid()}.jsonl"), "a") if folder else None
        self.parts: dict = {}
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        if self.fh is None:
            return
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.parts[name] = self.parts.get(name, 0.0) + now - self._t
        self._t = now

    def flush(self, **fields) -> None:
        if self.fh is None:
            return
        import json

        self.fh.write(json.dumps({**fields, **self.parts}) + "\n")
        self.fh.flush()
        self.parts, self._t = {}, time.perf_counter()


SECTIONS = _Sections()


class Judge:
    def __init__(self):
        self.prints = Fingerprints()  # of every cached set, taken when it was registered
        self.source_hash: dict = {}  # (set key, input #) -> (word dtype, its word hash on the device)
        self.standing: dict = {}  # set key -> the evaluator's standing guarded copies of its inputs (bytes)
        self.held: dict = {}  # (study, set, generation) -> (reference, inputs): CUDA IPC views kept
        self.items: list = []  # this candidate's checks: dicts of kind, row, ok, reason
        self.tampered = ""
        self.audited = False  # the evaluator audited its cached sets after this request
        self.vendor = False  # the parent's word: this request is a built-in's vendor config
        self.vendor_rows: set = set()  # ... or, of a re-timing, these rows are
        self.arenas: dict = {}  # generation -> the evaluator's arena (tuner/measure/arena.py), held

    def register(self, msg: dict) -> dict:
        """A cached input set (and its reference) as the evaluator made it, before any candidate
        launched with it: the fingerprints every audit compares with. Over CUDA IPC the judge
        keeps the set's tensors (views of the evaluator's own memory, opened once): later checks
        and audits name the set by its key instead of sending it again, and still read what is
        in the evaluator's memory now. Host copies are not kept (they would never change)."""
        key, ref, inputs = tuple(msg["ref_key"]), msg.get("ref"), msg.get("inputs")
        self.prints.remember(Fingerprints.read({**self.prints.parts(key, ref, inputs),
                                                **self.prints.of_set(key, ref, inputs)}))
        if all(self._holdable(t) for t in [*(inputs or []), *([ref] if ref is not None else [])]):
            held_ref, held_inputs = self.held.get(key, (None, None))
            self.held[key] = (ref if ref is not None else held_ref, inputs if inputs else held_inputs)
        return {"ok": True}

    @staticmethod
    def _holdable(t: torch.Tensor) -> bool:
        return t.is_cuda  # a view of the evaluator's memory (a host copy would never change)

    def arena(self, msg: dict) -> dict:
        """The evaluator's new arena: kept (the one before is let go, so its memory can be freed);
        later messages name buffers inside it by offset. Only over CUDA IPC: a host copy would
        never change."""
        t = msg["tensor"]
        if not self._holdable(t) or t.dtype != torch.uint8 or t.dim() != 1:
            raise ValueError("an arena must be a 1-D uint8 CUDA buffer shared over IPC")
        self.arenas = {int(msg["generation"]): t}
        return {"ok": True}

    def stand(self, msg: dict) -> dict:
        """Standing guarded copies of a held set's inputs (handover.Handover._stand): kept, and
        named by the set's key in later evidence; restored by the judge after any launch that
        changed them. Only over CUDA IPC, for a set the judge holds."""
        key, bufs = tuple(msg["ref_key"]), msg.get("bufs") or []
        held = self.held.get(key, (None, None))[1]
        if not held or len(bufs) != len(held) or not all(
                self._holdable(b) and b.dtype == torch.uint8 and b.dim() == 1 for b in bufs):
            raise ValueError("standing copies need a held set and one CUDA byte buffer per input")
        self.standing[key] = bufs
        return {"ok": True}

    def forget(self, msg: dict) -> dict:
        """The evaluator dropped a cached set: its views are let go (so its memory can be freed)."""
        key = tuple(msg["ref_key"])
        self.held.pop(key, None)
        self.standing.pop(key, None)
        self.source_hash = {k: v for k, v in self.source_hash.items() if k[0] != key}
        return {"ok": True}

    def _held(self, key: tuple, ref, inputs) -> tuple:
        """A message's set: as sent, or the views kept since it was registered."""
        if ref is None and inputs is None:
            if key not in self.held:
                # an honest evaluator names only sets it registered and has not dropped: a set
                # let go by a forged `forget` (to fail the candidates after this one) ends here,
                # and the processes are replaced
                self.tampered = self.tampered or f"input set {key[1]} was named after it was let go"
                raise ValueError(self.tampered)
            return self.held[key]
        return ref, inputs

    def audit(self, msg: dict) -> dict:
        """After each request: every cached set it used must be as it was made (no candidate
        wrote into the evaluator's cache for the candidates after it)."""
        pending = self._audit_prepare(msg.get("sets") or [])
        return pending.finish(read_parts(pending.parts))

    def _audit_prepare(self, sets: list) -> "Pending":
        self.audited = True
        prints: dict = {}
        named: dict = {}  # a set print's key -> (the set's key, ref, inputs)
        for key, ref, inputs in sets:
            ref, inputs = self._held(tuple(key), ref, inputs)
            for k, fp in self.prints.of_set(tuple(key), ref, inputs).items():
                prints[k], named[k] = fp, (tuple(key), ref, inputs)
        keys = list(prints)

        def finish(read: list) -> dict:
            for k, (fp,) in zip(keys, read):
                if not self.prints.same(k, fp):
                    self.tampered = (f"the cached {self.prints.changed_part(*named[k])} of input set {k[1]} "
                                     "changed after it was made (a write into memory the kernel does not own)")
                    return {"ok": False, "reason": self.tampered}
            return {"ok": True}

        return Pending([prints[k] for k in keys], finish)

    # -- one piece of evidence ---------------------------------------------------------------------
    def judge(self, ev: dict) -> dict:
        """Check one verified launch, or a sample of timed calls; returns {ok, reason, rel, max}."""
        return self._judge_all([ev])[0]

    def batch(self, msg: dict) -> dict:
        """Several checks in one message (a candidate's verified launches), each judged as if
        sent alone; the outcome of each, in order."""
        results = self._judge_all(msg.get("items") or [])
        return {"ok": all(r["ok"] for r in results), "results": results}

    def _judge_all(self, evs: list) -> list:
        """Each piece of evidence judged in two phases: every statistic and flag they need is
        computed on the device first, then all are read back in one transfer and interpreted.
        Why: the judge's host time per torch operation, and a wait for the device at each read,
        were most of what verification cost a candidate; one read lets the host queue the next
        check while the device runs the last."""
        pending = []
        for ev in evs:
            try:
                p = self._prepare(ev)
            except Exception as exc:  # malformed evidence is a failed check, never a crash of the judge
                p = _unreadable(exc)
            try:  # the cached sets used so far, audited in the same message (whatever the check found)
                audit = self._audit_prepare(ev["audit"]) if isinstance(ev, dict) and "audit" in ev else None
            except Exception as exc:
                audit = _unreadable(exc)
            pending.append((p, audit))
        todo = [x for p, audit in pending for x in (p, audit) if isinstance(x, Pending)]
        read = iter(split(read_parts([t for x in todo for t in x.parts]), [len(x.parts) for x in todo]))
        results = []
        for ev, (p, audit) in zip(evs, pending):
            got_p = next(read) if isinstance(p, Pending) else None  # both taken first: the
            got_audit = next(read) if isinstance(audit, Pending) else None  # next item's stay aligned
            try:
                result = p.finish(got_p) if isinstance(p, Pending) else p
                checked = audit.finish(got_audit) if isinstance(audit, Pending) else audit
                if checked is not None and result["ok"] and not checked["ok"]:
                    result = self._fail(checked["reason"])
            except Exception as exc:
                result = _unreadable(exc)
            self.items.append({"kind": ev.get("kind") if isinstance(ev, dict) else "?",
                               "row": ev.get("row") if isinstance(ev, dict) else None, **result})
            results.append(result)
        return results

    def _prepare(self, ev: dict):
        """A failed check's result at once (malformed or forged evidence), or the device work of
        the check and how to read it (Pending)."""
        what = str(ev.get("what", ""))
        if int(ev["guard"]) != GUARD_ELEMENTS:
            return self._fail(_at(what, "output buffers without the harness's guard zones"))
        if ev.get("seal"):  # the evaluator's own seal saw its harness replaced
            self.tampered = str(ev["seal"])
            return self._fail(_short(str(ev["seal"])))
        refs = []  # per input set the calls ran on (timed calls alternate between two)
        for entry in ev.get("sets") or [{"ref": ev.get("ref"), "ref_key": ev.get("ref_key")}]:
            ref = entry.get("ref")
            if ref is None:  # the cached set's reference, named by its key
                ref = self._held(tuple(entry["ref_key"]), None, None)[0]
                if ref is None:
                    return self._fail(_at(what, "no reference for the named input set"))
            refs.append(ref)
        outs = [(o[0], o[1], int(o[2]) if len(o) > 2 else 0) for o in ev["outs"]]
        if not outs:
            return self._fail(_at(what, "no output to check"))
        if any(not 0 <= which < len(refs) for _, _, which in outs):
            return self._fail(_at(what, "an output names an input set without a reference"))
        if ev.get("kind") == "timed" and self._verified() < NEEDED["evaluate"]["verify"] \
                and ev.get("row") is None:
            # an honest evaluator times a candidate only after its three verified input sets
            self.tampered = "timed before it was verified"
        tol = tolerance_for(outs[0][0].dtype, ev.get("reduction"))
        shape = tuple(ev["shape"])
        stride = tuple(ev.get("stride") or dense_strides(shape))
        if not layout_ok(shape, stride) or any(buf.numel() != span(shape, stride) + 2 * GUARD_ELEMENTS
                                               for buf, _, _ in outs):
            self.tampered = f"an output's layout does not match its buffer (shape {shape}, strides {stride})"
            return self._fail(_at(what, self.tampered))
        views = [(output_view(buf, shape, stride), call, which) for buf, call, which in outs]
        by_set: dict = {}  # input set -> its outputs' positions, the first checked in full
        for i, (_, _, which) in enumerate(views):
            by_set.setdefault(which, []).append(i)
        # Timed calls of one set share their inputs: an output bit for bit equal to that set's
        # first, which passed, passes (one comparison instead of a check; NaN never compares
        # equal, so a skipped call is checked in full). A kernel whose calls differ (atomics)
        # gets a check per call. On the device: each set's first output's statistics, every
        # buffer's guard zones, whether each output differs from its set's first, and whether
        # each input's guarded bytes differ from what they were copied from.
        firsts = {which: check_stats(views[pos[0]][0], refs[which], tol) for which, pos in by_set.items()}
        stat_sets = [which for which, st in firsts.items() if not isinstance(st, Check)]
        bufs = [buf for buf, _, _ in outs]
        compared = [i for pos in by_set.values() for i in pos[1:]]  # compared with their set's first
        differ = [differs([bufs[i] for i in pos], [views[i] for i in pos]) for pos in by_set.values() if len(pos) > 1]
        entries = ev.get("inputs", [])
        inputs = [self._before(entry) for entry in entries]
        middles = [self._middle_changed(entry, before) for entry, before in zip(entries, inputs)]
        parts = [guard_zone_tensor(bufs), torch.cat(differ) if differ else torch.zeros(0),
                 inputs_changed(inputs, middles)] + [firsts[which] for which in stat_sets]

        def finish(read: list) -> dict:
            touched, differ_flags, inputs_flags, *stats = read
            for which, values in zip(stat_sets, stats):
                firsts[which] = check_verdict(views[by_set[which][0]][0], refs[which], tol, values)
            same = {i for i, d in zip(compared, differ_flags) if not d and firsts[views[i][2]].ok}
            try:
                return self._verdict(ev, what, views, refs, tol, firsts, by_set, same,
                                     [int(c) for c in touched], [bool(c) for c in inputs_flags], inputs)
            finally:  # a standing copy a candidate changed: told first (the damage is read from
                # it), restored before the judge answers
                for entry, before, changed in zip(entries, inputs, inputs_flags):
                    if changed and entry[0] is None:
                        restore(*before)

        return Pending(parts, finish)

    def _verdict(self, ev, what, views, refs, tol, firsts, by_set, same, touched, inputs_changed_, inputs) -> dict:
        rel = worst = 0.0
        wrong = ""  # the first output that fails; what outranks it is checked after
        firsts_at = {pos[0] for pos in by_set.values()}
        SECTIONS.mark("outputs")
        for i, (out, call, which) in enumerate(views):
            where = what if call is None else _at(what, f"timed call {call} of {ev.get('calls')}")
            result = firsts[which] if i in firsts_at or i in same else check(out, refs[which], tol)
            rel, worst = max(rel, result.rel_error), max(worst, result.max_error)
            if not result.ok:
                wrong = _at(where, result.reason)
            elif touched[i]:
                wrong = _at(where, f"wrote {touched[i]} elements outside its output buffer")
            if wrong:
                break
        # what outranks the output's check (it explains it): no Triton launch, inputs rewritten
        # (a reference computed from them would agree) or their canary bands written
        SECTIONS.mark("outputs")
        launches = ev.get("launches")
        vendor = self.vendor or ev.get("row") in self.vendor_rows
        if launches is not None and int(launches) == 0 and not vendor:
            return self._fail(_at(what, NO_LAUNCH), rel, worst)
        if int(ev.get("stray_launches") or 0):
            return self._fail(_at(what, STRAY_LAUNCH), rel, worst)
        if ev.get("library_calls") and not vendor:
            ops = ", ".join(str(op) for op in ev["library_calls"])
            return self._fail(_at(what, LIBRARY_CALL.format(ops=ops)), rel, worst)
        for i, (buf_now, buf_before, lo, hi) in enumerate(inputs):
            if not inputs_changed_[i]:  # bit for bit as before the launch, canary bands included
                continue
            why = input_damage(i, buf_now, buf_before, int(lo), int(hi)) or \
                f"wrote into the pristine copy kept beside its input #{i} (memory it does not own)"
            SECTIONS.mark("inputs")
            return self._fail(_at(what, why), rel, worst)
        if wrong:
            return self._fail(wrong, rel, worst)
        return {"ok": True, "reason": "", "rel": rel, "max": worst}

    def _before(self, entry: list) -> tuple:
        """(guarded bytes, what they must equal, lo, hi) of one input: its pristine copy, or
        (pristine None) the bytes of the cached set's tensor the judge holds, named by the set's
        key and the input's place in it (its fingerprints are audited after every request)."""
        now, pristine, lo, hi = entry[:4]
        if pristine is not None:
            return now, pristine, lo, hi
        if now is None:  # a standing copy, held here
            bufs = self.standing.get(tuple(entry[4])) if len(entry) >= 6 else None
            if not bufs or not 0 <= int(entry[5]) < len(bufs):
                raise ValueError("an input names a standing copy the judge does not hold")
            now = bufs[int(entry[5])]
        if len(entry) < 6:
            raise ValueError("an input without its pristine copy or its cached set")
        held = self._held(tuple(entry[4]), None, None)[1] or []
        i = int(entry[5])
        if not 0 <= i < len(held):
            raise ValueError(f"the cached set has no input #{i}")
        source = as_bytes(held[i])
        if source.numel() != int(hi) - int(lo) or not 0 <= int(lo) <= int(hi) <= now.numel():
            raise ValueError(f"input #{i}'s guarded copy does not match its cached tensor's size")
        return now, source, lo, hi

    def _middle_changed(self, entry: list, before: tuple):
        """Whether an input's guarded copy differs from the cached tensor it was copied from, by
        the word hash (tuner/measure/check_kernel.py): the copy is read, and the source's hash was
        taken once, at its first check; None where the hash does not apply (a pristine copy was
        sent, no GPU, words of another size): then the bytes are compared."""
        now, source, lo, hi = before
        if entry[1] is not None or not (now.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
            return None
        words = words_of(now[int(lo):int(hi)])
        key = (tuple(entry[4]), int(entry[5]))
        taken = self.source_hash.get(key)
        if taken is None:
            src_words = words_of(source)
            if src_words.dtype != words.dtype:
                return None
            taken = self.source_hash[key] = (words.dtype, self.prints.word_hash(src_words))
        if taken[0] != words.dtype:
            return None
        return self.prints.word_hash(words) != taken[1]

    def _verified(self) -> int:
        return sum(1 for it in self.items if it["kind"] == "verify" and it["ok"])

    @staticmethod
    def _fail(reason: str, rel: float = float("inf"), worst: float = float("inf")) -> dict:
        return {"ok": False, "reason": reason, "rel": rel, "max": worst}

    # -- the verdict on one request ----------------------------------------------------------------
    def verdict(self, op: str, claimed: str, rows: int = 0) -> dict:
        """What the parent records: for `evaluate`, the status if the evaluator's claim does not
        stand; for `retime`, the rows whose timed calls are wrong or unchecked."""
        items, tampered = self.items, self.tampered
        if not self.audited and op in NEEDED_AUDIT and claimed == "ok":
            tampered = tampered or "the cached input sets were not audited after the request"
        failed = next((it for it in items if not it["ok"]), None)
        if failed is None and tampered:
            failed = {"ok": False, "reason": tampered}
        out = {"tampered": tampered, "checks": len(items)}
        if op == "retime":
            bad = {}
            for row in range(rows):
                mine = [it for it in items if it.get("row") == row]
                wrong = next((it for it in mine if not it["ok"]), None)
                if wrong or not mine:
                    bad[row] = wrong["reason"] if wrong else "its timed calls were not checked"
            if claimed == "ok" and bad and any(r == "its timed calls were not checked" for r in bad.values()):
                out["tampered"] = tampered or "re-timing rows without evidence"
            if out["tampered"]:
                bad = {row: bad.get(row) or f"harness tampered with: {out['tampered']}" for row in range(rows)}
            return dict(out, rows_incorrect=bad)
        if op != "evaluate" or claimed != "ok":
            if failed is not None and claimed in ("ok", "incorrect"):
                return dict(out, status="incorrect", error=_tampered(failed["reason"], tampered))
            return out  # the evaluator's own status stands (compile_error, a ceiling, ...)
        if failed is not None:  # an honest evaluator stops at the first failed check
            tampered = tampered or "the evaluation process claimed ok after a failed check"
            return dict(out, status="incorrect", error=_tampered(failed["reason"], tampered),
                        tampered=tampered)
        for kind, n in NEEDED[op].items():
            have = sum(1 for it in items if it["kind"] == kind)
            if have < n:
                return dict(out, status="incorrect",
                            error=f"the harness was bypassed: {have} of {n} {kind} checks reached the "
                                  "judge; the evaluation process is replaced",
                            tampered=tampered or "harness bypassed")
        return dict(out, status="ok")


def _unreadable(exc: BaseException) -> dict:
    return {"ok": False, "reason": f"the judge could not read the evidence: "
                                   f"{type(exc).__name__}: {_short(str(exc), 500)}",
            "rel": float("inf"), "max": float("inf")}
