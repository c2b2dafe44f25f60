"""Several candidates in one ncu run (tuner.profile.batch, candidate.profile_many), on the CPU.

Which launch is whose is read from the NVTX column of the raw page; here pages are built from the
recorded H100 pages of tests/data/ncu/ (each candidate's rows tagged with its range, as ncu
--nvtx writes them), and tests/fake_ncu.py writes such pages for the real target process, which
serves a list of requests in the Triton interpreter."""
import csv
import io
import os

import pytest

from kernelevolve.tuner.profile import batch, ncu, parse
from kernelevolve.tuner.profile.candidate import counters, profile_many

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data", "ncu")
GEMM, SPLITK, SOFTMAX, SMALL = (os.path.join(DATA, f) for f in (
    "gemm_bf16_4096.csv", "gemm_bf16_1024x1024x16384_splitk4.csv", "softmax_bf16_4096x32768.csv",
    "softmax_bf16_64x1024.csv"))
NVTX = parse.NVTX_COLUMNS[0]
OK = {"status": "ok", "calls": 3}


def _page(tagged_files: list[tuple[str | None, str]]) -> str:
    """One raw page of several recorded pages' launches, in order, renumbered; each file's rows in
    the NVTX range of its tag (None: no range)."""
    header, units, rows = None, None, []
    for tag, path in tagged_files:
        with open(path, encoding="utf-8") as fh:
            head, unit_row, *body = list(csv.reader(fh))
        at = head.index("Kernel Name")
        header, units = head[:at] + [NVTX] + head[at:], unit_row[:at] + [""] + unit_row[at:]
        cell = f'1  "<default domain>:{tag}:none:none:none:none:ASCII:{tag}"' if tag else ""
        for row in body:
            rows.append([str(len(rows))] + row[1:at] + [cell] + row[at:])
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([header, units, *rows])
    return out.getvalue()


def _launches(path: str) -> list[parse.KernelLaunch]:
    with open(path, encoding="utf-8") as fh:
        return parse.parse_raw_csv(fh.read())


def test_each_candidates_launches_are_those_in_its_nvtx_range():
    tags = [r["nvtx"] for r in batch.tagged([{"op": "profile"}] * 3)]
    assert tags == ["kernelevolve_profile_0", "kernelevolve_profile_1", "kernelevolve_profile_2"]
    # candidate 1 failed its verification (no launch); 2 is split-K: 3 kernels per call
    page = _page([(tags[0], GEMM), (tags[2], SPLITK)])
    launches = parse.parse_raw_csv(page)
    assert len(launches) == 3 + 9 and "kernelevolve_profile_2" in launches[-1].range
    assert "Kernel Name" not in launches[0].values and NVTX not in launches[0].values  # identity columns
    parts = batch.split(launches, [OK, {"status": "incorrect"}, OK])
    assert [len(p) for p in parts] == [3, 0, 9]
    for part, path in ((parts[0], GEMM), (parts[2], SPLITK)):  # the same counters as the page alone
        assert parse.summarize(part, 3) == pytest.approx(parse.summarize(_launches(path), 3))
        assert [l.values for l in parse.parse_raw_csv(batch.rows_of(page, part))] == [l.values for l in part]
    assert counters(parts[2], OK, [], 0.08749)["bottleneck"] == "memory-bound"  # tests/data/ncu/README.md


def test_without_nvtx_ranges_launches_are_attributed_only_when_one_candidate_ran():
    launches = _launches(SOFTMAX)  # a page without the NVTX column: no launch names a range
    assert all(l.range == "" for l in launches)
    assert batch.split(launches, [OK]) == [launches]
    assert batch.split(launches, [{"status": "invalid"}, OK]) == [[], launches]
    assert batch.split(launches, [OK, OK]) is None  # the caller profiles them one per run
    assert batch.split([], [{"status": "invalid"}]) == [[]]


def test_the_replay_passes_are_read_from_ncus_log():
    log = ('==PROF== Profiling "matmul_kernel" - 0: 0%....50%....100% - 21 passes\n'
           '==PROF== Profiling "splitk_finish_kernel" - 1: 0%....50%....100% - 19 passes\n')
    assert ncu.NcuRun("", [], None, log, [], []).passes == 21
    assert ncu.NcuRun("", [], None, "==PROF== Disconnected", [], []).passes is None


CONFIG = {"ONLINE": False, "BLOCK": 128, "ROWS": 1, "num_warps": 4, "num_stages": 1}


def _logged(cid: str, config: dict) -> dict:
    return {"run_id": cid, "candidate_id": cid, "kernel_ref": "kernelevolve.search_spaces.softmax:TUNABLE",
            "problem": {"rows": 64, "cols": 128, "dtype": "float16"}, "hardware": "h100",
            "bench": {"clock": "do_bench"}, "config": config, "latency_ms": 0.2}


@pytest.fixture
def fake_ncu(monkeypatch, tmp_path):
    """tests/fake_ncu.py as ncu; request k of a run gets the recorded page k % 3 of (big softmax,
    small softmax, 4096^3 GEMM). Returns the file listing each ncu run."""
    calls = tmp_path / "ncu_runs.txt"
    monkeypatch.setenv(ncu.NCU_ENV, os.path.join(HERE, "fake_ncu.py"))
    monkeypatch.setenv("FAKE_NCU_CSV", os.pathsep.join([SOFTMAX, SMALL, GEMM]))
    monkeypatch.setenv("FAKE_NCU_CALLS", str(calls))
    for name in ("FAKE_NCU_FAIL", "FAKE_NCU_NO_NVTX"):
        monkeypatch.delenv(name, raising=False)
    return calls


def _runs(calls) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


# the middle one breaks the space's constraints (BLOCK under the row length without ONLINE): the
# target rejects it before its launches, and goes on with the next
FINALISTS = [_logged("a", CONFIG), _logged("b", {**CONFIG, "BLOCK": 64}), _logged("c", {**CONFIG, "num_warps": 2})]


def test_a_studys_finalists_share_one_ncu_run_and_keep_their_own_outcomes(fake_ncu, tmp_path):
    a, b, c = profile_many(FINALISTS, str(tmp_path / "run"), calls=3, timeout_s=300)
    assert _runs(fake_ncu) == 1  # one ncu, one target process for the three
    assert "fields" not in b and "did not run under ncu: invalid" in b["error"]
    # each got the counters of its own launches: a the big softmax's page, c the GEMM's
    assert (a["fields"]["bottleneck"], c["fields"]["bottleneck"]) == ("memory-bound", "compute-bound")
    assert a["fields"]["ncu_dram_pct"] == pytest.approx(85.146, abs=1e-3)
    assert c["fields"]["ncu_kernel_names"] == "matmul_kernel" and c["fields"]["ncu_grid_size"] == 512
    assert a["fields"]["ncu_version"].startswith("2025.3.1")
    files = {os.path.basename(p) for p in a["files"]}
    assert files == {"profile.csv", "ncu.log", "profile.ncu-rep"}
    own = [p for p in c["files"] if p.endswith("profile.csv")][0]  # c's rows of the run's page, only
    with open(own, encoding="utf-8") as fh:
        assert [l.name for l in parse.parse_raw_csv(fh.read())] == ["matmul_kernel"] * 3
    assert a["run"]["candidates"] == 3 and a["run"]["passes"] == 9 and len(a["run"]["served_s"]) == 3


def test_an_ncu_without_nvtx_ranges_profiles_the_candidates_that_ran_one_per_run(fake_ncu, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_NCU_NO_NVTX", "1")
    a, b, c = profile_many(FINALISTS, str(tmp_path / "run"), calls=3, timeout_s=300)
    assert _runs(fake_ncu) == 3  # the shared run, then a and c alone (b's reason stands)
    assert "did not run under ncu: invalid" in b["error"]
    # alone, each is request 0 of its run: the big softmax's page
    assert a["fields"]["bottleneck"] == c["fields"]["bottleneck"] == "memory-bound"
    assert a["run"]["candidates"] == c["run"]["candidates"] == 1 and a["run"]["alone"]


def test_ncu_refusing_to_profile_is_every_candidates_reason(fake_ncu, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_NCU_FAIL", "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission")
    got = profile_many(FINALISTS[:2], str(tmp_path / "run"), calls=3, timeout_s=300)
    assert all("NVreg_RestrictProfilingToAdminUsers=0" in r["error"] for r in got)
