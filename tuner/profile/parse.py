"""Nsight Compute's raw page (`ncu --import REPORT --page raw --csv`) -> one candidate's counters.

The raw page is one CSV row per profiled kernel launch: identity columns ("ID", "Kernel Name",
"Block Size", ...) then one column per metric; the row after the header holds each metric's unit
(empty for identity columns). Values may carry thousands separators ("1,234.5") or be "n/a".
Lines that are not CSV (`==PROF==`, `==WARNING==` from a captured ncu stdout) are skipped.

A report taken with `ncu --nvtx` has one more identity column, the NVTX push/pop range stack of
each launch ("thread Domain:Push/Pop_Range:PL_Type:...:Msg", e.g. `1  "<default domain>:NAME:none:
...:none"`): it is kept as the launch's `range`, which tells apart the candidates profiled in one
process (tuner.profile.batch).

Units are converted to the ones tuner.profile.metrics names (time in ms, bytes in bytes, % as
%), whatever `--print-units` was, so a report exported with auto-scaled units (usecond,
Mbyte) parses to the same numbers as one with base units.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from kernelevolve.tuner.profile.metrics import COUNTERS, LEVELS, STALL_REASONS, TOP_STALLS, stall_metric

# NVTX columns: push/pop ranges (what tuner/profile/launches.py pushes) and start/end ranges
NVTX_COLUMNS = ("thread Domain:Push/Pop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg",
                "Id:Domain:Start/Stop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg")
IDENTITY = ("ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Context", "Stream",
            "Block Size", "Grid Size", "Device", "CC") + NVTX_COLUMNS

_TIME_MS = {"nsecond": 1e-6, "ns": 1e-6, "usecond": 1e-3, "us": 1e-3, "msecond": 1.0, "ms": 1.0,
            "second": 1e3, "s": 1e3}
_HZ = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9, "cycle/second": 1.0, "cycle/msecond": 1e3,
       "cycle/usecond": 1e6, "cycle/nsecond": 1e9}
_BYTES = {"byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "Tbyte": 1e12,
          "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


class NcuParseError(Exception):
    """The text is not an Nsight Compute raw-page CSV (no header with "Kernel Name")."""


@dataclass
class KernelLaunch:
    """One profiled launch: its kernel's name, its metric values in the units of metrics.py, and
    the NVTX ranges it ran in (the raw cell; "" where the report has no NVTX column)."""

    id: str
    name: str
    values: dict[str, float] = field(default_factory=dict)
    range: str = ""


def number(text: str) -> float | None:
    """A metric value as a float; None for "n/a", "" and other non-numbers."""
    text = (text or "").strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


def to_base(value: float, unit: str, metric: str) -> float:
    """A value in the unit metrics.py uses for its metric: ms for gpu__time_duration, bytes for
    byte counts (SI prefixes, as ncu prints them); anything else as printed."""
    unit = (unit or "").strip()
    if metric.startswith("gpu__time_duration"):
        return value * _TIME_MS.get(unit, 1e-6)  # no unit printed: ncu's base unit, nanoseconds
    if unit in _BYTES:
        return value * _BYTES[unit]
    if unit.lower() in _HZ:  # a clock: per second
        return value * _HZ[unit.lower()]
    if unit.endswith("/cycle") and unit[:-len("/cycle")] in _BYTES:  # a peak: bytes per cycle
        return value * _BYTES[unit[:-len("/cycle")]]
    return value


def _csv_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("==")]


def _is_nvtx(column: str) -> bool:
    """An NVTX range column, by the names ncu gives them (NVTX_COLUMNS) or their shape."""
    return column in NVTX_COLUMNS or "_Range:" in column


def parse_raw_csv(text: str) -> list[KernelLaunch]:
    """Every launch of a raw-page CSV, in the report's order."""
    rows = list(csv.reader(io.StringIO("\n".join(_csv_lines(text)))))
    head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
    if head is None:
        raise NcuParseError("no Nsight Compute raw-page header (a row with \"Kernel Name\") in the output")
    header = rows[head]
    body = rows[head + 1:]
    units = [""] * len(header)
    id_col, name_col = header.index("ID") if "ID" in header else None, header.index("Kernel Name")
    nvtx_cols = [i for i, c in enumerate(header) if _is_nvtx(c)]
    if body and id_col is not None and not body[0][id_col].strip():  # the units row
        units, body = body[0], body[1:]
    launches = []
    for row in body:
        if len(row) < len(header):
            continue  # a truncated line (ncu killed mid-write) carries nothing trustworthy
        values = {}
        for col, metric in enumerate(header):
            if metric in IDENTITY or col in nvtx_cols:
                continue
            v = number(row[col])
            if v is not None:
                values[metric] = to_base(v, units[col] if col < len(units) else "", metric)
        launches.append(KernelLaunch(row[id_col] if id_col is not None else str(len(launches)),
                                     row[name_col], values, " ".join(row[c] for c in nvtx_cols)))
    return launches


def _weighted(launches: list[KernelLaunch], metric: str) -> float | None:
    """The metric averaged over launches, weighted by each launch's GPU time (a ratio of a kernel
    that ran 10x longer counts 10x); a plain mean where durations are missing."""
    pairs = [(l.values[metric], l.values.get(COUNTERS["ncu_duration_ms"][0], 0.0)) for l in launches
             if metric in l.values]
    if not pairs:
        return None
    total = sum(w for _, w in pairs)
    if total <= 0:
        return sum(v for v, _ in pairs) / len(pairs)
    return sum(v * w for v, w in pairs) / total


def summarize(launches: list[KernelLaunch], calls: int, latency_ms: float | None = None,
              flops: float | None = None) -> dict:
    """One candidate's profile fields (tuner.records.schema: the ncu_* fields) from the launches of
    `calls` calls of its launcher. Every launch of the profiled range counts: the range holds the
    candidate's launcher and nothing else (tuner.measure.evaluate `profile`), i.e. what its
    timing timed, a torch helper kernel inside the launcher (split-K's zero fill) included.
    Rates are GPU-time-weighted means, counts are per call; launch geometry is the longest
    kernel's."""
    if not launches:
        return {}
    picked = launches
    calls = max(1, int(calls))
    dur = COUNTERS["ncu_duration_ms"][0]
    out: dict = {"ncu_kernels": len(picked) / calls,
                 "ncu_kernel_names": ",".join(sorted({l.name.split("(")[0] for l in picked}))[:500]}
    per_call = {"ncu_duration_ms", "ncu_dram_bytes", "ncu_instructions"}
    geometry = {"ncu_registers", "ncu_grid_size", "ncu_waves"}
    longest = max(picked, key=lambda l: l.values.get(dur, 0.0))
    for name, (metric, _) in COUNTERS.items():
        if name in per_call:
            vals = [l.values[metric] for l in picked if metric in l.values]
            if vals:
                out[name] = sum(vals) / calls
        elif name in geometry:
            if metric in longest.values:
                out[name] = longest.values[metric]
        else:
            v = _weighted(picked, metric)
            if v is not None:
                out[name] = v
    stalls = {r: _weighted(picked, stall_metric(r)) for r in STALL_REASONS}
    stalls = {r: v for r, v in stalls.items() if v is not None}
    out.update({f"ncu_stall_{r}": v for r, v in stalls.items()})
    # "selected" is the cycle a warp issues, not a stall; it is logged but never a top stall
    top = sorted(((v, r) for r, v in stalls.items() if r != "selected"), reverse=True)[:TOP_STALLS]
    if top:
        out["ncu_top_stalls"] = ", ".join(f"{r}={v:.3g}" for v, r in top)
    d, b = out.get("ncu_duration_ms"), out.get("ncu_dram_bytes")
    if d and b is not None:
        out["ncu_dram_gbps"] = b / (d * 1e-3) / 1e9
    if d and latency_ms:
        out["ncu_kernel_share"] = d / latency_ms
    if d and flops:
        out["ncu_tflops"] = flops / (d * 1e-3) / 1e12
        if b:
            out["ncu_intensity"] = flops / b
    out.update(level_fields(picked, calls, flops))
    return out


def level_fields(launches: list[KernelLaunch], calls: int, flops: float | None = None) -> dict:
    """Each memory level's bytes per call, peak bandwidth and use of it (metrics.LEVELS): the
    hierarchical roofline's inputs. A level's use is its bytes over what its peak could have moved
    in the launches' GPU time, each launch at its own clocks (so a level at 100% moved its peak)."""
    dur = COUNTERS["ncu_duration_ms"][0]
    out: dict = {}
    for level, (nbytes, peak, clock) in LEVELS.items():
        have = [l for l in launches if all(m in l.values for m in (nbytes, peak, clock, dur))]
        if not have:
            continue
        moved = sum(l.values[nbytes] for l in have)
        could = sum(l.values[peak] * l.values[clock] * l.values[dur] * 1e-3 for l in have)  # bytes
        seconds = sum(l.values[dur] * 1e-3 for l in have)
        if could <= 0 or seconds <= 0:
            continue
        out[f"ncu_{level}_peak_gbps"] = could / seconds / 1e9
        out[f"ncu_{level}_bw_pct"] = 100.0 * moved / could
        if level == "dram":  # its bytes per call and intensity are ncu_dram_bytes and ncu_intensity
            continue
        out[f"ncu_{level}_bytes"] = moved / max(1, int(calls))
        if flops and moved:
            out[f"ncu_{level}_intensity"] = flops * max(1, int(calls)) / moved
    return out


def missing_metrics(launches: list[KernelLaunch], wanted) -> list[str]:
    """The wanted metrics no launch reported (a name the installed ncu does not know, or n/a)."""
    seen = {m for l in launches for m in l.values}
    return [m for m in wanted if m not in seen]
