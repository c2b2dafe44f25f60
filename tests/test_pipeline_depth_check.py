"""benchmarks/pipeline_depth_check.py: recorded configs paired across pipeline depths, offline."""
import gzip
import json

from benchmarks import pipeline_depth_check as check
from kernelevolve.tuner.experiment.hardware import profile

H200 = profile("h200")

TILE = {"BLOCK_M": "128", "BLOCK_N": "128", "BLOCK_K": "64", "GROUP_M": "8", "TMA": "True", "num_warps": "4"}


def _export(path, rows):
    with gzip.open(path, "wt") as f:
        for study, params, ms in rows:
            f.write(json.dumps({"tags": {"study": study, "status": "ok"}, "params": params,
                                "metrics": {"latency_ms": ms}}) + "\n")
    return str(path)


def test_a_config_at_two_depths_is_one_pair_in_its_k_steps_bucket(tmp_path):
    short, long_ = "matmul/M3600_N2448_K256_bfloat16/h200", "matmul/M4096_N4096_K4096_bfloat16/h200"
    path = _export(tmp_path / "a.runs.jsonl.gz", [
        (short, {**TILE, "num_stages": "4"}, 0.0140),
        (short, {**TILE, "num_stages": "5"}, 0.0150),
        (short, {**TILE, "num_stages": "5"}, 0.0147),  # timed twice: its fastest counts
        (long_, {**TILE, "num_stages": "3"}, 0.20),
        (long_, {**TILE, "num_stages": "4"}, 0.18),
        (long_, {**TILE, "FLATTEN": "True", "PERSISTENT": "True", "num_stages": "3"}, 0.2),  # left out
        (long_, {**TILE, "FLATTEN": "True", "PERSISTENT": "True", "num_stages": "4"}, 0.1),
        (short, {"IMPL": "vendor"}, 0.0100),  # the library's path is no Triton config
    ])
    found = check.pairs([path], H200)
    # K=256 in steps of 64: 4; K=4096: 64. 128x128x64 bf16 in 4 stages (128 KiB) fits one program
    # an SM, in 5 none more; in 3 (96 KiB) two, and 3600x2448 and 4096x4096 launch 580 and 1,024
    assert set(found) == {("3-4", 4, 5, False), (">=9", 3, 4, True)}
    (ratio, key), = found[("3-4", 4, 5, False)]
    assert key == "M3600_N2448_K256_bfloat16" and abs(ratio - 0.0147 / 0.0140) < 1e-9
    assert abs(found[(">=9", 3, 4, True)][0][0] - 0.9) < 1e-9


def test_depths_timed_in_two_sweeps_are_never_paired(tmp_path):
    study = "matmul/M3600_N2448_K256_bfloat16/h200"
    a = _export(tmp_path / "a.runs.jsonl.gz", [(study, {**TILE, "num_stages": "4"}, 0.014)])
    b = _export(tmp_path / "b.runs.jsonl.gz", [(study, {**TILE, "num_stages": "5"}, 0.015)])
    assert check.pairs([a, b], H200) == {}
