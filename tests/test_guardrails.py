"""Static guardrails, run as the developers run them: ruff, mypy and import-linter, each with
its configuration in pyproject.toml, plus the house rule no tool checks (a docstring that says a
module's one job). Size is measured per function (ruff's C901 and PLR0915), not per file. Each
fails the suite when broken."""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gputop"


def _tool(name: str) -> str:
    """The tool installed beside this Python (the test extra installs all three)."""
    path = pathlib.Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' installs it")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_ruff():
    done = _run(_tool("ruff"), "check", "gputop", "tests", "benchmarks", "screenshots", "workloads")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.e2e
def test_ruff_format():
    """The code stays as `ruff format` writes it (line length from [tool.ruff])."""
    done = _run(_tool("ruff"), "format", "--check", "gputop", "tests", "benchmarks", "screenshots", "workloads")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.e2e
def test_mypy():
    done = _run(_tool("mypy"))  # files and strictness from [tool.mypy]
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.e2e
def test_import_layers():
    done = _run(_tool("lint-imports"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.unit
def test_modules_say_their_job():
    silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "__main__.py" and not ast.get_docstring(ast.parse(path.read_text())):
            silent.append(path.relative_to(ROOT).as_posix())
    assert silent == []
