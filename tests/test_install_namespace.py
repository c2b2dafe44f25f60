"""The installed project claims one import name, `kernelevolve`: its wheel, installed into a fresh
virtual environment beside a user's own packages called `kernels` and `tuner`, leaves those
packages theirs, and the engine, the kernels and the search spaces import and list from the wheel.

The fresh environment borrows this one's dependencies (torch, ray, ...) through a path line, so no
download is needed; this environment's own editable install of kernelevolve is not seen there (the
.pth files of a borrowed folder are never run)."""
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), ROOT], check=True, cwd=out)
    (found,) = [out / f for f in os.listdir(out) if f.endswith(".whl")]
    return found


def test_the_wheel_ships_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"kernelevolve"}, tops
    for module in ("kernelevolve/tuner/cli.py", "kernelevolve/tuner/measure/evaluate_process.py",
                   "kernelevolve/kernels/matmul.py", "kernelevolve/search_spaces/matmul.py"):
        assert module in names, module
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "kernelevolve = kernelevolve.tuner.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_beside_a_user_package_called_kernels(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", site,
                    str(wheel)], check=True)
    with open(os.path.join(site, "borrowed-dependencies.pth"), "w") as f:
        f.write(sysconfig.get_path("purelib") + "\n")
    user = tmp_path / "project"  # the user's own code: packages named like our folders
    for pkg in ("kernels", "tuner"):
        (user / pkg).mkdir(parents=True)
        (user / pkg / "__init__.py").write_text(f'WHO = "the user\'s {pkg}"\n')
    check = textwrap.dedent(f"""
        import kernels, tuner
        assert kernels.WHO == "the user's kernels" and tuner.WHO == "the user's tuner"
        import kernelevolve.tuner.cli, kernelevolve.kernels.matmul, kernelevolve.search_spaces.matmul
        from kernelevolve.tuner.experiment import registry
        tunable = registry.load(registry.resolve_ref("matmul"))
        assert type(tunable).__module__ == "kernelevolve.tuner.experiment.registry"
        for m in (kernelevolve.tuner.cli, kernelevolve.kernels.matmul):
            assert m.__file__.startswith({site!r}), m.__file__
        print("ok")
        """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of this checkout
    python = str(venv / "bin" / "python")
    out = subprocess.run([python, "-c", check], cwd=user, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
    listed = subprocess.run([python, "-m", "kernelevolve.tuner.cli", "kernels"], cwd=user, env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0 and "matmul" in listed.stdout and "softmax" in listed.stdout, listed.stderr[-2000:]


def test_runs_logged_under_the_old_top_level_names_still_load():
    """Runs logged before the namespace name their built-in kernels `kernelevolve.search_spaces.matmul:TUNABLE`:
    reproduce, export and warm start read them as today's module, never a second copy of it."""
    from kernelevolve.tuner.experiment import registry

    assert registry.current_ref("kernelevolve.search_spaces.matmul:TUNABLE") == "kernelevolve.search_spaces.matmul:TUNABLE"
    assert registry.resolve_ref("kernelevolve.search_spaces.softmax:TUNABLE") == "kernelevolve.search_spaces.softmax:TUNABLE"
    assert registry.load("kernelevolve.search_spaces.matmul:TUNABLE") is registry.load(registry.BUILTIN["matmul"])
    for ref in ("mypkg.mod:OBJ", "/abs/plugin.py:TUNABLE", "kernelevolve.kernels.not_ours:OBJ"):
        assert registry.current_ref(ref) == ref  # a user's own module keeps its name
