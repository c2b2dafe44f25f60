"""The tuned-config table: `kernelevolve export` writes it from the store (and triton.Config lists);
the entry points look configs up in it: nearest shape bucket of the same kernel, dtype and GPU
kind, the default otherwise, never a config tuned on another GPU kind."""
import json

import pytest
import torch
import triton
from mlflow.tracking import MlflowClient

import tiny_sweep
from kernelevolve.kernels import interaction
from kernelevolve.kernels import matmul as mm
from kernelevolve.kernels import tuned
from kernelevolve.tuner.deploy import export
from kernelevolve.tuner.cli import main
from kernelevolve.tuner.measure.verify import check

CPU_FP16 = {"hardware": "cpu-interpreter", "interpreter": True, "device_match": [], "dtype": "float16"}
H100 = {"hardware": "h100", "interpreter": False, "device_match": ["H100"]}


@pytest.fixture(autouse=True)
def no_table(monkeypatch):
    monkeypatch.delenv(tuned.ENV_VAR, raising=False)
    tuned.clear_table()
    yield
    tuned.clear_table()


def _entry(problem, config, latency=1.0, **where):
    return {"kernel": "matmul", "problem": problem, "config": config, "latency_ms": latency,
            "dtype": problem.get("dtype"), "run_id": "r", **where}


def _write(tmp_path, entries, name="t.json", schema=1):
    path = tmp_path / name
    path.write_text(json.dumps({"schema": schema, "entries": entries}))
    return str(path)


def _spy(monkeypatch, module):
    seen = []
    real = module.launch

    def launch(inputs, out, config):
        seen.append(dict(config))
        return real(inputs, out, config)
    monkeypatch.setattr(module, "launch", launch)
    return seen


def _mm(M, N, K, dtype=torch.float16):
    return torch.randn(M, K).to(dtype), torch.randn(K, N).to(dtype)


SMALL = dict(mm.DEFAULT_CONFIG, BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, GROUP_M=1, num_stages=1)
BIG = dict(mm.DEFAULT_CONFIG, BLOCK_M=32, BLOCK_N=64, BLOCK_K=64, GROUP_M=4, num_stages=1)


def test_nearest_bucket_of_same_kernel_dtype_and_device(tmp_path, monkeypatch):
    tuned.load_table(_write(tmp_path, [
        _entry({"M": 16, "N": 16, "K": 16, "dtype": "float16"}, SMALL, **CPU_FP16),
        _entry({"M": 128, "N": 128, "K": 128, "dtype": "float16"}, BIG, **CPU_FP16)]))
    seen = _spy(monkeypatch, mm)
    a, b = _mm(100, 72, 130)  # buckets 128 x 128 x 256: one power of two from BIG, 11 from SMALL
    c = mm.matmul(a, b)
    assert seen[-1] == BIG and check(c, a.double() @ b.double()).ok
    mm.matmul(*_mm(20, 17, 9))  # buckets 32 x 32 x 16: nearer SMALL
    assert seen[-1] == SMALL
    mm.matmul(*_mm(100, 72, 130, torch.float32))  # no float32 entry: the default
    assert seen[-1] == mm.DEFAULT_CONFIG
    mm.matmul(*_mm(16, 16, 16), config=BIG)  # an explicit config always wins
    assert seen[-1] == BIG


def test_other_gpu_kinds_never_apply(tmp_path, monkeypatch):
    path = _write(tmp_path, [_entry({"M": 128, "N": 128, "K": 128, "dtype": "float16"}, BIG, **H100)])
    tuned.load_table(path)
    seen = _spy(monkeypatch, mm)
    mm.matmul(*_mm(128, 128, 128))  # this process runs the interpreter, not an H100
    assert seen[-1] == mm.DEFAULT_CONFIG
    table = tuned.Table.from_file(path)
    dims = {"M": 128, "N": 128, "K": 128}
    assert table.lookup("matmul", dims, "float16", "NVIDIA H100 80GB HBM3") == BIG
    assert table.lookup("matmul", dims, "float16", "NVIDIA H200") is None
    assert table.lookup("matmul", dims, "float16", tuned.INTERPRETER) is None
    bare = tuned.Table({"schema": 1, "entries": [_entry({"M": 128, "N": 128, "K": 128, "dtype": "float16"},
                                                        BIG, hardware="h100")]})
    assert bare.lookup("matmul", dims, "float16", "NVIDIA H100 80GB HBM3") is None  # no device_match


def test_a_tuned_config_these_tensors_cannot_take_falls_back(tmp_path, monkeypatch):
    tma = dict(BIG, TMA=True)
    problem = {"M": 128, "N": 128, "K": 128, "dtype": "float16"}
    tuned.load_table(_write(tmp_path, [_entry(problem, tma, **CPU_FP16)]))
    seen = _spy(monkeypatch, mm)
    a, b = _mm(96, 128, 128)  # rows of 256 B: TMA can read them (the interpreter runs descriptors)
    assert check(mm.matmul(a, b), a.double() @ b.double()).ok and seen[-1] == tma
    mm.matmul(*_mm(100, 72, 130))  # K = 130: rows of 260 B, not 16-byte aligned for TMA
    assert seen[-1] == mm.DEFAULT_CONFIG


def test_env_var_names_the_table_and_a_bad_one_warns(tmp_path, monkeypatch):
    seen = _spy(monkeypatch, mm)
    monkeypatch.setenv(tuned.ENV_VAR, _write(tmp_path, [_entry({"M": 64, "N": 64, "K": 64, "dtype": "float16"},
                                                               SMALL, **CPU_FP16)]))
    mm.matmul(*_mm(64, 64, 64))
    assert seen[-1] == SMALL
    monkeypatch.setenv(tuned.ENV_VAR, str(tmp_path / "missing.json"))
    with pytest.warns(RuntimeWarning, match="missing.json"):
        mm.matmul(*_mm(64, 64, 64))
    assert seen[-1] == mm.DEFAULT_CONFIG
    with pytest.raises(tuned.TableError, match="schema 1"):
        tuned.load_table(_write(tmp_path, [], name="v2.json", schema=2))


# -- from a real sweep --------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = tiny_sweep.tiny("base")
    out = tmp_path_factory.mktemp("export")
    assert main(["export", "tiny", "--uri", run["uri"], "-o", str(out / "tuned.json"),
                 "--triton-configs", str(out / "configs.py")]) == 0
    return run, out


@pytest.mark.slow
def test_export_writes_the_best_config_of_each_study(exported):
    run, out = exported
    table = json.loads((out / "tuned.json").read_text())
    assert table["schema"] == 1 and table["experiment"] == "tiny"
    [e] = table["entries"]
    client = MlflowClient(tracking_uri=run["uri"])
    parent = client.get_run(e["run_id"])
    assert parent.data.tags["kernelevolve.role"] == "study"
    assert e["config"] == run["summaries"][0]["best"]["config"]
    assert e["latency_ms"] == pytest.approx(parent.data.metrics["best_latency_ms"])
    assert (e["kernel"], e["dtype"], e["hardware"], e["interpreter"]) == \
        ("dot_interaction", "float16", "cpu-interpreter", True)
    assert e["problem"] == {"batch": 16, "features": 6, "dim": 64, "dtype": "float16"}
    assert e["shape_bucket"] == {"batch": 16, "features": 8, "dim": 64}
    assert e["triton"] == triton.__version__ and e["gpu_name"] and e["torch"] == torch.__version__


@pytest.mark.slow
def test_triton_configs_are_python_source(exported):
    run, out = exported
    ns = {}
    exec((out / "configs.py").read_text(), ns)
    [cfg] = ns["DOT_INTERACTION_CPU_INTERPRETER_FLOAT16"]
    best = run["summaries"][0]["best"]["config"]
    assert isinstance(cfg, triton.Config)
    assert cfg.kwargs == {k: v for k, v in best.items() if k not in ("num_warps", "num_stages")}
    assert (cfg.num_warps, cfg.num_stages) == (best["num_warps"], best["num_stages"])


@pytest.mark.slow
def test_entry_point_uses_the_exported_table(exported, monkeypatch):
    run, out = exported
    tuned.load_table(str(out / "tuned.json"))
    seen = _spy(monkeypatch, interaction)
    t = torch.randn(20, 6, 64).half()  # batch 20: bucket 32, the nearest is the swept 16
    z = interaction.dot_interaction(t)
    assert seen[-1] == run["summaries"][0]["best"]["config"]
    assert check(z, interaction.reference((t,))).ok
    interaction.dot_interaction(t.float())
    assert seen[-1] == interaction.DEFAULT_CONFIG


@pytest.mark.slow
def test_warm_start_from_the_table_gives_the_swept_best(exported):
    run, out = exported
    study = next(run["exp"].studies())
    points, notes = export.warm_start_points(str(out / "tuned.json"), study)
    assert points == [run["summaries"][0]["best"]["config"]] and notes[0]["used"]


@pytest.mark.slow
def test_unknown_experiment_is_exit_2(exported, capsys):
    run, out = exported
    assert main(["export", "nope", "--uri", run["uri"], "-o", str(out / "x.json")]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err


def test_values_from_the_store_stay_data_in_the_exported_python(monkeypatch):
    import os as os_mod
    import types

    from kernelevolve.tuner.deploy.export import triton_configs_source

    def no_system(cmd):
        raise AssertionError(f"exported file ran os.system({cmd!r})")

    monkeypatch.setattr(os_mod, "system", no_system)
    evil = '"); import os; os.system("x"); ("'
    table = {"experiment": 'x"""; import os; os.system("x"); """', "created": "now\nimport os",
             "entries": [{"kernel": "matmul", "hardware": "h100", "dtype": "float16",
                          "problem": {"M": 1, "note": "a\nimport os\nos.system('x')"},
                          "config": {"BLOCK_M": 64, "NAME": evil, "NAN": float("nan"),
                                     "num_warps": "4); os.system('x'); (4"},
                          "latency_ms": 0.1, "gpu_name": "H100\r\nos.system('x')", "run_id": "r" * 32}]}
    src = triton_configs_source(table)
    ns = {}
    fake = types.SimpleNamespace(Config=lambda kwargs, **opts: (kwargs, opts))
    monkeypatch.setitem(__import__("sys").modules, "triton", fake)
    exec(compile(src, "configs.py", "exec"), ns)
    [(kwargs, opts)] = ns["MATMUL_H100_FLOAT16"]
    assert kwargs["NAME"] == evil and kwargs["BLOCK_M"] == 64 and kwargs["NAN"] != kwargs["NAN"]
    assert opts == {"num_warps": "4); os.system('x'); (4"}
