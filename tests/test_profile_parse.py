"""Nsight Compute output -> a candidate's counters -> a bottleneck label (tuner.profile), on the CPU.

The fixtures under tests/data/ncu/ are SYNTHETIC (their README says so) until the H100 capture
(benchmarks/ncu_capture.py) replaces them with recorded output.
"""
import os

import pytest

from kernelevolve.tuner.experiment import hardware
from kernelevolve.tuner.profile import bottleneck, ncu, parse
from kernelevolve.tuner.profile.metrics import COUNTERS, STALL_REASONS, base_name, ncu_metrics, stall_metric, stall_reason
from kernelevolve.tuner.records.schema import PROFILE_FIELDS

DATA = os.path.join(os.path.dirname(__file__), "data", "ncu")
GEMM_FLOPS = 2 * 1024 * 1024 * 16384  # the fixture GEMM: bf16 1024x1024x16384, SPLIT_K=4


def _text(name: str) -> str:
    with open(os.path.join(DATA, name), encoding="utf-8") as fh:
        return fh.read()


def test_every_metric_asked_for_is_parsed_from_the_fixture():
    launches = parse.parse_raw_csv(_text("gemm_bf16_1024x1024x16384_splitk4.csv"))
    assert len(launches) == 9  # 3 calls x (fill, matmul_kernel, splitk_finish_kernel)
    assert [l.name for l in launches[:3]][1:] == ["matmul_kernel", "splitk_finish_kernel"]
    assert parse.missing_metrics(launches, ncu_metrics()) == []
    mm = launches[4].values  # the second call: its durations as written, unjittered
    assert mm["gpu__time_duration.sum"] == pytest.approx(62_304 * 1e-6, rel=1e-6)  # nsecond -> ms
    assert mm["dram__bytes.sum"] == 74_711_040  # "74,711,040" byte


def test_scaled_units_and_prof_lines_parse_to_base_units():
    launches = parse.parse_raw_csv(_text("softmax_bf16_4096x32768.csv"))
    assert len(launches) == 3 and {l.name for l in launches} == {"softmax_kernel"}
    first = launches[0].values
    assert first["gpu__time_duration.sum"] == pytest.approx(209_152 * 0.996e-6, rel=1e-4)  # usecond -> ms
    assert first["dram__bytes.sum"] == pytest.approx(537_919_488, rel=1e-5)  # Mbyte -> byte


def test_gemm_counters_per_call_and_weighted_by_gpu_time():
    launches = parse.parse_raw_csv(_text("gemm_bf16_1024x1024x16384_splitk4.csv"))
    c = parse.summarize(launches, calls=3, latency_ms=0.0745, flops=GEMM_FLOPS)
    assert c["ncu_kernels"] == 3
    assert c["ncu_duration_ms"] == pytest.approx((2_592 + 62_304 + 4_128) * 1e-6, rel=1e-6)
    assert c["ncu_dram_bytes"] == pytest.approx(4_194_304 + 74_711_040 + 6_291_456)
    # the matmul ran 9x longer than the two memory kernels together: its ratios dominate
    assert 60 < c["ncu_sm_pct"] < 71.62 and 44.07 < c["ncu_memory_pct"] < 60
    assert c["ncu_registers"] == 168 and c["ncu_grid_size"] == 256  # the longest kernel's launch
    assert len(c["ncu_top_stalls"].split(", ")) == 3
    assert "selected=" not in c["ncu_top_stalls"].replace("not_selected", "")  # issuing is no stall
    assert c["ncu_kernel_share"] == pytest.approx(c["ncu_duration_ms"] / 0.0745)
    assert c["ncu_tflops"] == pytest.approx(GEMM_FLOPS / (c["ncu_duration_ms"] * 1e-3) / 1e12)
    assert c["ncu_intensity"] == pytest.approx(GEMM_FLOPS / c["ncu_dram_bytes"])
    assert set(c) <= set(PROFILE_FIELDS)  # every field has its one declaration in the schema
    assert bottleneck.label(c)[0] == "compute-bound"


def test_softmax_is_memory_bound_with_long_scoreboard_on_top():
    c = parse.summarize(parse.parse_raw_csv(_text("softmax_bf16_4096x32768.csv")), calls=3, latency_ms=0.215,
                        flops=4096 * 32768 * 5)
    name, why = bottleneck.label(c)
    assert name == "memory-bound" and "DRAM 87%" in why
    assert c["ncu_top_stalls"].startswith("long_scoreboard=31.6")
    assert c["ncu_dram_gbps"] == pytest.approx(537_919_488 / (c["ncu_duration_ms"] * 1e-3) / 1e9)


@pytest.mark.parametrize("counters, expected", [
    ({"ncu_duration_ms": 0.004, "ncu_kernel_share": 0.2, "ncu_memory_pct": 90, "ncu_sm_pct": 10}, "launch-bound"),
    ({"ncu_memory_pct": 75, "ncu_sm_pct": 70, "ncu_dram_pct": 70}, "memory-bound"),
    ({"ncu_memory_pct": 55, "ncu_sm_pct": 40, "ncu_tensor_pct": 82}, "compute-bound"),
    ({"ncu_memory_pct": 62, "ncu_sm_pct": 85}, "compute-bound"),
    ({"ncu_memory_pct": 31, "ncu_sm_pct": 22, "ncu_occupancy_pct": 9, "ncu_top_stalls": "long_scoreboard=20"},
     "latency-bound"),
    ({"ncu_sm_pct": 22}, bottleneck.UNKNOWN),
])
def test_bottleneck_rules(counters, expected):
    name, why = bottleneck.label(counters)
    assert name == expected and why and "\n" not in why


def test_labels_checked_against_the_roofline_position():
    h100 = hardware.profile("h100")
    ridge = 742e12 / 3.02e12  # bf16 flop per byte at the ridge
    left = {"ncu_intensity": ridge / 10, "ncu_tflops": 60.0}
    right = {"ncu_intensity": ridge * 4, "ncu_tflops": 650.0}
    assert bottleneck.roofline_side(left, h100, "bfloat16") == "memory"
    assert bottleneck.agrees_with_roofline("memory-bound", left, h100, "bfloat16") is True
    assert bottleneck.agrees_with_roofline("compute-bound", left, h100, "bfloat16") is False
    assert bottleneck.agrees_with_roofline("compute-bound", right, h100, "bfloat16") is True
    # latency-bound agrees where the point sits well under its roof
    assert bottleneck.agrees_with_roofline("latency-bound", {**right, "ncu_tflops": 200.0}, h100, "bfloat16")
    assert bottleneck.agrees_with_roofline("latency-bound", right, h100, "bfloat16") is False
    assert bottleneck.roofline_side({}, h100, "bfloat16") is None


def test_not_a_raw_page_is_one_clear_error():
    with pytest.raises(parse.NcuParseError, match="Kernel Name"):
        parse.parse_raw_csv("==ERROR== ERR_NVGPUCTRPERM - The user does not have permission\n")
    assert parse.number("n/a") is None and parse.number("1,234.5") == 1234.5


def test_metric_names_have_one_home():
    names = ncu_metrics()
    assert len(names) == len(set(names)) == len(COUNTERS) + len(STALL_REASONS)
    assert stall_reason(stall_metric("long_scoreboard")) == "long_scoreboard"
    assert base_name("sm__throughput.avg.pct_of_peak_sustained_elapsed") == "sm__throughput"
    assert all(f"ncu_stall_{r}" in PROFILE_FIELDS for r in STALL_REASONS)


def test_ncu_errors_are_read_for_refused_metrics_and_permissions():
    log = ("==PROF== Connected to process 1\n"
           "==ERROR== Failed to find metric sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active\n")
    assert ncu.refused_metrics(log, ncu_metrics()) == ["sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"]
    assert "NVreg_RestrictProfilingToAdminUsers=0" in ncu.why_failed("==ERROR== ERR_NVGPUCTRPERM - no permission")
    cmd = ncu.profile_command("ncu", "/t/profile", "/t/ncu.log", "/t/req.json", "/t/reply.json", ncu_metrics())
    assert cmd[cmd.index("--profile-from-start") + 1] == "off"  # only the candidate's own launches
    assert cmd[cmd.index("--clock-control") + 1] == "none"
    assert cmd[-4:-2] == ["-m", "kernelevolve.tuner.profile.target"]
