"""Where the packages are: the metadata is in pyproject.toml; this file only maps the folders of the
project layout (tuner/, kernels/, search_spaces/) into the one installed namespace `kernelevolve`
(kernelevolve/__init__.py says why). Computed here, not listed in pyproject.toml, so that a new
sub-package is shipped without anyone remembering to add it."""
from setuptools import find_packages, setup

PARTS = ("tuner", "kernels", "search_spaces")
packages = ["kernelevolve"] + [f"kernelevolve.{p}" for part in PARTS
                               for p in [part] + [f"{part}.{sub}" for sub in find_packages(part)]]
setup(packages=packages,
      package_dir={"kernelevolve": "kernelevolve", **{f"kernelevolve.{p}": p for p in PARTS}})
