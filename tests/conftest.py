"""Shared fixtures. The NVML fake lives in tests/fakenvml.py (import it as ``fakenvml``: pytest puts
tests/ on sys.path, and the subprocess hook in tests/sitecustom imports it by that name too)."""

from __future__ import annotations

from typing import Any, Iterable

import pytest

import fakenvml


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

    def make(devices: Iterable[fakenvml.DeviceProfile] | str = (fakenvml.H100_SXM,),
             driver: fakenvml.DriverProfile | None = None, *, real_time: bool = False) -> Any:
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
