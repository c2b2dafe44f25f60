"""Where a verified launch's checks spend their time on a GPU, piece by piece (a diagnostic probe,
not a result): the judge's output check, guard zones, input comparison, fingerprints, and the
evaluator's guarded copies, each timed alone in a loop with one synchronisation at the end.

    python3 benchmarks/judge_probe.py --out $OUT/judge_probe.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def per_call_ms(fn, n: int = 30) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    import torch

    from kernelevolve.tuner.measure import guards
    from kernelevolve.tuner.measure.judge import Judge
    from kernelevolve.tuner.measure.timed_outputs import guard_zone_counts, guarded_output, guarded_outputs
    from kernelevolve.tuner.measure.verify import check, tolerance_for

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = "cuda"
    res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    a = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    b = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    ref = (a.double() @ b.double()).float()
    buf, out = guarded_output(ref.to(torch.bfloat16))
    out.copy_(ref)
    tol = tolerance_for(torch.bfloat16, 4096)
    res["check_ms"] = per_call_ms(lambda: check(out, ref, tol))
    res["guard_zone_counts_ms"] = per_call_ms(lambda: guard_zone_counts([buf]))
    slabs = [b_ for b_, _ in guarded_outputs(out, 17)]
    res["guard_zone_counts_17_ms"] = per_call_ms(lambda: guard_zone_counts(slabs))
    res["differs_16_ms"] = per_call_ms(
        lambda: torch.stack([(s != buf).any() for s in slabs[1:]]).tolist())
    g = guards.guard_inputs((a, b))
    res["input_damage_2_ms"] = per_call_ms(
        lambda: [guards.input_damage(i, t.buf, t.pristine_buf, t.lo, t.hi) for i, t in g.guarded])
    j = Judge()
    res["fingerprint_ref_ms"] = per_call_ms(lambda: j.prints.of(ref))
    res["fingerprint_input_ms"] = per_call_ms(lambda: j.prints.of(a, sampled=True))
    res["guard_inputs_2x32MB_ms"] = per_call_ms(lambda: guards.guard_inputs((a, b)))
    res["guarded_output_32MB_ms"] = per_call_ms(lambda: guarded_output(out))
    res["reference_fp64_4096_ms"] = per_call_ms(lambda: (a.double() @ b.double()).float(), n=5)
    res["perturbed_ms"] = per_call_ms(lambda: guards.perturbed((a, b), 3))
    res["sync_ms"] = per_call_ms(lambda: torch.cuda.synchronize(), n=200)
    res["empty_op_ms"] = per_call_ms(lambda: out.add_(0), n=200)
    table = torch.randn(1_000_000, 128, device=dev)
    res["guard_inputs_512MB_ms"] = per_call_ms(lambda: guards.guard_inputs((table,)), n=10)
    gt = guards.guard_inputs((table,))
    res["input_damage_512MB_ms"] = per_call_ms(
        lambda: [guards.input_damage(i, t.buf, t.pristine_buf, t.lo, t.hi) for i, t in gt.guarded], n=10)
    # what the judge runs per input now: one flag on the device, in 8-byte words; with a pristine
    # copy, and against the cached tensor itself (no pristine copy made)
    res["input_changed_512MB_ms"] = per_call_ms(
        lambda: [guards.input_changed(t.buf, t.pristine_buf, t.lo, t.hi).item() for _, t in gt.guarded], n=10)
    res["guard_inputs_512MB_no_pristine_ms"] = per_call_ms(
        lambda: guards.guard_inputs((table,), keep_pristine=False), n=10)
    gs = guards.guard_inputs((table,), keep_pristine=False)
    res["input_changed_512MB_vs_cached_ms"] = per_call_ms(
        lambda: [guards.input_changed(t.buf, guards.as_bytes(t.pristine), t.lo, t.hi).item()
                 for _, t in gs.guarded], n=10)
    # the judge's hash of a guarded copy against its source's (taken once): the copy read only
    words = guards.words_of(gs.guarded[0][1].buf[gs.guarded[0][1].lo:gs.guarded[0][1].hi])
    res["input_hash_512MB_ms"] = per_call_ms(lambda: j.prints.word_hash(words).item(), n=10)
    # the judge's whole handling of one candidate's evidence, in this process (no pipe, no IPC):
    # what its checks cost on their own, against what a sweep's records say they cost
    from kernelevolve.tuner.measure.timed_outputs import GUARD_ELEMENTS

    b2 = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    ref2 = (a.double() @ b2.double()).float()
    g2 = guards.guard_inputs((a, b2))
    verify_ev = {"kind": "verify", "what": "", "row": None, "guard": GUARD_ELEMENTS, "shape": [4096, 4096],
                 "outs": [[buf, None, 0]], "calls": None, "sets": [{"ref": ref, "ref_key": None}],
                 "reduction": 4096, "launches": 1, "seal": "",
                 "inputs": [[t.buf, t.pristine_buf, t.lo, t.hi] for _, t in g.guarded]}
    slots = guarded_outputs(out, 17)
    outs = []
    for i, (sbuf, sout) in enumerate(slots[:16]):
        sout.copy_(ref if i % 2 == 0 else ref2)
        outs.append([sbuf, i + 1, i % 2])
    timed_ev = dict(verify_ev, kind="timed", row=0, outs=outs, calls=16,
                    sets=[{"ref": ref, "ref_key": None}, {"ref": ref2, "ref_key": None}],
                    inputs=verify_ev["inputs"] + [[t.buf, t.pristine_buf, t.lo, t.hi] for _, t in g2.guarded])
    jj = Judge()
    assert jj.judge(verify_ev)["ok"] and jj.judge(timed_ev)["ok"], (jj.judge(verify_ev), jj.judge(timed_ev))
    res["judge_verify_ms"] = per_call_ms(lambda: jj.judge(verify_ev))
    res["judge_timed_16_two_sets_ms"] = per_call_ms(lambda: jj.judge(timed_ev))
    for k in range(3):
        jj.register({"ref_key": ["s", k, 1], "ref": ref, "inputs": [a, b]})
    sets = [[["s", k, 1], ref, [a, b]] for k in range(3)]
    res["judge_audit_3_sets_ms"] = per_call_ms(lambda: jj.audit({"sets": sets}))
    print(json.dumps(res, indent=1))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
