"""Writes the SYNTHETIC raw-page fixtures of this folder (README.md): made-up, plausible H100
numbers in Nsight Compute's documented `--page raw --csv` layout. No value here was measured.
Kept so that what the fixtures are, and how they were made, stays visible until
benchmarks/ncu_capture.py's recordings replace them.  python tests/data/ncu/make_synthetic.py"""
import csv
import io
import os

from kernelevolve.tuner.profile.metrics import STALL_REASONS, ncu_metrics, stall_metric

HERE = os.path.dirname(os.path.abspath(__file__))
IDENTITY = ["ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Context", "Stream", "Block Size",
            "Grid Size", "Device", "CC"]
METRICS = ncu_metrics()


def units(scaled: bool) -> list[str]:
    out = []
    for m in METRICS:
        if m.startswith("gpu__time_duration"):
            out.append("usecond" if scaled else "nsecond")
        elif m == "dram__bytes.sum":
            out.append("Mbyte" if scaled else "byte")
        elif m.endswith(".pct") or "pct_of_peak" in m:
            out.append("%")
        else:
            out.append({"smsp__inst_executed.sum": "inst", "launch__registers_per_thread": "register/thread",
                        "smsp__average_warp_latency_per_inst_issued.ratio": "cycle"}.get(m, ""))
    return out


def cell(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() and abs(v) >= 1000 else f"{v:,.2f}"


def row(i: int, name: str, block: str, grid: str, values: dict, scaled: bool, jitter: float) -> list[str]:
    out = [str(i), "48211", "python3", "h100-node", name, "1", "7", block, grid, "0", "9.0"]
    for m in METRICS:
        v = values.get(m)
        if v is None:
            out.append("n/a")
            continue
        if m.startswith("gpu__time_duration"):
            v = v * jitter / (1e3 if scaled else 1)
        elif m == "dram__bytes.sum" and scaled:
            v = v / 1e6
        out.append(cell(v))
    return out


def write(name: str, launches: list, scaled: bool, prof_lines: bool = False) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(IDENTITY + METRICS)
    w.writerow([""] * len(IDENTITY) + units(scaled))
    for i, launch in enumerate(launches):
        w.writerow(row(i, *launch, scaled=scaled, jitter=1 + 0.004 * (i // len(set(l[0] for l in launches)) - 1)))
    text = buf.getvalue()
    if prof_lines:  # as a captured ncu stdout carries it
        text = ("==PROF== Connected to process 48211 (/opt/torch/.venv/bin/python3.12)\n" + text
                + "==PROF== Disconnected from process 48211\n")
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as fh:
        fh.write(text)


def counters(duration_ns, sm, mem, dram, dram_bytes, tensor, occupancy, l2_hit, inst, regs, grid, waves,
             warp_latency, **stalls) -> dict:
    names = ("gpu__time_duration.sum", "sm__throughput.avg.pct_of_peak_sustained_elapsed",
             "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
             "dram__throughput.avg.pct_of_peak_sustained_elapsed", "dram__bytes.sum",
             "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
             "sm__warps_active.avg.pct_of_peak_sustained_active", "lts__t_sector_hit_rate.pct",
             "smsp__inst_executed.sum", "launch__registers_per_thread", "launch__grid_size",
             "launch__waves_per_multiprocessor", "smsp__average_warp_latency_per_inst_issued.ratio")
    values = dict(zip(names, (duration_ns, sm, mem, dram, dram_bytes, tensor, occupancy, l2_hit, inst, regs,
                              grid, waves, warp_latency)))
    values.update({stall_metric(r): stalls.get(r, 0.0) for r in STALL_REASONS})
    return values


# bf16 GEMM 1024x1024x16384, BLOCK 128x128x64, SPLIT_K=4 atomic (benchmarks/ncu_capture.py's split-K
# case): per call a torch zero-fill of the fp32 workspace, matmul_kernel, splitk_finish_kernel
FILL = ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, "
        "std::array<char *, 1>>(int, T2, T3)", "(128, 1, 1)", "(2048, 1, 1)",
        counters(2_592, 7.9, 52.4, 52.4, 4_194_304, 0.0, 61.3, 0.9, 65_536, 16, 2048, 1.94, 30.2,
                 lg_throttle=14.8, drain=5.1, wait=2.9, long_scoreboard=0.8, selected=1.0, not_selected=0.4))
MATMUL = ("matmul_kernel", "(256, 1, 1)", "(256, 1, 1)",
          counters(62_304, 71.62, 44.07, 38.15, 74_711_040, 78.93, 12.31, 72.46, 9_633_792, 168, 256, 1.94, 11.2,
                   wait=2.61, long_scoreboard=2.17, math_pipe_throttle=1.42, barrier=1.08, short_scoreboard=0.49,
                   not_selected=0.38, mio_throttle=0.27, dispatch_stall=0.19, selected=1.0, branch_resolving=0.05,
                   no_instruction=0.04))
FINISH = ("splitk_finish_kernel", "(128, 1, 1)", "(64, 1, 1)",
          counters(4_128, 10.7, 58.9, 58.9, 6_291_456, 0.0, 24.6, 12.3, 262_144, 40, 64, 0.48, 61.7,
                   long_scoreboard=38.4, lg_throttle=4.2, wait=2.3, selected=1.0, not_selected=0.2))
# softmax bf16 4096 x 32768, one row per program, 16 warps
SOFTMAX = ("softmax_kernel", "(512, 1, 1)", "(4096, 1, 1)",
           counters(209_152, 23.84, 88.35, 86.91, 537_919_488, 0.0, 45.62, 2.91, 9_961_472, 62, 4096, 3.88, 52.3,
                    long_scoreboard=31.6, barrier=6.8, wait=2.2, short_scoreboard=1.9, mio_throttle=1.1,
                    selected=1.0, not_selected=0.4, dispatch_stall=0.3, drain=0.2))

if __name__ == "__main__":
    write("gemm_bf16_1024x1024x16384_splitk4.csv", [FILL, MATMUL, FINISH] * 3, scaled=False)
    write("softmax_bf16_4096x32768.csv", [SOFTMAX] * 3, scaled=True, prof_lines=True)
