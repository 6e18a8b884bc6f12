"""The wheels the GPU machine lacks, carried there for the GPU check: its image has the NVIDIA
driver, Python, torch, pytest, psutil and prometheus-client, not textual or plotext, and nothing
can be fetched there (the device tool's README and KINDS.md).

    .venv/bin/python tests/gpu/wheels.py          here: fills .whl/ (git-ignored), builds gputop's

and on the GPU machine, ``INSTALL_LINE`` before the check (benchmarks/README.md, "The GPU check",
has the whole device call). Rebuild after any change to gputop: the check's first test fails on
a stale wheel (``installed_is_this_tree``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS_DIR = ROOT / ".whl"
INSTALL_LINE = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "
    "--upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site"
)
PREPARE_LINE = ".venv/bin/python tests/gpu/wheels.py"
# What it lacks (textual and its own needs, plotext) and what gputop should meet at the version
# tested here (nvidia-ml-py, rich). gputop itself too. The rest is on its image.
CARRY = ("textual", "plotext", "rich", "platformdirs", "mdit-py-plugins", "linkify-it-py", "nvidia-ml-py")
ON_DEVICE = ("markdown-it-py", "mdurl", "pygments", "typing-extensions", "psutil", "prometheus-client", "pytest")


def how_to_carry() -> str:
    return (
        f"carry wheels: here `{PREPARE_LINE}` (fills .whl/), then on the GPU machine "
        f"`{INSTALL_LINE}` (benchmarks/README.md has the whole device call)"
    )


def _digest(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].read_bytes())
    return h.hexdigest()


def _py_files(folder: Path, prefix: str = "") -> dict[str, Path]:
    return {prefix + p.relative_to(folder).as_posix(): p for p in folder.rglob("*.py")}


def installed_is_this_tree(where: Path) -> bool:
    """The installed package's sources are this tree's gputop/ plus workloads/ (which the wheel
    ships as gputop/workloads)."""
    tree = {**_py_files(ROOT / "gputop"), **_py_files(ROOT / "workloads", "workloads/")}
    return _digest(_py_files(where)) == _digest(tree)


def prepare(folder: Path) -> int:
    """Download the wheels the GPU machine lacks (at this environment's versions) and build
    gputop's own, into ``folder``."""
    from importlib import metadata

    folder.mkdir(exist_ok=True)
    pins = []
    for dist in CARRY:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            sys.stderr.write(f"wheels: error: {dist} is not installed here; install the project's environment first (README)\n")
            return 2
    for old in folder.glob("*.whl"):
        old.unlink()
    platforms = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64") for a in ("--platform", p)]
    download = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        *platforms,
        "-d",
        str(folder),
        *pins,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        # built from a copy: setuptools' build/ folder in the tree could carry deleted modules over
        source = Path(tmp) / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        for name in ("gputop", "workloads"):
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(folder), str(source)]
        for argv in (download, build):
            if subprocess.run(argv, timeout=600).returncode != 0:
                sys.stderr.write(f"wheels: error: failed: {' '.join(argv)}\n")
                return 1
    size = sum(p.stat().st_size for p in folder.glob("*.whl"))
    print(f"{len(list(folder.glob('*.whl')))} wheels, {size / 1e6:.1f} MB, in {folder}:")
    for p in sorted(folder.glob("*.whl")):
        print(f"  {p.name}")
    print(f"assumed on the GPU machine's image: {', '.join(ON_DEVICE)}")
    print(f'\non the GPU machine: {INSTALL_LINE}\n(the device call, with carry [".whl"]: benchmarks/README.md)')
    return 0


if __name__ == "__main__":
    sys.exit(prepare(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else WHEELS_DIR))
