"""Import boundaries: headless paths never pull in the TUI or torch; one module per dependency."""

import ast
import pathlib
import subprocess
import sys

import pytest

from gputop import metrics, model

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gputop"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "module",
    [
        "gputop.cli",
        "gputop.commands.snapshot",
        "gputop.sampler",
        "gputop.view.history",
        "gputop.sources.nvml",
        "gputop.sources.cpu",
        "gputop.view.feed",
        "gputop.trace",
        "gputop.commands.report",
        "gputop.workload",
    ],
)
def test_headless_modules_import_neither_textual_nor_torch(module):
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'textual', 'torch', 'plotext', 'textual_plotext'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"


@pytest.mark.e2e
def test_reading_a_trace_starts_no_process_machinery():
    """The trace and report import the workload contract and its rates, not the launcher. (The
    feed is not among them: it samples with asyncio, which imports subprocess itself.)"""
    code = "import sys, gputop.trace, gputop.commands.report; print('subprocess' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.e2e
def test_the_live_view_imports_no_other_command():
    """Parsing a live-view command line (and the app's own imports) loads no other command's
    module: record, report, compare, merge, serve, cluster, the trace code (issue #14: start-up
    and memory). Naming a command loads that one."""
    code = (
        "import sys\n"
        "from gputop import cli\n"
        "args = cli.build_parser(cli._commands_needed(['--interval', '0.5'])).parse_args(['--interval', '0.5'])\n"
        "import gputop.tui.app\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('gputop.trace', 'gputop.cluster', "
        "'gputop.workload.launcher')) or m in {"
        + ", ".join(repr(f"gputop.{c}") for c in ("record", "report", "compare", "merge", "serve", "replay"))
        + "})\n"
        "print(','.join(loaded))\n"
        "cli.build_parser(cli._commands_needed(['report', 'x.json']))\n"
        "print('gputop.commands.report' in sys.modules, 'gputop.commands.record' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["", "True False"], out.stdout


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.unit
@pytest.mark.parametrize(
    "dependency, allowed",
    [
        ("pynvml", {"sources/nvml"}),
        ("amdsmi", {"sources/amd"}),
        ("psutil", {"sources/cpu.py"}),
        ("subprocess", {"workload/process.py"}),
        ("torch", set()),
        ("textual", {"tui"}),
    ],
)
def test_each_dependency_has_one_home(dependency, allowed):
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if dependency in _imports(path) and not any(rel == a or rel.startswith(a + "/") for a in allowed):
            offenders.append(rel)
    assert offenders == []


@pytest.mark.unit
def test_model_fields_are_catalogue_metrics():
    """The JSON keys, trace tracks and Prometheus names all derive from one catalogue."""
    gpu_fields = {f for f in model.GpuSample.__dataclass_fields__} - {"info", "lost", "processes"}
    assert gpu_fields == set(metrics.GPU_METRICS)
    assert set(model.CpuSample.__dataclass_fields__) == set(metrics.CPU_METRICS)


@pytest.mark.unit
def test_readme_documents_every_snapshot_key():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in metrics.GPU_METRICS + metrics.CPU_METRICS if f"`{name}`" not in readme]
    assert missing == []


@pytest.mark.unit
def test_every_subpackage_ships_in_the_wheel():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert on_disk | {"gputop.workloads"} == listed
