"""Kernels by name: the built-in ones, and users' own by `path/to/file.py:object` or `module:object`.

A `Tunable` pairs a kernel's `KernelSpec` with its search-space function. Built-in kernels are
listed here by reference so that naming one imports only that kernel. A user's reference is
code: importing it runs it with the user's rights, exactly like `python file.py` would.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    # for the annotation alone: importing kernels.spec imports torch (1-4 s), and a trial actor
    # that only sends candidates (tuner/execution/trial.py, lanes.my_lane) must not pay it
    from kernelevolve.kernels.spec import KernelSpec

BUILTIN: dict[str, str] = {
    "matmul": "kernelevolve.search_spaces.matmul:TUNABLE",
    "gemm_epilogue": "kernelevolve.search_spaces.gemm_epilogue:TUNABLE",
    "gemm_fp8": "kernelevolve.search_spaces.gemm_fp8:TUNABLE",
    "bmm": "kernelevolve.search_spaces.bmm:TUNABLE",
    "conv2d": "kernelevolve.search_spaces.conv2d:TUNABLE",
    "softmax": "kernelevolve.search_spaces.softmax:TUNABLE",
    "layer_norm_fwd": "kernelevolve.search_spaces.norms:LAYER_NORM_FWD",
    "layer_norm_bwd": "kernelevolve.search_spaces.norms:LAYER_NORM_BWD",
    "rms_norm_fwd": "kernelevolve.search_spaces.norms:RMS_NORM_FWD",
    "rms_norm_bwd": "kernelevolve.search_spaces.norms:RMS_NORM_BWD",
    "embedding_bag_fwd": "kernelevolve.search_spaces.embedding_bag:EMBEDDING_BAG_FWD",
    "embedding_bag_bwd": "kernelevolve.search_spaces.embedding_bag:EMBEDDING_BAG_BWD",
    "jagged_to_padded_dense": "kernelevolve.search_spaces.jagged:JAGGED_TO_PADDED",
    "padded_dense_to_jagged": "kernelevolve.search_spaces.jagged:PADDED_TO_JAGGED",
    "jagged_softmax": "kernelevolve.search_spaces.jagged:JAGGED_SOFTMAX",
    "jagged_dense_bmm": "kernelevolve.search_spaces.jagged:JAGGED_DENSE_BMM",
    "dot_interaction": "kernelevolve.search_spaces.interaction:TUNABLE",
    "attention": "kernelevolve.search_spaces.attention:TUNABLE",
}


@dataclass(frozen=True)
class Tunable:
    kernel: KernelSpec
    space: Callable  # (problem, hardware) -> tuner.search.space.Space
    # (problem, hardware) -> configs of that space evaluated first in every study of the kernel
    # (search.kernel_starts): the template's own generic starting points, never a shape's own
    start: Callable | None = None


class KernelNotFound(Exception):
    pass


def resolve_ref(name: str, base_dir: str = ".") -> str:
    """The canonical reference for a kernel name: built-in names map to their module; a file path
    is made absolute (relative to the experiment file's folder) so workers find the same file."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" not in name:
        raise KernelNotFound(
            f"unknown kernel '{name}': built-in kernels are {', '.join(sorted(BUILTIN))}; "
            "a kernel of your own is named 'path/to/file.py:OBJECT' or 'package.module:OBJECT'")
    target, _, obj = name.rpartition(":")
    if target.endswith(".py"):
        path = target if os.path.isabs(target) else os.path.normpath(os.path.join(base_dir, target))
        if not os.path.isfile(path):
            raise KernelNotFound(f"kernel file not found: {path}")
        return f"{path}:{obj}"
    return current_ref(name)


# Before the project's packages moved under the one `kernelevolve` namespace, runs logged their
# built-in kernels as `kernelevolve.search_spaces.matmul:TUNABLE`; those runs must still reproduce and warm-start.
LEGACY_PACKAGES = ("tuner", "kernels", "search_spaces")


def current_ref(ref: str) -> str:
    """A logged reference as it is imported today: a built-in module's pre-namespace name gets its
    `kernelevolve.` prefix (in a checkout the old name still imports, from the same file: it must
    not load a second copy of the engine's classes); a user's own `kernels` package, another file,
    keeps its name."""
    target, sep, obj = ref.rpartition(":")
    if target.split(".")[0] not in LEGACY_PACKAGES or target.endswith(".py"):
        return ref

    def origin(name):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        return os.path.realpath(spec.origin) if spec is not None and spec.origin else None

    ours = origin(f"kernelevolve.{target}")
    if ours is None:
        return ref
    theirs = origin(target)
    return f"kernelevolve.{target}{sep}{obj}" if theirs in (None, ours) else ref


def load(ref: str) -> Tunable:
    """Import the object a canonical reference names and check that it is a Tunable."""
    ref = current_ref(ref)
    target, _, obj = ref.rpartition(":")
    try:
        if target.endswith(".py"):
            mod_name = "kernelevolve_user_" + os.path.splitext(os.path.basename(target))[0]
            module = sys.modules.get(mod_name)
            if module is None or getattr(module, "__file__", None) != target:
                # as `python file.py` does: the file's folder first on sys.path, so a plug-in
                # imports the modules beside it (`from my_kernel import SPEC`) in the driver and in
                # every worker alike
                folder = os.path.dirname(target)
                if folder not in sys.path:
                    sys.path.insert(0, folder)
                spec = importlib.util.spec_from_file_location(mod_name, target)
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except Exception as exc:  # the user's module failed to import: say which and why
        raise KernelNotFound(f"cannot import kernel module '{target}': {type(exc).__name__}: {exc}") from exc
    try:
        found = getattr(module, obj)
    except AttributeError:
        raise KernelNotFound(f"'{target}' has no object named '{obj}'") from None
    if not isinstance(found, Tunable):
        raise KernelNotFound(
            f"'{ref}' is a {type(found).__name__}, not a kernelevolve.tuner.experiment.registry.Tunable "
            "(Tunable(kernel=KernelSpec(...), space=space_function))")
    return found


# The kernel's source, hashed: logged with each study so `kernelevolve reproduce` can tell
# whether the code it re-runs is the code that was swept.
def _module_file(name: str) -> str | None:
    f = getattr(sys.modules.get(name), "__file__", None)
    return os.path.abspath(f) if f else None


def _own_imports(module, folder: str | None) -> list[str]:
    """Files of the modules `module` takes names from, and those modules' in turn, that are its
    own: of its top-level package (kernels/gemm_epilogue.py's kernels/matmul.py and
    kernels/gemm_tiles.py, kernels/conv2d.py's kernels/conv2d_staged.py), or, for a plug-in,
    anywhere under the plug-in's own folder (a helper module beside the kernel file, imported as
    `import helper` or `from helper import rowwise`). A template's code lives there too, so a
    change there must change the hash."""
    parts = module.__name__.split(".")
    # a built-in kernel's own package is kernelevolve.kernels, not the whole namespace (the engine)
    pkg = ".".join(parts[:2]) if parts[0] == "kernelevolve" and len(parts) > 2 else parts[0]
    prefix = folder.rstrip(os.sep) + os.sep if folder else None

    def own(name: str) -> bool:
        if name.startswith(pkg + "."):
            return True
        f = _module_file(name)
        # not an installed package that happens to live below it (a .venv beside the plug-in)
        return bool(prefix and f and f.startswith(prefix)
                    and not {"site-packages", "dist-packages"} & set(f[len(prefix):].split(os.sep)))

    seen, todo = {module.__name__}, [module]
    while todo:
        for value in list(vars(todo.pop()).values()):
            name = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            if isinstance(name, str) and name not in seen and name in sys.modules and own(name):
                seen.add(name)
                todo.append(sys.modules[name])
    files = (_module_file(n) for n in sorted(seen - {module.__name__}))
    return [f for f in files if f]


def kernel_source_files(ref: str, tunable) -> list[str]:
    """The module defining the KernelSpec's launch function, the modules of its package (or, for a
    plug-in file, of its folder) it imports from, then the search-space module and, for a plug-in
    file, the modules of its folder that one imports. Raises TypeError where the launch function
    has no source file (a C function, say)."""
    launch = tunable.kernel.launch
    while isinstance(launch, functools.partial):
        launch = launch.func
    launch = inspect.unwrap(launch)
    files = [inspect.getsourcefile(launch)]
    target = ref.rpartition(":")[0]
    folder = os.path.dirname(os.path.abspath(target)) if target.endswith(".py") else None
    module = inspect.getmodule(launch)
    if module is not None:
        files += _own_imports(module, folder)
    if target.endswith(".py"):
        files.append(target)
        space_module = next((m for m in list(sys.modules.values())
                             if getattr(m, "__file__", None) == target), None)
        if space_module is not None:
            files += _own_imports(space_module, folder)
    else:
        spec = importlib.util.find_spec(target)
        files.append(spec.origin if spec else None)
    out = []
    for f in files:
        if f and os.path.abspath(f) not in out:
            out.append(os.path.abspath(f))
    return out


def kernel_source_sha(ref: str, tunable) -> str:
    """sha256 over those files' names (not their folders: a checkout elsewhere hashes the same)
    and bytes; "unavailable (why)" where they cannot be found or read: a sweep starts even then."""
    h = hashlib.sha256()
    try:
        for path in kernel_source_files(ref, tunable):
            h.update(os.path.basename(path).encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(fh.read())
            h.update(b"\0")
    except (OSError, TypeError, ImportError) as exc:
        return f"unavailable ({type(exc).__name__}: {exc})"[:200]
    return h.hexdigest()
