"""What a sweep's evaluation processes cost to start, on this machine.

Times, each from its own fresh processes: `import torch, triton`; the same plus a CUDA context;
then N of the engine's evaluation processes (tuner.execution.worker.CandidateWorker, as a trial's
compile slots start them) started at once, each until it says it is ready. The rate of a sweep's
first seconds rests on these: a GPU node starts one evaluation process per compile slot.

    python benchmarks/startup_probe.py --out $OUT/startup.json [--counts 1,16]
    python benchmarks/startup_probe.py --out $OUT/slots.json --compile-slots 16,64
    python benchmarks/startup_probe.py --out $OUT/lane.json --lane $OUT/lane_profile

`--compile-slots`: N of a sweep's compile slots at once instead (as a node's trials start them:
each its own evaluation process, forked by the node's fork server, on GPU i % GPUs, niced), each
compiling one of N distinct configs of a GEMM study into a fresh Triton cache, on described
inputs (meta tensors), the same with each slot describing its GPU as it starts (CUDA initialised,
as every slot did before compiles took the target's profile), and on device inputs
(KERNELEVOLVE_COMPILE_ON); per slot the request's
wall time (the slot's start included) and the compile's own, and the CUDA contexts the slots
hold afterwards (nvidia-smi's compute processes).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _wall(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def _together(n: int, code: str) -> list[float]:
    """n copies of `code` started at once: each one's wall time."""
    def one(_):
        return _wall(code)
    with ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(one, range(n)))


def _workers(n: int, env: dict) -> list[float]:
    """n evaluation processes started at once, each until ready (its probe answered)."""
    from kernelevolve.tuner.execution.worker import CandidateWorker

    def one(_):
        w = CandidateWorker(env=env, cwd=ROOT)
        t0 = time.perf_counter()
        reply = w.request({"op": "probe"}, timeout_s=300)
        took = time.perf_counter() - t0
        w.close()
        if reply.get("status") not in (None, "ok"):
            raise RuntimeError(f"probe failed: {reply}")
        return took
    with ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(one, range(n)))


# A compile slot's start, step by step, in one fresh process: each step's seconds and whether the
# GPU's primary CUDA context is active after it (the driver API's cuDevicePrimaryCtxGetState)
STEPS = r"""
import ctypes, json, sys, time
t = time.perf_counter()
out = []
cuda = ctypes.CDLL("libcuda.so.1")
def ctx():
    flags, active = ctypes.c_uint(), ctypes.c_int()
    return bool(cuda.cuDevicePrimaryCtxGetState(0, ctypes.byref(flags), ctypes.byref(active)) == 0 and active.value)
def step(name, fn):
    global t
    fn()
    now = time.perf_counter()
    out.append([name, round(now - t, 3), ctx()])
    t = now
step("import torch, triton", lambda: __import__("triton.language"))
step("cuInit", lambda: cuda.cuInit(0))
step("import the evaluator", lambda: __import__("kernelevolve.tuner.measure.evaluate"))
import torch
step("torch.cuda.is_available", torch.cuda.is_available)
from kernelevolve.tuner.experiment.hardware import detect_device
step("detect_device", detect_device)
from triton.runtime.driver import driver
step("triton driver", lambda: driver.active)
step("current target", lambda: driver.active.get_current_target())
from kernelevolve.tuner.experiment import registry
tunable = registry.load(registry.BUILTIN["matmul"])
spec = tunable.kernel
problem = spec.problem(M=4096, N=4096, K=4096, dtype="bfloat16")
from kernelevolve.tuner.measure.described import Described, make_described
step("load matmul", lambda: None)
step("describe inputs", lambda: make_described(spec, problem))
d = Described()
cfg = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, SPLIT_K=1, num_warps=4, num_stages=3)
cfg = tunable.space(problem, __import__("kernelevolve.tuner.experiment.hardware", fromlist=["x"]).profile("h100")).complete(cfg)
step("compile, described", lambda: d.compile(spec, problem, "s", cfg, ()))
cfg2 = dict(cfg, BLOCK_N=64)
step("compile another, described", lambda: d.compile(spec, problem, "s", cfg2, ()))
step("shared limit", lambda: d._check_shared(type("H", (), {"metadata": type("M", (), {"shared": 1})()})()))
step("current stream (what a launch asks)", lambda: driver.active.get_current_stream(driver.active.get_current_device()))
print(json.dumps({"steps": out, "fallbacks": d.fallbacks}))
"""


def _steps(n: int) -> list:
    """STEPS in n fresh processes at once, each with its own Triton cache: each one's steps."""
    import tempfile

    def one(_):
        env = dict(os.environ, TRITON_CACHE_DIR=tempfile.mkdtemp(prefix="startup-steps-"))
        proc = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode:
            return {"error": proc.stderr[-1500:]}
        return json.loads(proc.stdout.strip().splitlines()[-1])
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _contexts() -> dict:
    """The processes holding a CUDA context now, and their GPU memory (nvidia-smi)."""
    try:
        rows = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=60).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return {}
    mib = [float(r.split(",")[1]) for r in rows if r.count(",") == 1 and r.split(",")[1].strip().isdigit()]
    return {"processes": len(mib), "gpu_mib": sum(mib)}


# what a compile slot compiles on, and "+probed": it describes its GPU as it starts (initialising
# CUDA: every slot did until they took what a compile asks from the target's profile)
MODES = ("device", "described+probed", "described")


def _compile_slots(n: int, mode: str, gpus: int) -> dict:
    """n compile slots at once, each compiling its own config of a GEMM study (module docstring)."""
    import random
    import tempfile

    import torch

    from kernelevolve.tuner.execution import spawner
    from kernelevolve.tuner.execution.worker import CandidateWorker, make_request
    from kernelevolve.tuner.experiment import hardware, registry

    problem = {"M": 4096, "N": 4096, "K": 4096, "dtype": "bfloat16"}
    tunable = registry.load(registry.BUILTIN["matmul"])
    hw = "h200" if "H200" in torch.cuda.get_device_name() else "h100"
    configs = tunable.space(tunable.kernel.problem(**problem), hardware.profile(hw)).valid_configs()
    configs = random.Random(n).sample(configs, n)
    cache = tempfile.mkdtemp(prefix="startup-probe-triton-")
    compile_on, _, probed = mode.partition("+")
    env_of = lambda i: {"KERNELEVOLVE_INPUT_BYTES": str(1 << 30), "KERNELEVOLVE_NICE": "10",  # noqa: E731
                        "KERNELEVOLVE_COMPILE_ON": compile_on, "CUDA_VISIBLE_DEVICES": str(i % gpus),
                        "TRITON_CACHE_DIR": cache, "KERNELEVOLVE_DESCRIBE_AT_START": "1" if probed else "0"}
    server = spawner.start()
    # the server ready first (in a sweep it starts with the driver, long before the first trial)
    first = CandidateWorker(env=env_of(0), cwd=ROOT)
    first.request({"op": "probe"}, timeout_s=300)
    first.close()
    workers = [CandidateWorker(env=env_of(i), cwd=ROOT) for i in range(n)]

    def one(i):
        t0 = time.perf_counter()
        reply = workers[i].request(make_request("compile", registry.BUILTIN["matmul"], problem, hw, {},
                                                config=configs[i], seed=i), timeout_s=600)
        return {"wall_s": time.perf_counter() - t0, "compile_s": reply.get("compile_s"),
                "status": reply.get("status"), "compiled_on": reply.get("compiled_on"),
                "error": str(reply.get("error", ""))[:200]}
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            slots = list(pool.map(one, range(n)))
        took = time.perf_counter() - t0
        held = _contexts()
    finally:
        for w in workers:
            w.close()
        server.close()
    walls = sorted(s["wall_s"] for s in slots)
    return {"mode": mode, "slots": n, "gpus": gpus, "all_done_s": took, "contexts_after": held,
            "wall_s_p50": walls[len(walls) // 2], "wall_s_max": walls[-1],
            "statuses": {st: sum(s["status"] == st for s in slots) for st in {s["status"] for s in slots}},
            "compiled_on": sorted({str(s["compiled_on"]) for s in slots}), "per_slot": slots}


def _lanes(folder: str) -> dict:
    """_lane twice, each in a fresh Triton cache: as it is, then after the judge's check kernels
    were compiled ahead (tuner.measure.check_warmup, timed here)."""
    import tempfile

    out = {}
    for warm in (False, True):
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="lane-probe-triton-")
        out["warmed" if warm else "cold"] = _lane(os.path.join(folder, "warmed" if warm else "cold"), warm)
    return out


def _lane(folder: str, warm_first: bool = False) -> dict:
    """A GPU lane's start as a sweep makes it, alone on the machine: its evaluator and judge forked
    at once, then the lane's self-check (tuner.execution.lanes.SELF_CHECK) twice and a GEMM 4096^3
    vendor candidate twice, each request's wall time and its verification's split. With
    KERNELEVOLVE_JUDGE_PROFILE and KERNELEVOLVE_EVAL_PROFILE set to `folder`, both processes write
    where each request's time went (the judge's sections, the evaluator's top functions)."""
    from kernelevolve.tuner.execution import spawner
    from kernelevolve.tuner.execution.lanes import SELF_CHECK
    from kernelevolve.tuner.execution.worker import CandidateWorker, make_request
    from kernelevolve.tuner.experiment.config import Timing

    from benchmarks.engine import gpu_kind

    from types import SimpleNamespace

    from kernelevolve.tuner.execution.cluster import target_env
    from kernelevolve.tuner.experiment.hardware import profile

    os.makedirs(folder, exist_ok=True)
    hardware = gpu_kind()[0]
    server = spawner.start()
    # the GPU target's environment as a sweep gives it (its Triton options are part of the cache's
    # keys); target_env reads only the target's hardware profile
    target = target_env(SimpleNamespace(profile=profile(hardware)))
    env = {**target, "KERNELEVOLVE_JUDGE_PROFILE": folder, "KERNELEVOLVE_EVAL_PROFILE": folder,
           "CUDA_VISIBLE_DEVICES": "0"}
    bench = Timing(warmup_ms=1, rep_ms=2).bench_settings("do_bench")
    check = make_request("evaluate", SELF_CHECK["kernel_ref"], SELF_CHECK["problem"], hardware, bench,
                         config=dict(SELF_CHECK["config"]), seed=0)
    big = make_request("evaluate", SELF_CHECK["kernel_ref"], {"M": 4096, "N": 4096, "K": 4096, "dtype": "bfloat16"},
                       hardware, bench, config={"IMPL": "vendor"}, seed=0)
    keys = ("status", "eval_s", "verify_s", "verify_guard_s", "verify_encode_s", "verify_decode_s",
            "verify_check_s", "verify_release_s", "judge_s", "judge_begin_s", "request_setup_s", "compile_s")
    out: dict = {}
    worker = CandidateWorker(env=env, cwd=ROOT)
    try:
        # the server's imports first (in a sweep it starts with the command, long before a lane)
        probe = CandidateWorker(env={"CUDA_VISIBLE_DEVICES": ""}, cwd=ROOT)
        probe.request({"op": "probe"}, timeout_s=300)
        probe.close()
        if warm_first:
            from kernelevolve.tuner.measure import check_warmup

            t0 = time.perf_counter()
            procs = check_warmup.start(target, ROOT)
            out["warmup_failed"] = sum(1 for p in procs if p.wait() != 0)
            out["warmup_s"], out["warmup_processes"] = time.perf_counter() - t0, len(procs)
            print("warm-up", out["warmup_s"], len(procs), out["warmup_failed"], flush=True)
        t0 = time.perf_counter()
        worker.request({"op": "probe", "start_judge": True}, timeout_s=300)
        out["start_s"] = time.perf_counter() - t0
        for name, req in (("self_check_1", check), ("self_check_2", check), ("gemm4096_1", big),
                          ("gemm4096_2", big)):
            t0 = time.perf_counter()
            reply = worker.request(req, timeout_s=300)
            out[name] = {"wall_s": time.perf_counter() - t0, **{k: reply.get(k) for k in keys if k in reply},
                         "error": str(reply.get("error") or "")[:300]}
            print(name, json.dumps(out[name]), flush=True)
    finally:
        worker.close()
        server.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--counts", default="1,16")
    ap.add_argument("--compile-slots", help="N[,N...]: time N compile slots at once instead (see above)")
    ap.add_argument("--steps", help="N[,N...]: a compile slot's start step by step, in N processes at once")
    ap.add_argument("--lane", help="FOLDER: a GPU lane's start and first requests, profiled into FOLDER")
    args = ap.parse_args()
    if args.lane:
        out = _lanes(args.lane)
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)
        return
    if args.steps:
        runs = {n: _steps(int(n)) for n in args.steps.split(",")}
        for n, r in runs.items():
            print(n, json.dumps(r[0]), flush=True)
        with open(args.out, "w") as fh:
            json.dump(runs, fh, indent=1)
        return
    if args.compile_slots:
        import torch

        gpus = torch.cuda.device_count()
        runs = [_compile_slots(int(n), mode, min(gpus, max(1, int(n) // 16)))
                for n in args.compile_slots.split(",") for mode in MODES]
        for r in runs:
            print(json.dumps({k: v for k, v in r.items() if k != "per_slot"}), flush=True)
        with open(args.out, "w") as fh:
            json.dump(runs, fh, indent=1)
        return
    counts = [int(c) for c in args.counts.split(",")]
    cuda = "import torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize()"
    out: dict = {"python": sys.version.split()[0], "imports_s": _wall("import torch, triton")}
    try:
        out["imports_and_context_s"] = _wall("import triton; " + cuda)
    except subprocess.CalledProcessError:
        out["imports_and_context_s"] = None  # no GPU here
    for n in counts:
        out[f"imports_x{n}_s"] = _together(n, "import torch, triton")
        if out["imports_and_context_s"] is not None:
            out[f"imports_and_context_x{n}_s"] = _together(n, "import triton; " + cuda)
        out[f"workers_x{n}_s"] = _workers(n, {"KERNELEVOLVE_INPUT_BYTES": str(1 << 30)})
        print(json.dumps({k: v for k, v in out.items() if f"x{n}_" in k}), flush=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
