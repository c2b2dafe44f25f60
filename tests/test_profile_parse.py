"""Nsight Compute output -> a candidate's counters -> a bottleneck label (tuner.profile), on the CPU.

The CSVs under tests/data/ncu/ are raw pages recorded on an H100 with Nsight Compute 2025.3.1
(their README says how); every expected number below is a value of those files, or a sum or
GPU-time-weighted mean of such values.
"""
import csv
import io
import os

import pytest

from kernelevolve.tuner.experiment import hardware
from kernelevolve.tuner.profile import bottleneck, ncu, parse
from kernelevolve.tuner.profile.metrics import (COUNTERS, LEVELS, STALL_REASONS, base_name, in_query_metrics, ncu_metrics,
                                                stall_metric, stall_reason)
from kernelevolve.tuner.records.schema import PROFILE_FIELDS

DATA = os.path.join(os.path.dirname(__file__), "data", "ncu")
H100 = hardware.profile("h100")
SPLITK, GEMM, SOFTMAX, SMALL = ("gemm_bf16_1024x1024x16384_splitk4.csv", "gemm_bf16_4096.csv",
                                "softmax_bf16_4096x32768.csv", "softmax_bf16_64x1024.csv")
# per file: (measured latency in ms, flops of one call), as benchmarks/ncu_capture.py recorded them
CASES = {SPLITK: (0.08749, 2 * 1024 * 1024 * 16384), GEMM: (0.194, 2 * 4096 ** 3),
         SOFTMAX: (0.187, 5 * 4096 * 32768), SMALL: (0.004832, 5 * 64 * 1024)}
FILL = "void at::vectorized_elementwise_kernel<4, at::FillFunctor<float>, std::array<char *, 1>>"
DUR, DRAM_BYTES = COUNTERS["ncu_duration_ms"][0], COUNTERS["ncu_dram_bytes"][0]


def _text(name: str) -> str:
    with open(os.path.join(DATA, name), encoding="utf-8") as fh:
        return fh.read()


def _counters(name: str, latency_ms: float | None = None) -> dict:
    latency, flops = CASES[name]
    return parse.summarize(parse.parse_raw_csv(_text(name)), calls=3, latency_ms=latency_ms or latency, flops=flops)


def _weighted(values, durations_ns):
    return sum(v * d for v, d in zip(values, durations_ns)) / sum(durations_ns)


@pytest.mark.parametrize("name, launches", [(SPLITK, 9), (GEMM, 3), (SOFTMAX, 3), (SMALL, 3)])
def test_every_metric_asked_for_is_on_the_raw_page(name, launches):
    got = parse.parse_raw_csv(_text(name))
    assert len(got) == launches  # 3 calls each
    # recorded before the memory levels' bytes, peaks and clocks joined the list (levels/ has them)
    assert set(parse.missing_metrics(got, ncu_metrics())) <= {m for level in LEVELS.values() for m in level}
    for launch in got:  # the launch__ attributes --query-metrics does not list are there, with values
        assert {"launch__registers_per_thread", "launch__grid_size", "launch__waves_per_multiprocessor"} <= set(launch.values)
        assert "Kernel Name" not in launch.values and "Block Size" not in launch.values  # identity columns


def test_splitk_gemm_launches_and_units():
    got = parse.parse_raw_csv(_text(SPLITK))
    assert [l.name for l in got] == [f"{FILL}(int, T2, T3)", "matmul_kernel", "splitk_finish_kernel"] * 3
    assert [l.id for l in got] == [str(i) for i in range(9)]
    mm = got[4].values  # the second call's matmul_kernel
    assert mm[DUR] == pytest.approx(72_832e-6)  # "72,832" ns -> ms
    assert mm[DRAM_BYTES] == 73_720_320  # "73,720,320" byte
    assert mm["launch__registers_per_thread"] == 106 and mm["launch__grid_size"] == 256  # (64, 4, 1)
    assert mm["launch__waves_per_multiprocessor"] == 0.97
    assert mm["sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"] == 53.32  # % as printed
    assert mm["smsp__inst_executed.sum"] == 14_817_280
    assert got[0].values["lts__t_sector_hit_rate.pct"] == 100.20  # ncu's own rounding past 100%
    assert got[0].values["device__attribute_clock_rate"] == 1_980_000  # other numeric columns kept as printed


def _csv_row(cells) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow(cells)
    return out.getvalue()


def test_auto_scaled_units_and_prof_lines_parse_to_the_same_numbers():
    """The big softmax's page rewritten as ncu prints it without --print-units base (usecond,
    Mbyte), inside the ==PROF== lines of a captured stdout: the same values in ms and bytes."""
    base = _text(SOFTMAX)
    header, units, *rows = list(csv.reader(base.splitlines()))
    t, b = header.index(DUR), header.index(DRAM_BYTES)
    assert (units[t], units[b]) == ("ns", "byte")  # the recording: base units
    units[t], units[b] = "usecond", "Mbyte"
    for row in rows:
        row[t] = f"{float(row[t].replace(',', '')) / 1e3:,.3f}"
        row[b] = f"{float(row[b].replace(',', '')) / 1e6:,.6f}"
    text = "\n".join(["==PROF== Connected to process 716", *map(_csv_row, [header, units, *rows]),
                      "==PROF== Disconnected from process 716"])
    want, got = parse.parse_raw_csv(base), parse.parse_raw_csv(text)
    assert [l.values[DUR] for l in got] == pytest.approx([0.180224, 0.181632, 0.180832])
    assert [l.values[DRAM_BYTES] for l in got] == pytest.approx([516_165_888, 516_206_592, 516_280_576])
    assert [l.values for l in got] == [pytest.approx(l.values) for l in want]


def test_splitk_gemm_counters_per_call_weighted_and_labelled_memory_bound():
    c = _counters(SPLITK)
    durations = [3_264, 74_464, 4_608, 3_328, 72_832, 4_576, 3_296, 72_768, 4_672]  # ns, as on the page
    assert c["ncu_kernels"] == 3
    assert c["ncu_kernel_names"] == f"matmul_kernel,splitk_finish_kernel,{FILL}"  # names without arguments
    assert c["ncu_duration_ms"] == pytest.approx(sum(durations) * 1e-6 / 3)
    assert c["ncu_dram_bytes"] == pytest.approx((4_096 * 3 + 73_747_456 + 73_720_320 + 73_726_464
                                                 + 4_198_656 * 2 + 4_198_912) / 3)
    # percentages: means over all 9 launches weighted by GPU time; the matmul dominates
    mem = [34.78, 65.43, 27.41, 34.21, 66.16, 27.42, 34.67, 63.56, 26.90]
    sm = [5.41, 50.58, 2.93, 5.33, 51.72, 2.94, 5.37, 51.42, 2.88]
    assert c["ncu_memory_pct"] == pytest.approx(_weighted(mem, durations)) == pytest.approx(61.67, abs=0.01)
    assert c["ncu_sm_pct"] == pytest.approx(_weighted(sm, durations)) == pytest.approx(46.63, abs=0.01)
    assert c["ncu_dram_pct"] == pytest.approx(28.63, abs=0.01)
    assert c["ncu_registers"] == 106 and c["ncu_grid_size"] == 256 and c["ncu_waves"] == 0.97  # the matmul's
    assert c["ncu_top_stalls"] == "barrier=5.6, long_scoreboard=4.76, membar=1.84"  # membar: the atomics' fences
    assert c["ncu_kernel_share"] == pytest.approx(c["ncu_duration_ms"] / 0.08749)
    assert c["ncu_tflops"] == pytest.approx(CASES[SPLITK][1] / (c["ncu_duration_ms"] * 1e-3) / 1e12)
    assert c["ncu_intensity"] == pytest.approx(CASES[SPLITK][1] / c["ncu_dram_bytes"])
    assert set(c) <= set(PROFILE_FIELDS)  # every field has its one declaration in the schema
    # on-chip traffic (tile loads, the fp32 partials' L2 atomics) keeps memory at 62%, DRAM only 29%, SM 47%
    assert bottleneck.label(c) == ("memory-bound", "memory at 62% of peak (DRAM 29%, L2 hit 76%), SM 47%")
    # while by its DRAM bytes (441 flop/byte) it sits right of the ridge: the label disagrees
    assert bottleneck.roofline_side(c, H100, "bfloat16") == "compute"
    assert bottleneck.agrees_with_roofline("memory-bound", c, H100, "bfloat16") is False


def test_gemm_4096_is_compute_bound_on_the_roof():
    c = _counters(GEMM)
    assert c["ncu_kernels"] == 1 and c["ncu_kernel_names"] == "matmul_kernel"
    assert c["ncu_duration_ms"] == pytest.approx((184_704 + 184_768 + 184_768) * 1e-6 / 3)
    assert c["ncu_instructions"] == 30_928_896
    assert c["ncu_registers"] == 181 and c["ncu_grid_size"] == 512 and c["ncu_waves"] == 3.88
    assert bottleneck.label(c) == ("compute-bound", "SM at 86% of peak, tensor pipe 91%, memory at 59% of peak "
                                                    "(DRAM 35%, L2 hit 66%)")
    assert c["ncu_tflops"] == pytest.approx(743.9, abs=0.1)
    assert bottleneck.roofline_side(c, H100, "bfloat16") == "compute"
    assert bottleneck.agrees_with_roofline("compute-bound", c, H100, "bfloat16") is True


def test_big_softmax_is_memory_bound_with_long_scoreboard_on_top():
    c = _counters(SOFTMAX)
    assert c["ncu_kernel_names"] == "softmax_kernel" and c["ncu_grid_size"] == 4096 and c["ncu_waves"] == 31.03
    assert bottleneck.label(c) == ("memory-bound", "memory at 85% of peak (DRAM 85%, L2 hit 51%), SM 24%")
    assert c["ncu_top_stalls"] == "long_scoreboard=5.52, barrier=2, mio_throttle=1.54"
    assert c["ncu_dram_gbps"] == pytest.approx(c["ncu_dram_bytes"] / (c["ncu_duration_ms"] * 1e-3) / 1e9)
    assert c["ncu_dram_gbps"] == pytest.approx(2854, abs=1)
    assert bottleneck.agrees_with_roofline("memory-bound", c, H100, "bfloat16") is True


def test_small_softmax_is_latency_bound_unless_its_kernel_is_under_half_the_latency():
    c = _counters(SMALL)
    assert c["ncu_duration_ms"] == pytest.approx((3_264 + 3_168 + 3_296) * 1e-6 / 3)
    assert c["ncu_kernel_share"] == pytest.approx(0.671, abs=1e-3)  # 3.24 us of 4.83 us: not launch-bound
    name, why = bottleneck.label(c)
    assert name == "latency-bound"
    assert why == ("memory 11% and SM 1% both under 60% of peak; occupancy 6%; "
                   "stalls: long_scoreboard=4.83, short_scoreboard=2.94, wait=1.37")
    assert bottleneck.agrees_with_roofline(name, c, H100, "bfloat16") is True  # 1% of its roof
    # the same kernel time in a call twice as long would be launch-bound (rule 1: share under 0.5)
    assert bottleneck.label(_counters(SMALL, latency_ms=2 * 0.004832))[0] == "launch-bound"


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
    level_only = {m for level in LEVELS.values() for m in level} - {m for m, _ in COUNTERS.values()}
    assert len(names) == len(set(names)) == len(COUNTERS) + len(level_only) + len(STALL_REASONS)
    assert stall_reason(stall_metric("long_scoreboard")) == "long_scoreboard"
    assert base_name("sm__throughput.avg.pct_of_peak_sustained_elapsed") == "sm__throughput"
    assert all(f"ncu_stall_{r}" in PROFILE_FIELDS for r in STALL_REASONS)
    # launch attributes: --query-metrics lists none of them (metrics_check must not call them missing)
    assert [m for m in names if not in_query_metrics(m)] == [
        "launch__registers_per_thread", "launch__grid_size", "launch__waves_per_multiprocessor"]


def test_ncu_errors_are_read_for_refused_metrics_and_permissions():
    log = ("==PROF== Connected to process 1\n"
           "==ERROR== Failed to find metric sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active\n")
    assert ncu.refused_metrics(log, ncu_metrics()) == ["sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"]
    assert "NVreg_RestrictProfilingToAdminUsers=0" in ncu.why_failed("==ERROR== ERR_NVGPUCTRPERM - no permission")
    cmd = ncu.profile_command("ncu", "/t/profile", "/t/ncu.log", "/t/req.json", "/t/reply.json", ncu_metrics())
    assert cmd[cmd.index("--profile-from-start") + 1] == "off"  # only the candidate's own launches
    assert cmd[cmd.index("--clock-control") + 1] == "none"
    assert cmd[-4:-2] == ["-m", "kernelevolve.tuner.profile.target"]


@pytest.mark.parametrize("name", [SPLITK, GEMM, SOFTMAX, SMALL])
def test_one_profiled_call_reads_as_three_do(name):
    """Why experiments/profile-h100.yaml profiles one call per finalist (`profile.calls: 1`, a third
    of the replays of 3): on every recorded page each call alone has the label and top stalls of
    the three together, and its throughputs within 5% of theirs (GPU-time-weighted means)."""
    launches = parse.parse_raw_csv(_text(name))
    latency, flops = CASES[name]
    three = parse.summarize(launches, 3, latency_ms=latency, flops=flops)
    per_call = len(launches) // 3
    for call in range(3):
        one = parse.summarize(launches[call * per_call:(call + 1) * per_call], 1, latency_ms=latency, flops=flops)
        assert bottleneck.label(one)[0] == bottleneck.label(three)[0]
        assert [s.split("=")[0] for s in one["ncu_top_stalls"].split(", ")] == \
               [s.split("=")[0] for s in three["ncu_top_stalls"].split(", ")]
        for field in ("ncu_duration_ms", "ncu_sm_pct", "ncu_memory_pct", "ncu_dram_pct", "ncu_occupancy_pct",
                      "ncu_l2_hit_pct"):
            assert one[field] == pytest.approx(three[field], rel=0.05), field


def test_a_gemm_whose_tensor_pipe_is_busiest_is_compute_bound():
    """cuBLAS's 8192^3 bf16 GEMM on the H100 (profile suite, 2026-11-27): memory 94.5% (on-chip),
    SM 93.3%, tensor pipe 96.8%: the tensor pipe, not the memory, is what it waits on."""
    from kernelevolve.tuner.profile import bottleneck

    name, _ = bottleneck.label({"ncu_kernel_share": 0.92, "ncu_memory_pct": 94.5, "ncu_sm_pct": 93.3,
                                "ncu_tensor_pct": 96.8, "ncu_dram_pct": 29.7})
    assert name == "compute-bound"


# pages with the memory levels' bytes, peaks and clocks (tests/data/ncu/levels/README.md): one call
# each, (measured latency ms, flops of one call)
LEVEL_CASES = {"gemm_bf16_8192_persistent.csv": (1.8444, 2 * 8192 ** 3),
               "gemm_bf16_8192_vendor.csv": (1.6000, 2 * 8192 ** 3),
               "attention_bf16_b4h16s4096d128.csv": (1.3088, 4 * 4 * 16 * 4096 ** 2 * 128),
               "layer_norm_bf16_65536x1024_looped.csv": (0.09894, 402_653_184),
               "softmax_bf16_4096x32768.csv": (0.18709, 671_088_640)}


def _level_counters(name: str) -> dict:
    latency, flops = LEVEL_CASES[name]
    launches = parse.parse_raw_csv(_text(os.path.join("levels", name)))
    return parse.summarize(launches, calls=1, latency_ms=latency, flops=flops)


@pytest.mark.parametrize("name", sorted(LEVEL_CASES))
def test_level_pages_carry_every_metric_asked_for(name):
    launches = parse.parse_raw_csv(_text(os.path.join("levels", name)))
    assert parse.missing_metrics(launches, ncu_metrics()) == []


def test_memory_levels_read_as_bytes_over_their_peak_at_the_runs_clocks():
    c = _level_counters("gemm_bf16_8192_persistent.csv")
    # lts__t_bytes.sum over (96 B/cycle x 80 slices = 7,680 B/cycle) x the L2 clock x the kernel's time
    assert c["ncu_l2_peak_gbps"] == pytest.approx(13127, rel=1e-3)
    assert c["ncu_l2_bw_pct"] == pytest.approx(64.1, abs=0.1)
    assert c["ncu_dram_bw_pct"] == pytest.approx(52.5, abs=0.1)  # dram__throughput on the page: 52.6%
    assert c["ncu_dram_peak_gbps"] == pytest.approx(3352, rel=1e-3)
    assert c["ncu_l2_intensity"] == pytest.approx(2 * 8192 ** 3 / c["ncu_l2_bytes"])
    # the busiest memory unit (the L2-to-SM crossbar port's busy cycles) is not a bandwidth
    assert c["ncu_memory_pct"] == pytest.approx(81.3, abs=0.1) and c["ncu_memory_pct"] > c["ncu_l2_bw_pct"]
    v = _level_counters("gemm_bf16_8192_vendor.csv")
    assert v["ncu_l1_bw_pct"] < 0.01  # cuBLAS's TMA loads bypass the L1's tag stage
    assert v["ncu_memory_pct"] == pytest.approx(94.4, abs=0.1)  # the LSU data pipe's shared wavefronts


@pytest.mark.parametrize("name, label, roof, agrees", [
    # the GEMMs' busy units are ports and pipes, their bytes under 65% of any level's peak: the
    # tensor pipe is what they wait on, and the hierarchical roofline puts both right of every ridge
    ("gemm_bf16_8192_persistent.csv", "compute-bound", "compute", True),
    ("gemm_bf16_8192_vendor.csv", "compute-bound", "compute", True),
    ("softmax_bf16_4096x32768.csv", "memory-bound", "dram", True),
    # attention: nothing at 60% of its nominal peak (tensor pipe 49%, L2 46%) yet 61% of the roof
    # drawn at cuBLAS's measured bf16 ceiling: a disagreement the docs explain
    ("attention_bf16_b4h16s4096d128.csv", "latency-bound", "compute", False),
    # the looped layer_norm issues instructions 81% of its cycles: compute-bound by the SM, while
    # its flops put it under DRAM's roof (the roofline counts nominal flops only)
    ("layer_norm_bf16_65536x1024_looped.csv", "compute-bound", "dram", False),
])
def test_labels_on_the_hierarchical_roofline(name, label, roof, agrees):
    c = _level_counters(name)
    got, why = bottleneck.label(c)
    assert got == label and "bandwidth used: DRAM" in why
    assert bottleneck.binding_roof(c, H100, "bfloat16") == roof
    assert bottleneck.agrees_with_roofline(got, c, H100, "bfloat16") is agrees


def test_an_l2_bound_kernel_sits_under_the_l2_roof():
    # right of DRAM's ridge, left of L2's: the L2 roof is the lowest
    c = {"ncu_intensity": 1000.0, "ncu_l2_intensity": 20.0, "ncu_l2_peak_gbps": 13000.0, "ncu_tflops": 200.0,
         "ncu_l2_bw_pct": 77.0, "ncu_dram_bw_pct": 7.0, "ncu_sm_pct": 40.0, "ncu_memory_pct": 80.0}
    assert bottleneck.binding_roof(c, H100, "bfloat16") == "l2"
    assert bottleneck.label(c)[0] == "memory-bound"
    assert bottleneck.agrees_with_roofline("memory-bound", c, H100, "bfloat16") is True
    assert bottleneck.roof_fraction(c, H100, "bfloat16") == pytest.approx(200e12 / (20.0 * 13000e9))


def test_a_kernel_without_flops_sits_under_its_busiest_levels_roof():
    # a jagged layout change: no flops in its cost model, DRAM at 82% of its peak
    c = {"ncu_dram_bw_pct": 82.0, "ncu_l2_bw_pct": 40.0, "ncu_l1_bw_pct": 3.0, "ncu_sm_pct": 20.0,
         "ncu_memory_pct": 82.0}
    assert bottleneck.binding_roof(c, H100, "bfloat16") == "dram"
    assert bottleneck.roof_fraction(c, H100, "bfloat16") == pytest.approx(0.82)
    assert bottleneck.agrees_with_roofline("memory-bound", c, H100, "bfloat16") is True
    slow = {**c, "ncu_dram_bw_pct": 30.0, "ncu_memory_pct": 30.0}
    assert bottleneck.label(slow)[0] == "latency-bound"
    assert bottleneck.agrees_with_roofline("latency-bound", slow, H100, "bfloat16") is True
    assert bottleneck.binding_roof({"ncu_sm_pct": 20.0}, H100, "bfloat16") is None  # no bytes, no flops: unplaced
