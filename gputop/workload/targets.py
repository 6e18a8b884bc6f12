"""What ``--run`` names: a bundled workload, a Python script, a module (``-m pkg.train``, run
as ``python -m`` from the current directory), or a Python console script on PATH (``torchrun``,
``accelerate``, ``deepspeed``: run as the script it is), checked before anything starts."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import sys

BUNDLED = ("cnn", "mlp", "transformer", "matmul")  # python -m gputop.workloads.<name>


class WorkloadError(Exception):
    """A workload that cannot be launched; the message is one line for the user."""


def resolve(target: str, cwd: str | None = None) -> tuple[str, tuple[str, ...]]:
    """(name, command) for ``target``: a bundled workload's name, or the path of a Python script.

    WorkloadError (one line) for a missing file, a directory, a script that does not compile
    (file:line) or a name that is neither a file nor a bundled workload."""
    if not target:
        raise WorkloadError(f"no workload given: name one of {', '.join(BUNDLED)}, or a Python script")
    if target in BUNDLED:  # a file of that name in the way is still reachable as ./cnn
        if not torch_installed():
            raise WorkloadError(
                f"the bundled workloads ({', '.join(BUNDLED)}) need PyTorch, which is "
                f"not installed for {sys.executable}: {sys.executable} -m pip install torch "
                "(a CUDA build of several GB; for the CPU build add --index-url "
                "https://download.pytorch.org/whl/cpu; README: Workloads)"
            )
        return target, (sys.executable, "-m", f"gputop.workloads.{target}")
    if target.startswith("-m"):
        return _module(target[2:].strip(), cwd or os.getcwd())
    looks_like_path = os.sep in target or target.endswith(".py") or os.path.exists(target)
    if not looks_like_path:
        found = shutil.which(target)
        if found is None:
            raise WorkloadError(
                f"unknown workload {target!r}: not a file, not a command on PATH, and not "
                f"one of the bundled workloads ({', '.join(BUNDLED)})"
            )
        return target, _script(found)[1]
    return _script(target)


def _script(target: str) -> tuple[str, tuple[str, ...]]:
    """A Python script's file, checked: it is read and compiled here (a console script too)."""
    if os.path.isdir(target):
        raise WorkloadError(f"{target} is a directory, not a Python script")
    try:
        with open(target, "rb") as f:
            source = f.read()
    except FileNotFoundError:
        raise WorkloadError(f"no such file: {target}") from None
    except OSError as exc:
        raise WorkloadError(f"cannot read {target}: {exc.strerror or exc}") from None
    try:
        compile(source, target, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"{target}:{exc.lineno}" if exc.lineno else target
        raise WorkloadError(f"{where}: syntax error: {exc.msg}") from None
    except ValueError as exc:  # null bytes: not a Python source file
        raise WorkloadError(f"{target} is not a Python script ({exc})") from None
    return os.path.basename(target), (sys.executable, target)


def torch_installed() -> bool:
    """Whether the workload's interpreter (this one) can import torch; looked up, not imported:
    the monitor never imports torch."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken install, or an import hook that refuses it
        return False


def _module(module: str, cwd: str) -> tuple[str, tuple[str, ...]]:
    """``python -m module``, where its top-level package can be found from here (looked up
    without importing it: a package's ``__init__`` runs in the child only)."""
    parts = module.split(".")
    if not module or not all(p.isidentifier() for p in parts):
        raise WorkloadError(f"-m wants a module name such as pkg.train, not {module!r}")
    if importlib.machinery.PathFinder.find_spec(parts[0], [cwd, *sys.path[1:]]) is None:
        raise WorkloadError(f"no module named {parts[0]!r} in {cwd} or on the path")
    return module, (sys.executable, "-m", module)


def module_source(module: str, cwd: str | None = None) -> str | None:
    """The file ``python -m module`` would run (a package's ``__main__.py``), found the way the
    import system would from ``cwd`` without importing anything; None where it cannot be told
    (a namespace package, an extension module, a name that is not there)."""
    parts = module.split(".")
    locations: list[str] | None = [cwd or os.getcwd(), *sys.path[1:]]
    spec = None
    for part in parts:
        if locations is None:
            return None
        try:
            spec = importlib.machinery.PathFinder.find_spec(part, locations)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        locations = list(spec.submodule_search_locations) if spec.submodule_search_locations is not None else None
    if spec is None or not spec.origin or not spec.has_location:
        return None
    if spec.submodule_search_locations is not None:  # a package: python -m runs its __main__
        main = os.path.join(os.path.dirname(spec.origin), "__main__.py")
        return main if os.path.isfile(main) else None
    return spec.origin if spec.origin.endswith(".py") else None
