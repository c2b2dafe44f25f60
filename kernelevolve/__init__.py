"""kernelevolve: the one import namespace of the project's three packages.

    kernelevolve.tuner          the engine (experiment files, search, execution on Ray, measurement,
                                records, review, deployment) and the `kernelevolve` command
    kernelevolve.kernels        the Triton kernels: template, launcher, reference, cost model
    kernelevolve.search_spaces  their search spaces

Installed (a wheel, or `pip install -e .`), the three live inside this package, so the project claims
no top-level import name but `kernelevolve` and a user's own `kernels` or `tuner` package is never
shadowed. In a checkout they stay where the project layout puts them, at the repository's top level
(tuner/, kernels/, search_spaces/): there this package's search path reaches up to that folder, so
`kernelevolve.tuner` is the same module whether installed or run from the source tree.
"""
import os as _os

_here = _os.path.dirname(_os.path.abspath(__file__))
_root = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "tuner")) and _os.path.isfile(_os.path.join(_root, "tuner", "__init__.py")):
    __path__.append(_root)  # noqa: F821 (a package's __path__ is set by the import system)
