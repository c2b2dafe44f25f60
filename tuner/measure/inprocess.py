"""In-process search of one kernel's space: for benchmarks and quick per-op tuning on one GPU.

The sweep (tuner/execution/sweep.py) is the product's path: Ray trials, MLflow records, resume. Benchmarks
that tune many small problems inside one timed script (the GEMM suite, the ops benchmark, the DLRM
model) need none of that and cannot afford a Ray start per op, so they use this: a seeded Optuna
TPE over the same Space (its constraints, encode/decode), proposals taken in batches, each batch
compiled in parallel threads (Triton's compiler releases the GIL for much of its work: compiling
is most of a small config's cost), then verified against the float64 reference (output poisoned
first) and timed one by one. Warm configs (known-good, or the tuned table's) are tried first.
"""
from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import optuna
import torch

from tuner.search.space import config_key
from tuner.measure.verify import check, poison

optuna.logging.set_verbosity(optuna.logging.WARNING)

QUICK = {"warmup": 5, "rep": 25}  # screening one config
FULL = {"warmup": 25, "rep": 100}  # the finalists and the peers
PENALTY = 3.0  # what Optuna is told for an invalid, failing or incorrect config (log10 s)
ENUMERATE_MAX = 200_000  # a sparse space up to this size is enumerated to seed the search...
SAMPLE_MAX = 50_000  # ...a larger one is sampled, at most this many draws (~1 s of rule checks)


def bench(fn, timing=FULL) -> tuple[float, float, float]:
    """(p20, p50, p80) ms with triton.testing.do_bench (L2 flushed before each repetition)."""
    import triton.testing

    q = triton.testing.do_bench(fn, warmup=timing["warmup"], rep=timing["rep"], quantiles=[0.2, 0.5, 0.8])
    return float(q[0]), float(q[1]), float(q[2])


def clean_flush_bench(fn, timing=FULL) -> tuple[float, float, float]:
    """(p20, p50, p80) ms by tuner.measure.clocks.time_gpu_clean: the L2 emptied by a read pass, each call
    charged its own write-back (that docstring says why). timing's warmup and rep are read as
    counts of calls (do_bench reads the same numbers as milliseconds): FULL is 25 warm-up calls and
    100 timed ones."""
    from tuner.measure.clocks import time_gpu_clean

    return time_gpu_clean(fn, timing["warmup"], timing["rep"])


def graph_bench(fn, timing=FULL) -> tuple[float, float, float]:
    """(p20, p50, p80) ms of fn replayed inside a CUDA graph (triton.testing.do_bench_cudagraph):
    GPU time without the host's launch cost. For kernels of a few tens of microseconds, where a
    Python launch (40-200 us per Triton launch on the H100 host) would otherwise be what event
    timing measures. L2 is not flushed between replays: time the peer with it too."""
    import triton.testing

    q = triton.testing.do_bench_cudagraph(fn, rep=timing["rep"], quantiles=[0.2, 0.5, 0.8])
    return float(q[0]), float(q[1]), float(q[2])


def host_us(fn, calls: int = 100) -> float:
    """The host's cost of one call, in us: `calls` calls back to back with no synchronisation in
    between (the GPU queue absorbs them while they are shorter than the kernels), per call. What
    bounds an eagerly launched kernel or model when the GPU finishes faster than Python launches."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    us = (time.perf_counter() - t0) / calls * 1e6
    torch.cuda.synchronize()
    return us


def wall_bench(fn, timing=None) -> tuple[float, float, float]:
    """The interpreter's stand-in: CPU wall time of two calls (never a performance result)."""
    fn()
    t0 = time.perf_counter()
    for _ in range(2):
        fn()
    ms = 1e3 * (time.perf_counter() - t0) / 2
    return ms, ms, ms


class Search:
    """Seeded TPE over one space, in batches of `threads` proposals compiled in parallel."""

    def __init__(self, tunable, problem, hw, seed: int, threads: int, device="cuda", timer=None):
        self.spec, self.space = tunable.kernel, tunable.space(problem, hw)
        self.problem, self.threads, self.seed = problem, threads, seed
        self.device = torch.device(device)
        self.timer = timer or (bench if self.device.type == "cuda" else wall_bench)
        self.inputs = self.spec.make_inputs(problem, self.device, seed)
        self.ref = self.spec.reference(self.inputs)
        self.outs = [self.spec.make_output(problem, self.inputs) for _ in range(threads)]
        self.study = optuna.create_study(direction="minimize",
                                         sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True))
        self.seen: dict[str, float] = {}
        self.results: list[dict] = []

    def enqueue(self, configs) -> int:
        """Queue configs to be tried first; each is completed with the space's first value of any
        parameter it does not name, and skipped where the space rejects it. Returns how many."""
        n = 0
        for cfg in configs:
            full = {d.name: cfg.get(d.name, d.values()[0]) for d in self.space.domains}
            if all(k in full and full[k] == v for k, v in cfg.items()) and not self.space.violations(full):
                self.study.enqueue_trial(self.space.encode(full))
                n += 1
        return n

    def seed_sparse_space(self, n: int, probes: int = 200, min_valid: int = 10) -> int:
        """Where few configs are valid (a GEMM with K=13 or N=1: ~1% of the space; a Hopper conv
        space, with its box and operand switches, a few %), TPE's asks mostly meet constraints and
        the time runs out before a batch is full. Probe the space at random; if fewer than
        min_valid of `probes` configs are valid, enqueue a seeded sample of n valid ones: drawn
        from the enumeration of a space of up to ENUMERATE_MAX configs, else by rejection sampling
        (a conv space has millions of configs: enumerating it outlasted a 70 s search on the
        H100 host). Returns how many were enqueued."""
        rng = random.Random(self.seed)
        domains = [(d.name, d.values()) for d in self.space.domains]

        def draw() -> dict:  # a random point of the space, as decode would hand it out
            return self.space.canonicalize({k: rng.choice(v) for k, v in domains})

        if sum(not self.space.violations(draw()) for _ in range(probes)) >= min_valid:
            return 0
        if self.space.size() <= ENUMERATE_MAX:
            valid = self.space.valid_configs()
            rng.shuffle(valid)
        else:
            valid, seen = [], set()
            for _ in range(SAMPLE_MAX):
                cfg = draw()
                key = config_key(cfg)
                if key not in seen:
                    seen.add(key)
                    if not self.space.violations(cfg):
                        valid.append(cfg)
                        if len(valid) >= n:
                            break
        return self.enqueue(valid[:n])

    def _propose(self, n, until=float("inf")):
        """Up to n new valid configs. Where most of the space is invalid (a tiny K or N) asking
        takes long: it also stops at `until`."""
        batch, asks = [], 0
        while len(batch) < n and asks < 200 * n and time.perf_counter() < until:
            asks += 1
            trial = self.study.ask(self.space.distributions())
            cfg = self.space.decode(trial.params)
            key = config_key(cfg)
            if key in self.seen or self.space.violations(cfg):
                self.study.tell(trial, self.seen.get(key, PENALTY))
                continue
            self.seen[key] = PENALTY
            batch.append((trial, cfg, key))
        return batch

    def _compile(self, cfg, free_outs: list, lock: threading.Lock):
        with lock:
            out = free_outs.pop()  # one output buffer per thread
        try:
            self.spec.launch(self.inputs, out, cfg)  # the first launch compiles
            return None
        except Exception as exc:  # noqa: BLE001 - recorded per config
            return f"{type(exc).__name__}: {exc}"[:300]
        finally:
            with lock:
                free_outs.append(out)

    def run(self, max_configs: int, until: float) -> "Search":
        """Evaluate up to max_configs configs, stopping at time.perf_counter() >= until."""
        free_outs, lock = list(self.outs), threading.Lock()
        with ThreadPoolExecutor(self.threads) as ex:
            while len(self.results) < max_configs and time.perf_counter() < until:
                batch = self._propose(min(self.threads, max_configs - len(self.results)), until)
                if not batch:
                    break
                errors = list(ex.map(lambda c: self._compile(c, free_outs, lock), [c for _, c, _ in batch]))
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                for (trial, cfg, key), err in zip(batch, errors):
                    self.study.tell(trial, self._evaluate(cfg, key, err))
        return self

    def _evaluate(self, cfg, key, err) -> float:
        rec = {"config": cfg}
        self.results.append(rec)
        try:
            if err:
                raise RuntimeError(err)
            out = self.outs[0]
            poison(out)
            self.spec.launch(self.inputs, out, cfg)
            verdict = check(out, self.ref)
            if not verdict.ok:
                rec["status"], rec["error"] = "incorrect", verdict.reason
                return PENALTY
            rec["latency_ms"] = self.timer(lambda: self.spec.launch(self.inputs, out, cfg), QUICK)[1]
            rec["status"] = "ok"
            self.seen[key] = math.log10(rec["latency_ms"] * 1e-3)
            return self.seen[key]
        except Exception as exc:  # noqa: BLE001 - a failing config is data
            rec["status"], rec["error"] = "error", f"{type(exc).__name__}: {exc}"[:300]
            return PENALTY

    def finalists(self, k=3) -> list[dict]:
        ok = sorted((r for r in self.results if r.get("status") == "ok"), key=lambda r: r["latency_ms"])
        return ok[:k]

    def best(self, k=3) -> dict | None:
        """The k fastest re-timed in full (FULL timing); the best median wins. None if none is ok."""
        best = None
        for fin in self.finalists(k):
            fin["full"] = self.timer(lambda c=fin["config"]: self.spec.launch(self.inputs, self.outs[0], c), FULL)
            if best is None or fin["full"][1] < best["full"][1]:
                best = fin
        return best

    def counts(self) -> dict:
        return {st: sum(r.get("status") == st for r in self.results) for st in ("ok", "incorrect", "error")}


def tune(tunable, problem, hw, *, warm=(), max_configs=24, seconds=60.0, threads=8, seed=0,
         device="cuda") -> tuple[dict | None, Search]:
    """Search one problem: warm configs first, then TPE, until max_configs or `seconds`. Returns
    (best record with its config and full timing, or None; the Search with every record)."""
    s = Search(tunable, problem, hw, seed, threads, device)
    s.enqueue(warm)
    s.seed_sparse_space(max_configs)
    s.run(max_configs, time.perf_counter() + seconds)
    return s.best(), s
