"""The GPU check: the tests marked ``gpu``, run on a machine with a real NVIDIA GPU, in one go.

    GPUTOP_GPU_OUT=DIR pytest -m gpu -p no:cacheprovider --junitxml=DIR/gpu.xml

Where there is no GPU (this is decided honestly: the real libnvidia-ml must load and ``nvmlInit``
succeed, with GPUTOP_FAKE_NVML unset; see machine.no_gpu_reason) every one is skipped, with the
reason. On a GPU each test writes its outputs (raw readings, traces, reports, screenshots) under
GPUTOP_GPU_OUT (a temporary folder without it), its children's output under logs/, and records its
figures with the ``figure`` fixture; summary.md there is rewritten after every test, so a check
cut off by its time limit still has one. GPUTOP_GPU_BUDGET_S (default 420) bounds every child
together. benchmarks/README.md ("The GPU check") has the device call that carries the wheels
(tests/gpu/wheels.py) and brings the folder back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the check's helpers, beside this file, for its test modules

import machine  # noqa: E402
import summary  # noqa: E402

_results: list[summary.Result] = []
_gpu_tests: set[str] = set()  # node ids of the tests marked gpu


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    _gpu_tests.update(item.nodeid for item in gpu_items)
    if not gpu_items:
        return
    # a module says its vendor (VENDOR = "amd"); NVIDIA's otherwise
    by_vendor = {"nvidia": [i for i in gpu_items if getattr(i.module, "VENDOR", "nvidia") == "nvidia"]}
    by_vendor["amd"] = [i for i in gpu_items if i not in by_vendor["nvidia"]]
    for vendor, check, words in (("nvidia", machine.no_gpu_reason, "NVIDIA"), ("amd", machine.no_amd_gpu_reason, "AMD")):
        reason = check() if by_vendor[vendor] else None
        if reason is not None:
            skip = pytest.mark.skip(reason=f"needs a real {words} GPU: {reason}")
            for item in by_vendor[vendor]:
                item.add_marker(skip)


def _out_dir() -> Path | None:
    value = os.environ.get("GPUTOP_GPU_OUT")
    return Path(value).resolve() if value else None


def _message(report: pytest.TestReport) -> str | None:
    if report.passed:
        return None
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip().splitlines()[0] if text.strip() else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """One result per gpu test (its call; its set-up where that failed or skipped), and the
    summary written again."""
    if report.nodeid not in _gpu_tests:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed) or (report.when == "teardown" and report.failed):
        _results.append(
            summary.Result(
                report.nodeid, report.outcome, report.duration, [(str(k), str(v)) for k, v in report.user_properties], _message(report)
            )
        )
        out = _out_dir()
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.md").write_text(summary.render(_results, out))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    out = _out_dir()
    if out is not None and _results:
        terminalreporter.write_line(f"GPU check summary: {out / 'summary.md'}")


@pytest.fixture(scope="session")
def gpu_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The check's folder: GPUTOP_GPU_OUT, else a temporary one."""
    out = _out_dir() or tmp_path_factory.mktemp("gpu_check")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def runner(gpu_out: Path) -> machine.Runner:
    """Children with time-outs, all within GPUTOP_GPU_BUDGET_S; a test past it fails."""
    return machine.Runner(gpu_out, float(os.environ.get("GPUTOP_GPU_BUDGET_S", "420")))


@pytest.fixture
def figure(record_property: Callable[[str, object], None]) -> Callable[..., None]:
    """``figure(what, value, expected=None)``: a figure of this test, in the summary and the
    JUnit XML (pytest's user properties)."""

    def add(what: str, value: object, expected: str | None = None) -> None:
        text = value if isinstance(value, str) else show(value)
        record_property(what, text if expected is None else f"{text} (expected {expected})")

    return add


def show(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)
