"""One tiny real sweep (Ray Tune + Optuna + the interpreter + MLflow), run at most once per pytest
session per tag and shared by the modules that read it (determinism, reproduce, export): a sweep
costs about 20 s on two cores, Ray's start-up more.

The kernel is the DLRM dot interaction: its interpreter space is small and almost all valid, so
five candidates take five to eight proposals, all within TPE's seeded start-up phase. Its clock is
`auto`, which the interpreter target resolves to wall time: the path of a resolved clock (parent
run, records, `kernelevolve reproduce`) is the one a GPU study takes.
"""
import atexit
import functools
import os
import shutil
import tempfile

EXP = """
name: tiny
kernels:
  - kernel: dot_interaction
    problems: [{batch: 16, features: 6, dim: 64, dtype: float16}]
targets: [{name: cpu-interpreter}]
search: {sampler: tpe, samples: 5, concurrency: 1, seed: 4, timeout_s: 120, top_k: 2}
timing: {clock: auto, retime_rounds: 2}
tracking: {uri: sqlite:///store/mlflow.db}
"""


def journal(root: str, name: str) -> list[dict]:
    """Every journaled record of the experiment's latest sweep, study by study, in order."""
    from kernelevolve.tuner.records.journal import SweepState

    state = SweepState.latest(os.path.join(root, ".kernelevolve", name))
    return [r for f in sorted(os.listdir(state.folder)) if f.endswith(".jsonl")
            for r in state.journal(f[:-6]).records()]


def run_in(root: str, text: str, name: str = "exp.yaml") -> tuple:
    """Write the experiment into `root` and sweep it from there: (experiment, summaries)."""
    from kernelevolve.tuner.experiment import config
    from kernelevolve.tuner.execution import sweep

    os.makedirs(os.path.join(root, "store"), exist_ok=True)
    with open(os.path.join(root, name), "w") as fh:
        fh.write(text)
    old = os.getcwd()
    os.chdir(root)
    try:
        exp = config.load(name)
        return exp, sweep.run(exp, log=lambda m: None)
    finally:
        os.chdir(old)


@functools.lru_cache(maxsize=None)
def tiny(tag: str = "base") -> dict:
    """The tiny sweep in a folder of its own (one per tag: the same YAML swept again elsewhere)."""
    root = tempfile.mkdtemp(prefix=f"kernelevolve-tiny-{tag}-")
    atexit.register(shutil.rmtree, root, True)
    exp, summaries = run_in(root, EXP)
    return {"root": root, "uri": f"sqlite:///{root}/store/mlflow.db", "exp": exp,
            "summaries": summaries, "records": journal(root, exp.name)}
