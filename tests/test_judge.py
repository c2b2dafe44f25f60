"""The judge and what feeds it, in-process: timed calls' buffers, the plain-data wire, the verdict."""
import os
import pickle
import subprocess
import sys

import pytest
import torch

from kernelevolve.tuner.measure import evidence, guards, launch_watch
from kernelevolve.tuner.measure.clocks import time_wall
from kernelevolve.tuner.measure.judge import Judge
from kernelevolve.tuner.measure.timed_outputs import GUARD_ELEMENTS, TimedOutputs, guard_zone_writes, guarded_output

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_timed_call_writes_a_buffer_that_holds_nan_or_the_other_sets_output():
    seen = []  # per call: (its input set, what its buffer held when it began)

    def launch(out, which):
        held = "nan" if bool(torch.isnan(out).all()) else int(out.reshape(-1)[0]) // 1000
        seen.append((which, held))
        out.fill_(1000 * which + len(seen))  # each call writes its set and its number

    t = TimedOutputs(launch, torch.empty(5, 3), samples=4)
    fn, before = t.loop()
    time_wall(fn, reps=30, before=before)
    fn, before = t.loop()  # a second loop (the re-timing's rounds) continues the same sample
    time_wall(fn, reps=30, before=before)
    samples = t.samples()
    assert t.total_calls() == 60 and len(samples) == 4
    # every timed call (each loop's first, warm-up call is not timed) began on a buffer that a
    # skipped call would leave wrong: never written, or written by the other input set
    timed = seen[1:31] + seen[32:]
    assert len(timed) == 60 and all(held in ("nan", 1 - which) for which, held in timed)
    assert {which for which, _ in timed} == {0, 1}  # both sets are timed
    calls = [call for _, call, _ in samples]
    assert len(set(calls)) == 4 and all(1 <= c <= 60 for c in calls)
    for buf, call, which in samples:  # the kept buffer holds what that timed call wrote, guards intact
        out = buf[GUARD_ELEMENTS:GUARD_ELEMENTS + 15]
        call_index = call if call <= 30 else call + 1  # + the second loop's warm-up call
        assert torch.all(out == float(1000 * which + call_index + 1)) and guard_zone_writes(buf) == 0


def test_the_sample_is_not_always_the_same_calls():
    picks = set()
    for _ in range(6):
        t = TimedOutputs(lambda out, which: out.zero_(), torch.empty(4), samples=2)
        fn, before = t.loop()
        time_wall(fn, reps=40, before=before)
        picks.add(tuple(sorted(c for _, c, _ in t.samples())))
    assert len(picks) > 1  # drawn from the OS's randomness after each call


def test_the_wire_carries_data_and_never_code():
    for t in (torch.randn(3, 4, dtype=torch.float16), torch.arange(7), torch.randn(4, 6).t(),
              torch.empty(0, 3), torch.ones(5) > 0):
        msg = pickle.dumps(evidence.encode_all({"x": [t, 2]}, ipc=False))
        got = evidence.decode_all(evidence.load(msg))["x"][0]
        assert got.dtype == t.dtype and got.shape == t.shape and torch.equal(got, t)
    with pytest.raises(pickle.UnpicklingError):
        evidence.load(pickle.dumps(os.system))  # a global: what a pickle runs code with
    with pytest.raises(pickle.UnpicklingError):
        evidence.load(pickle.dumps(torch.ones(2)))  # a raw torch pickle names globals too


def _evidence(out_value=2.0, kind="verify", rewrite=False):
    x = torch.randn(64)
    g = guards.guard_inputs((x,))
    buf, out = guarded_output(x)
    out.copy_(x * out_value)
    if rewrite:
        g.inputs[0][3] = 0.0
    return {"kind": kind, "what": "", "row": None, "guard": GUARD_ELEMENTS, "outs": [[buf, None]],
            "shape": [64], "calls": None, "ref": (2 * x).double(), "reduction": None,
            "launches": 1, "inputs": [[gt.buf, gt.pristine_buf, gt.lo, gt.hi] for _, gt in g.guarded],
            "seal": ""}


def test_the_judge_checks_outputs_inputs_and_launches():
    j = Judge()
    assert j.judge(_evidence())["ok"]
    assert "relative error" in j.judge(_evidence(out_value=1.0))["reason"]
    assert "rewrote its input #0" in j.judge(_evidence(rewrite=True))["reason"]
    ev = _evidence()
    ev["outs"][0][0][GUARD_ELEMENTS - 1] = 0.0  # one element before the output
    assert "outside its output buffer" in j.judge(ev)["reason"]
    ev = _evidence()
    ev["launches"] = 0
    assert "launched no Triton kernel" in j.judge(ev)["reason"]
    ev = _evidence()  # a right output, from a kernel sent to a stream of its own
    ev["stray_launches"] = 1
    assert j.judge(ev)["reason"].startswith("launched a Triton kernel on a stream other than")
    assert not j.tampered


class _Launch:
    """What Triton's launch-enter hook is given (triton 3.x: a LazyDict, its fields in `.data`)."""

    def __init__(self, stream):
        self.data = {"name": "k", "function": None, "stream": stream}


def _hook_chain():
    import triton

    chain = getattr(getattr(getattr(triton, "knobs", None), "runtime", None), "launch_enter_hook", None)
    if not hasattr(chain, "calls"):
        pytest.skip("this Triton has no launch-hook chain to call as a launch would")
    return chain


def test_the_launch_hook_counts_launches_sent_to_another_stream_or_from_another_thread():
    chain = _hook_chain()
    import threading

    with launch_watch.count_launches(interpreter=False, expected_stream=7, watch=True) as seen:
        chain(_Launch(7))
        chain(_Launch(9))  # a side stream
        chain(None)  # no metadata: counted, its stream unknown
        deferred = threading.Thread(target=chain, args=(_Launch(7),))  # a launch handed to a thread
        deferred.start()
        deferred.join()
    assert (seen.n, seen.stray) == (4, 2)
    with launch_watch.count_launches(interpreter=False, expected_stream=7) as unwatched:  # counted, not judged
        chain(_Launch(9))
    assert (unwatched.n, unwatched.stray) == (1, 0)


def test_the_watch_names_the_library_operators_a_call_runs_and_nothing_else():
    """torch.matmul, F.linear, einsum, softmax and layer_norm reach the library's whole-operator
    kernels (launch_watch.LIBRARY_OPS), whichever function called them; allocation, copies, views,
    elementwise arithmetic and a cumulative sum (what a launcher prepares with) do not count."""
    import torch.nn.functional as F

    a, b = torch.randn(8, 4), torch.randn(4, 6)
    with launch_watch.count_launches(interpreter=True, watch=True) as seen:
        out = torch.empty(8, 6)
        torch.cumsum(torch.ones(5), 0)
        F.pad(a, (0, 4)).contiguous().t().float().mul_(2).add_(1)
        torch.matmul(a, b, out=out)
        F.linear(a, b.t())
        torch.einsum("mk,kn->mn", a, b)
        torch.softmax(out, dim=-1)
        F.layer_norm(out, (6,))
    assert {"aten.mm", "aten.bmm", "aten._softmax", "aten.native_layer_norm"} <= seen.library
    assert seen.library <= launch_watch.LIBRARY_OPS
    with launch_watch.count_launches(interpreter=True, watch=True) as prep:
        F.pad(a, (0, 4)).contiguous().t().float().mul_(2).add_(1)
        torch.cumsum(torch.ones(5), 0)
    with launch_watch.count_launches(interpreter=True) as unwatched:  # counted, not judged
        torch.mm(a, b)
    assert prep.library == set() and unwatched.library == set()
    assert torch.mm(a, b).shape == (8, 6)  # the mode is gone after its block


def test_a_library_call_fails_a_candidate_unless_the_parent_named_it_the_vendor_config():
    j = Judge()
    out = j.judge(_evidence() | {"library_calls": ["aten.mm"]})
    assert not out["ok"] and "computed with the library's kernels through torch (aten.mm)" in out["reason"]
    j.vendor = True  # the parent's word (tuner/measure/vendor.py), never the evaluator's
    assert j.judge(_evidence() | {"library_calls": ["aten.mm"]})["ok"]


def test_timed_calls_watch_their_launches_stream_at_random_and_every_captured_one(monkeypatch):
    """The eager timed calls' launches are watched at random (WATCH_SHARE), each watch opened
    ahead of its call and closed at the next (never inside the timed call); under capture every
    call's launches. Streams here are stand-ins: the hook is called as a launch would call it."""
    from kernelevolve.tuner.measure import timed_outputs

    chain = _hook_chain()
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: type("S", (), {"cuda_stream": 7})())
    for side, off in ((7, False), (9, True)):
        t = TimedOutputs(lambda out, which: (out.zero_(), chain(_Launch(side))), torch.empty(4), samples=2,
                         watch=True)
        fn, before = t.loop()
        time_wall(fn, reps=200, before=before)
        t.end_loop()
        assert 20 < t.watched < 100  # about a quarter of 200
        assert t.stray == (t.watched if off else 0)
        assert chain.calls == [c for c in chain.calls if not isinstance(c, launch_watch.LaunchCount)]
    # captured calls (cudagraph clock): every one watched
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    t = TimedOutputs(lambda out, which: chain(_Launch(9)), torch.empty(4), samples=2, graph=True, watch=True)
    fn, _ = t.loop()
    for _ in range(5):
        fn()
    assert (t.watched, t.stray) == (5, 5)
    assert timed_outputs.WATCH_SHARE == 0.25


def test_a_cached_set_changed_after_it_was_made_is_tampering():
    j = Judge()
    ref, table = torch.randn(50).double(), torch.randn(300_000)
    j.register({"ref_key": ["s", 0, 1], "ref": ref, "inputs": [table]})
    assert j.audit({"sets": [[["s", 0, 1], ref.clone(), [table.clone()]]]})["ok"] and not j.tampered
    ref[7] += 1e-9  # any change of a reference
    bad = j.audit({"sets": [[["s", 0, 1], ref, [table]]]})
    assert not bad["ok"] and "cached reference of input set 0" in j.tampered
    j.tampered = ""
    ref[7] -= 1e-9
    table[1000:1100] = 0.0  # a stray write into a region of a cached input
    assert "input #0" in j.audit({"sets": [[["s", 0, 1], ref, [table]]]})["reason"]
    v = j.verdict("evaluate", "ok")
    assert v["status"] == "incorrect" and "input #0" in v["error"] and v["tampered"]


def test_an_ok_claim_needs_its_evidence():
    j = Judge()
    j.audited = True
    j.judge(_evidence())
    j.judge(_evidence(kind="timed"))  # timed after one verified set of three
    v = j.verdict("evaluate", "ok")
    assert v["status"] == "incorrect" and v["tampered"]
    j.items, j.tampered, j.audited = [], "", True
    for _ in range(3):
        j.judge(_evidence())
    assert j.verdict("evaluate", "ok")["status"] == "incorrect"  # no timed calls checked
    j.judge(_evidence(kind="timed"))
    assert j.verdict("evaluate", "ok") == {"status": "ok", "tampered": "", "checks": 4}
    j.audited = False  # the evaluator skipped its audit of the cache
    assert j.verdict("evaluate", "ok")["tampered"]


def test_the_judge_imports_no_kernel_code():
    code = ("import sys, tuner.measure.judge, tuner.measure.judge_process; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kernels', 'search_spaces', 'triton')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT), check=True).stdout
    assert out.strip() == "[]"


def test_a_registered_set_is_named_by_key_and_still_audited(monkeypatch):
    """Over CUDA IPC the judge keeps a registered set's views: checks and audits then name it by
    key. Here CPU tensors stand in for those views (the judge reads the same memory either way)."""
    monkeypatch.setattr(Judge, "_holdable", staticmethod(lambda t: True))
    j = Judge()
    ev = _evidence()
    x = ev["inputs"][0][1]  # stands in for the cached input
    ref = ev["ref"]
    key = ["study", 0, 1]
    assert j.register({"ref_key": key, "ref": ref, "inputs": [x]})["ok"]
    named = dict(ev, ref=None, ref_key=key)
    assert j.judge(named)["ok"]  # the held reference was used
    assert j.audit({"sets": [[key, None, None]]})["ok"]
    ref.mul_(0.5)  # a write into the cached reference (what poison_reference does)
    assert not j.audit({"sets": [[key, None, None]]})["ok"] and "reference" in j.tampered
    j2 = Judge()
    j2.register({"ref_key": key, "ref": ref, "inputs": [x]})
    j2.forget({"ref_key": key})  # a forged forget, to fail the candidates after this one
    assert not j2.judge(dict(ev, ref=None, ref_key=key))["ok"]
    assert "named after it was let go" in j2.tampered  # ... replaces the processes


def test_dropped_input_sets_are_handed_over_once_for_the_judge_to_let_go():
    from kernelevolve.tuner.measure.input_sets import InputSets

    sets = InputSets(budget_bytes=3 * 64 * 4)
    for i in range(5):
        sets.get(("s", i), lambda: torch.zeros(64), lambda inp: inp.double())
    dropped = sets.take_evicted()
    assert dropped and all(len(d) == 3 for d in dropped)  # (study, index, generation)
    assert sets.take_evicted() == []
    sets.clear()
    assert not sets.entries and len(sets.take_evicted()) >= 1


def test_timed_calls_are_checked_against_their_own_sets_reference():
    x, y = torch.randn(64), torch.randn(64)
    gx, gy = guards.guard_inputs((x,)), guards.guard_inputs((y,))
    slots = [guarded_output(x) for _ in range(3)]
    for (buf, out), src in zip(slots, (x, y, x)):
        out.copy_(2 * src)
    ev = {"kind": "timed", "what": "timed calls", "row": 0, "guard": GUARD_ELEMENTS, "shape": [64],
          "outs": [[slots[0][0], 1, 0], [slots[1][0], 2, 1], [slots[2][0], 3, 0]], "calls": 3,
          "sets": [{"ref": (2 * x).double(), "ref_key": None}, {"ref": (2 * y).double(), "ref_key": None}],
          "reduction": None, "launches": None, "seal": "",
          "inputs": [[g.buf, g.pristine_buf, g.lo, g.hi] for gi in (gx, gy) for _, g in gi.guarded]}
    assert Judge().judge(ev)["ok"]
    slots[1][1].copy_(2 * x)  # a skipped call on set 1 leaves set 0's output: wrong for its own set
    bad = Judge().judge(ev)
    assert not bad["ok"] and "timed call 2 of 3" in bad["reason"]


def test_a_write_into_the_pristine_copy_beside_an_input_is_caught():
    ev = _evidence()
    ev["inputs"][0][1][5] ^= 0xFF  # the pristine half's canary band, beside the input's own bytes
    reason = Judge().judge(ev)["reason"]
    assert "pristine copy kept beside its input #0" in reason


def _held_set_evidence(j: Judge, x: torch.Tensor, key=("s", 0, 1)) -> tuple[dict, guards.GuardedInputs]:
    """A verified launch on a copy of cached set `key`, compared with the set the judge holds
    (no pristine copy: what the evaluator sends over CUDA IPC, here with CPU tensors)."""
    j.held[key] = ((2 * x).double(), [x])
    g = guards.guard_inputs((x,), keep_pristine=False)
    buf, out = guarded_output(x)
    out.copy_(2 * x)
    ev = {"kind": "verify", "what": "", "row": None, "guard": GUARD_ELEMENTS, "outs": [[buf, None]],
          "shape": list(x.shape), "calls": None, "sets": [{"ref": None, "ref_key": list(key)}],
          "reduction": None, "launches": 1, "seal": "",
          "inputs": [[gt.buf, gt.pristine_buf, gt.lo, gt.hi, list(key), i] for i, gt in g.guarded]}
    return ev, g


def test_inputs_of_a_held_set_are_compared_with_the_set_itself():
    x = torch.randn(1001)  # 4004 bytes: compared as 4-byte words
    j = Judge()
    ev, g = _held_set_evidence(j, x)
    assert g.guarded[0][1].pristine_buf is None and g.guarded[0][1].pristine is x  # no pristine copy made
    assert j.judge(ev)["ok"]
    if os.environ.get("TRITON_INTERPRET") == "1":  # CPU tensors are hashed under the interpreter only
        # the copy was compared by its word hash with the source's, taken once
        assert list(j.source_hash) == [(("s", 0, 1), 0)] and j.source_hash[(("s", 0, 1), 0)][0] == torch.int32
    g.inputs[0][500] = x[500] + 1  # the kernel rewrote its input
    assert "rewrote its input #0" in _reason(j, ev)
    g.inputs[0][500] = x[500]
    assert j.judge(ev)["ok"]
    g.guarded[0][1].buf[3] ^= 0xFF  # a write into the canary band before the input
    assert "canary band around its input #0" in _reason(j, ev)
    g.guarded[0][1].buf[3] ^= 0xFF
    ev["inputs"][0][5] = 1  # an input the cached set does not have
    assert "the judge could not read the evidence" in _reason(j, ev)


def _reason(j: Judge, ev: dict) -> str:
    res = j.judge(ev)
    assert not res["ok"]
    return res["reason"]


def test_a_strided_input_keeps_its_pristine_copy():
    x = torch.randn(8, 6).t()  # gaps between its elements: its copy cannot be compared with it
    g = guards.guard_inputs((x,), keep_pristine=False)
    assert g.guarded[0][1].pristine_buf is not None and g.damage() == ""


def test_byte_comparison_in_words_finds_a_single_changed_byte():
    for n in (4096, 4098, 4099):  # 8-byte words, 2-byte remainders (4-byte fails too), odd
        a = torch.randint(0, 255, (n,), dtype=torch.uint8)
        b = a.clone()
        assert not bool(guards.bytes_differ(a, b))
        b[n - 1] ^= 1
        assert bool(guards.bytes_differ(a, b))
        assert bool(guards.bytes_differ(a[1:], b[1:]))  # a misaligned start: compared as bytes


def test_guard_zones_of_slots_of_one_allocation_are_counted_per_buffer():
    from kernelevolve.tuner.measure.timed_outputs import guard_zone_counts, guarded_outputs

    slots = [buf for buf, _ in guarded_outputs(torch.empty(10), 5)]
    slots[3][-1] = 1.0  # past slot 3's output, in its trailing zone
    slots[1][:3] = 2.0  # before slot 1's output, in its leading zone
    assert guard_zone_counts([slots[4], slots[3], slots[1]]) == [0, 1, 3]
    assert guard_zone_counts([slots[3].clone(), slots[1]]) == [1, 3]  # not one allocation: one by one


def test_a_standing_copy_a_candidate_changed_is_restored_by_the_judge():
    """Standing copies are kept across candidates and named by their set's key: a candidate that
    rewrites one fails, and the judge restores it before answering, so the next one is judged on
    the copy as it was (whatever the evaluation process does)."""
    x = torch.randn(4096)
    key = ("s", 0, 1)
    j = Judge()
    j.held[key] = ((2 * x).double(), [x])
    g = guards.guard_inputs((x,), keep_pristine=False)
    j.standing[key] = [g.guarded[0][1].buf]  # what the `standing` message hands over (CUDA only)

    def evidence():
        buf, out = guarded_output(x)
        out.copy_(2 * x)
        return {"kind": "verify", "what": "", "row": None, "guard": GUARD_ELEMENTS, "outs": [[buf, None]],
                "shape": [4096], "calls": None, "sets": [{"ref": None, "ref_key": list(key)}],
                "reduction": None, "launches": 1, "seal": "",
                "inputs": [[None, None, gt.lo, gt.hi, list(key), i] for i, gt in g.guarded]}

    assert j.judge(evidence())["ok"]
    g.inputs[0][17] = 0.5 + float(x[17])  # the candidate rewrites its input
    g.guarded[0][1].buf[-1] = 0  # and a canary byte after it
    assert "rewrote its input #0" in _reason(j, evidence())
    assert torch.equal(g.inputs[0], x) and int((g.guarded[0][1].buf[g.guarded[0][1].hi:] != guards.CANARY_BYTE).sum()) == 0
    assert j.judge(evidence())["ok"]  # the next candidate: the copy as it was
    ev = evidence()
    ev["inputs"][0][4] = ["s", 9, 1]  # a standing copy the judge was never given
    assert "could not read the evidence" in _reason(j, ev)
