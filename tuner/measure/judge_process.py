"""The judge's process: the parent's channel and the evaluator's, and the loop that serves them.
The verdicts themselves are tuner/measure/judge.py's (its docstring says what the judge holds
against a candidate, and why it is a process of its own); this module only reads messages, hands
them to the Judge and sends its answers. Like the Judge, it imports no kernel code.

Protocol: the parent writes pickles to the judge's stdin and reads its replies on stdout
(tuner.execution.worker.send / recv): {"op": "begin"}, then {"op": "verdict", ...} after the
evaluator's reply, and {"op": "exit"}. The evaluator's messages arrive on the file descriptor
KERNELEVOLVE_JUDGE_IN names and are answered on KERNELEVOLVE_JUDGE_OUT.
"""
from __future__ import annotations

import os
import select
import sys
import time
import traceback

from kernelevolve.tuner.measure import evidence
from kernelevolve.tuner.measure.judge import SECTIONS, Judge, _short


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
            t0 = time.perf_counter()
            t_decoded = t_checked = t0
            msg = None
            SECTIONS.mark("idle")
            try:
                data = evidence.load(raw)
                msg = evidence.decode_all(data, arenas=judge.arenas)
                SECTIONS.mark("decode")
                t_decoded = time.perf_counter()
                reply = _from_evaluator(judge, msg)
                t_checked = time.perf_counter()
            except Exception as exc:
                why = f"{type(exc).__name__}: {_short(str(exc), 300)}"
                if isinstance(data, dict) and data.get("op") in ("probe", "arena", "standing"):
                    # no CUDA IPC (host copies), or no arena (a handle per buffer): not evidence
                    reply = {"ok": False, "reason": f"{data.get('op')} failed: {why}"}
                else:
                    judge.items.append({"kind": "?", "row": None, "ok": False,
                                        "reason": f"unreadable evidence: {why}"})
                    reply = {"ok": False, "reason": "unreadable evidence"}
            data = None
            op = msg.get("op") or msg.get("kind") if isinstance(msg, dict) else "?"
            msg = None  # drop every received CUDA buffer before answering: the sender may free it
            SECTIONS.mark("release")
            SECTIONS.flush(op=op)
            t_done = time.perf_counter()
            # where the judge's time went (the evaluator reports it as verification's cost)
            reply["t_decode"], reply["t_check"] = t_decoded - t0, max(0.0, t_checked - t_decoded)
            reply["t_release"] = t_done - max(t_checked, t_decoded)
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
                judge.vendor_rows = {int(r) for r in req.get("vendor_rows") or ()}
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
    op = msg.get("op")
    if op == "batch" and not isinstance(msg.get("items"), list):
        raise ValueError("a batch without its items")
    handler = {"register": judge.register, "audit": judge.audit, "forget": judge.forget,
               "arena": judge.arena, "batch": judge.batch, "standing": judge.stand}.get(op, judge.judge)
    reply = handler(msg)
    SECTIONS.mark(op if op in ("register", "audit", "forget", "arena", "batch", "standing") else "check_rest")
    return reply


def recv_bytes(fh) -> bytes:
    from kernelevolve.tuner.execution.worker import recv_bytes as frame

    return frame(fh)


if __name__ == "__main__":
    serve()
