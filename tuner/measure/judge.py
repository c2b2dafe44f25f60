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
    after it) is caught, and the process replaced.
The one check that can be waived: NO_LAUNCH, for the candidate the parent names in its `begin`
message as a built-in kernel's declared vendor config (torch.mm / torch.addmm, timed beside the
Triton candidates so that nothing slower than the vendor library is dispatched). The parent decides
that from its own request (tuner/measure/vendor.py); nothing the evaluator sends can set it, and
every other check stays on for that candidate.
What it cannot hold: a candidate that forges well-formed evidence for itself (hands over outputs
it did not compute with its kernel) from inside its own process. docs/reliability.md says so.

Protocol: the parent writes pickles to the judge's stdin and reads its replies on stdout
(tuner.execution.worker.send / recv): {"op": "begin"}, then {"op": "verdict", ...} after the
evaluator's reply, and {"op": "exit"}. The evaluator's messages arrive on the file descriptor
KERNELEVOLVE_JUDGE_IN names and are answered on KERNELEVOLVE_JUDGE_OUT.
"""
from __future__ import annotations

import os
import secrets
import select
import sys
import traceback

import torch

from kernelevolve.tuner.measure import evidence
from kernelevolve.tuner.measure.guards import NO_LAUNCH, input_damage
from kernelevolve.tuner.measure.timed_outputs import GUARD_ELEMENTS, guard_zone_writes
from kernelevolve.tuner.measure.verify import check, tolerance_for

CHUNK = 1 << 24  # elements fingerprinted at a time (bounds the judge's temporary memory)
SAMPLED = 1 << 16  # positions of an input tensor fingerprinted (references: all of them)
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


class Judge:
    def __init__(self):
        self.secret = secrets.randbits(62)  # the fingerprint weights' seed: never leaves this process
        self.prints: dict = {}  # (study, set, generation, part) -> fingerprint
        self.items: list = []  # this candidate's checks: dicts of kind, row, ok, reason
        self.tampered = ""
        self.audited = False  # the evaluator audited its cached sets after this request
        self.vendor = False  # the parent's word: this request is a built-in's vendor config

    # -- fingerprints ----------------------------------------------------------------------------
    def _fingerprint(self, t: torch.Tensor, sampled: bool = False) -> float:
        """A projection of t's values on pseudo-random weights seeded by the judge's secret: a
        change anywhere changes it, and no one without the secret can change t and keep it.
        `sampled`: of SAMPLED secret positions only (input sets can be GBs, checked after every
        candidate: a stray write changes a region, which a sample of 65536 positions finds
        unless it covers under ~1e-4 of the tensor)."""
        flat = t.detach().reshape(-1)
        if sampled and flat.numel() > SAMPLED:
            g = torch.Generator(device=t.device).manual_seed((self.secret ^ 0x5A5A) % (1 << 63))
            flat = flat[torch.randint(flat.numel(), (SAMPLED,), generator=g, device=t.device)]
        total = torch.zeros((), dtype=torch.float64, device=t.device)
        for i in range(0, flat.numel(), CHUNK):
            part = flat[i:i + CHUNK].to(torch.float64)
            g = torch.Generator(device=t.device).manual_seed((self.secret + i) % (1 << 63))
            w = torch.rand(part.numel(), dtype=torch.float64, device=t.device, generator=g)
            total += (torch.nan_to_num(part, nan=1.5, posinf=2.5, neginf=-2.5) * w).sum()
        return float(total)

    def _prints(self, key: tuple, ref, inputs) -> dict:
        found = {f"in{i}": self._fingerprint(t, sampled=True) for i, t in enumerate(inputs or [])}
        if ref is not None:
            found["ref"] = self._fingerprint(ref)
        return {(*key, part): fp for part, fp in found.items()}

    def register(self, msg: dict) -> dict:
        """A cached input set (and its reference) as the evaluator made it, before any candidate
        launched with it: the fingerprints every audit compares with."""
        for k, fp in self._prints(tuple(msg["ref_key"]), msg.get("ref"), msg.get("inputs")).items():
            self.prints.setdefault(k, fp)
        return {"ok": True}

    def audit(self, msg: dict) -> dict:
        """After each request: every cached set it used must be as it was made (no candidate
        wrote into the evaluator's cache for the candidates after it)."""
        self.audited = True
        for key, ref, inputs in msg.get("sets") or []:
            for k, fp in self._prints(tuple(key), ref, inputs).items():
                first = self.prints.setdefault(k, fp)
                if fp != first:
                    what = "reference" if k[-1] == "ref" else f"input #{k[-1][2:]}"
                    self.tampered = (f"the cached {what} of input set {key[1]} changed after it was "
                                     "made (a write into memory the kernel does not own)")
                    return {"ok": False, "reason": self.tampered}
        return {"ok": True}

    # -- one piece of evidence ---------------------------------------------------------------------
    def judge(self, ev: dict) -> dict:
        """Check one verified launch, or a sample of timed calls; returns {ok, reason, rel, max}."""
        try:
            result = self._judge(ev)
        except Exception as exc:  # malformed evidence is a failed check, never a crash of the judge
            result = {"ok": False, "reason": f"the judge could not read the evidence: "
                                             f"{type(exc).__name__}: {_short(str(exc), 500)}",
                      "rel": float("inf"), "max": float("inf")}
        self.items.append({"kind": ev.get("kind"), "row": ev.get("row"), **result})
        return result

    def _judge(self, ev: dict) -> dict:
        what = str(ev.get("what", ""))
        if int(ev["guard"]) != GUARD_ELEMENTS:
            return self._fail(_at(what, "output buffers without the harness's guard zones"))
        if ev.get("seal"):  # the evaluator's own seal saw its harness replaced
            self.tampered = str(ev["seal"])
            return self._fail(_short(str(ev["seal"])))
        ref, inputs = ev["ref"], ev.get("inputs", [])
        outs = ev["outs"]
        if not outs:
            return self._fail(_at(what, "no output to check"))
        if ev.get("kind") == "timed" and self._verified() < NEEDED["evaluate"]["verify"] \
                and ev.get("row") is None:
            # an honest evaluator times a candidate only after its three verified input sets
            self.tampered = "timed before it was verified"
        tol = tolerance_for(outs[0][0].dtype, ev.get("reduction"))
        rel = worst = 0.0
        wrong = ""  # the first output that fails; what outranks it is checked after
        shape = tuple(ev["shape"])
        for buf, call in outs:
            n = buf.numel() - 2 * GUARD_ELEMENTS
            out = buf[GUARD_ELEMENTS:GUARD_ELEMENTS + n].view(shape)
            where = what if call is None else _at(what, f"timed call {call} of {ev.get('calls')}")
            result = check(out, ref, tol)
            rel, worst = max(rel, result.rel_error), max(worst, result.max_error)
            touched = guard_zone_writes(buf)
            if not result.ok:
                wrong = _at(where, result.reason)
            elif touched:
                wrong = _at(where, f"wrote {touched} elements outside its output buffer")
            if wrong:
                break
        # what outranks the output's check (it explains it): no Triton launch, inputs rewritten
        # (a reference computed from them would agree) or their canary bands written
        launches = ev.get("launches")
        if launches is not None and int(launches) == 0 and not self.vendor:
            return self._fail(_at(what, NO_LAUNCH), rel, worst)
        for i, (buf_now, buf_pristine, lo, hi) in enumerate(inputs):
            why = input_damage(i, buf_now, buf_pristine, int(lo), int(hi))
            if why:
                return self._fail(_at(what, why), rel, worst)
        if wrong:
            return self._fail(wrong, rel, worst)
        return {"ok": True, "reason": "", "rel": rel, "max": worst}

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


def serve() -> None:
    from kernelevolve.tuner.execution.worker import recv, send

    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    parent_in = sys.stdin.buffer
    ev_in = os.fdopen(int(os.environ["KERNELEVOLVE_JUDGE_IN"]), "rb")
    ev_out = os.fdopen(int(os.environ["KERNELEVOLVE_JUDGE_OUT"]), "wb")
    judge = Judge()
    send(proto_out, {"ready": True, "pid": os.getpid()})
    evaluator_open = True
    while True:
        ready, _, _ = select.select([parent_in] + ([ev_in] if evaluator_open else []), [], [])
        if ev_in in ready:
            try:
                raw = recv_bytes(ev_in)
            except EOFError:
                evaluator_open = False
                continue
            data = None
            try:
                data = evidence.load(raw)
                msg = evidence.decode_all(data)
                reply = _from_evaluator(judge, msg)
            except Exception as exc:
                why = f"{type(exc).__name__}: {_short(str(exc), 300)}"
                if isinstance(data, dict) and data.get("op") == "probe":  # no CUDA IPC: host copies
                    reply = {"ok": False, "reason": f"probe failed: {why}"}
                else:
                    judge.items.append({"kind": "?", "row": None, "ok": False,
                                        "reason": f"unreadable evidence: {why}"})
                    reply = {"ok": False, "reason": "unreadable evidence"}
            data = None
            msg = None  # drop every received CUDA buffer before answering: the sender may free it
            send(ev_out, reply)
        if parent_in in ready:
            try:
                req = recv(parent_in)
            except EOFError:
                return
            op = req.get("op")
            if op == "exit":
                return
            if op == "begin":
                judge.items, judge.tampered, judge.audited = [], "", False
                judge.vendor = req.get("vendor") is True  # only the parent writes this channel
                send(proto_out, {"ok": True})
            elif op == "verdict":
                try:
                    send(proto_out, judge.verdict(req.get("request_op", ""), req.get("claimed", ""),
                                                  int(req.get("rows", 0))))
                except Exception:
                    send(proto_out, {"status": "runtime_error", "tampered": "",
                                     "error": "judge failed: " + traceback.format_exc()[-1500:]})
            else:
                send(proto_out, {"error": f"unknown judge op {op!r}"})


def _from_evaluator(judge: Judge, msg: dict) -> dict:
    if msg.get("op") == "probe":  # the evaluator checks that CUDA IPC reaches the judge
        return {"ok": True, "sum": float(msg["tensor"].double().sum())}
    if msg.get("op") == "register":
        return judge.register(msg)
    if msg.get("op") == "audit":
        return judge.audit(msg)
    return judge.judge(msg)


def recv_bytes(fh) -> bytes:
    from kernelevolve.tuner.execution.worker import recv_bytes as frame

    return frame(fh)


if __name__ == "__main__":
    serve()
