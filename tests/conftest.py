"""Shared fixtures, and the tiers. The NVML fake lives in tests/fakenvml.py (import it as ``fakenvml``:
pytest puts tests/ on sys.path, and the subprocess hook in tests/sitecustom imports it by that name
too); helpers more than one test module uses live in helpers.py, tui_fixtures.py and
cluster_fixtures.py (a test module never imports another test module).

Every test is in exactly one tier, a marker declared in pyproject.toml: ``unit`` (in-process),
``tui`` (the Textual app under Pilot, snapshots) or ``e2e`` (real child processes: gputop as a
subprocess, a pseudo-terminal, tmux, a real Prometheus). A module says its tier once
(``pytestmark``); a module that mixes tiers marks each test. ``pytest -m "not e2e"`` is the fast
loop; collection fails on a test with no tier or more than one.
"""

from __future__ import annotations

from typing import Any, Iterable

import pytest

import fakenvml

TIERS = ("unit", "tui", "e2e")


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything: every collected test is checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            f"each test needs exactly one tier of {', '.join(TIERS)} (pytestmark or a mark on the test):\n  " + "\n  ".join(wrong)
        )


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch):
    """A factory that installs a fake libnvidia-ml into pynvml for this test, and returns it.

        fake = fake_nvml()                                   # one H100_SXM, current driver
        fake = fake_nvml([fakenvml.H100_SXM, fakenvml.A100_SXM], driver=fakenvml.OLD_DRIVER)
        fake = fake_nvml("H100_SXM*2,CONSUMER:old_driver")   # the GPUTOP_FAKE_NVML spec syntax
        fake_nvml("none:library_not_found")                  # returns None: no library at all

    The clock is manual (``fake.advance(seconds)``) unless ``real_time=True``. pynvml's
    ``nvmlLib``, function-pointer cache, refcount (and ``CDLL`` for a missing library) are restored
    after the test.
    """

    def make(
        devices: Iterable[fakenvml.DeviceProfile] | str = (fakenvml.H100_SXM,),
        driver: fakenvml.DriverProfile | None = None,
        *,
        real_time: bool = False,
    ) -> Any:
        if isinstance(devices, str):
            if driver is not None:
                raise TypeError("a spec string names its own driver")
            return fakenvml.install_from_spec(devices, monkeypatch=monkeypatch, real_time=real_time)
        return fakenvml.install(fakenvml.FakeNvml(devices, driver, real_time=real_time), monkeypatch)

    return make


@pytest.fixture
def nvml_library_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """No libnvidia-ml.so.1 on this machine: pynvml.nvmlInit raises NVMLError_LibraryNotFound."""
    fakenvml.install_library_missing(monkeypatch)


@pytest.fixture
def source(fake_nvml):
    """open(devices, driver) -> (fake, NvmlSource on the fake's manual clock); closed after the test."""
    from gputop.sources.nvml import NvmlSource

    opened = []

    def open_(devices=(fakenvml.H100_SXM,), driver=None):
        fake = fake_nvml(list(devices), driver)
        src = NvmlSource.open(clock=lambda: fake.now_ns / 1e9)
        opened.append(src)
        return fake, src

    yield open_
    for src in opened:
        src.close()


@pytest.fixture
def fake_amdsmi():
    """A factory that installs a fake libamd_smi under the real amdsmi package for this test, and
    returns it (``fake_amdsmi("MI300X*8")``, the GPUTOP_FAKE_AMDSMI spec syntax, on a manual clock:
    ``fake.advance(seconds)``). amdsmi is forgotten after the test (its next import finds no
    library, as on a machine without ROCm)."""
    import fakeamdsmi

    def make(spec: str = "MI300X", *, real_time: bool = False) -> fakeamdsmi.FakeAmdSmi:
        fake = fakeamdsmi.from_spec(spec, real_time=real_time)
        fakeamdsmi.install(fake)
        return fake

    yield make
    fakeamdsmi.uninstall()
