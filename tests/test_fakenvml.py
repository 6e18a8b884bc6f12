"""The NVML fake itself: it offers only symbols pynvml really asks for, and pynvml's own wrappers
round-trip through it for every profile."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import pathlib
import re

import pynvml
import pytest

import fakenvml
from fakenvml import A100_SXM, CONSUMER, H100_SXM, OLD_DRIVER, FakeNvml

pytestmark = pytest.mark.unit

PYNVML_SOURCE = pathlib.Path(pynvml.__file__).read_text()
REQUESTED = frozenset(re.findall(r'_nvmlGetFunctionPointer\("(\w+)"\)', PYNVML_SOURCE))
GPUTOP_SOURCES = pathlib.Path(__file__).resolve().parents[1] / "gputop" / "sources"


# ---------------------------------------------------------------------------------- conformance


def test_every_symbol_the_fake_offers_is_one_pynvml_requests():
    assert len(REQUESTED) > 300  # the regex still finds pynvml's symbol requests
    assert fakenvml.IMPLEMENTED <= REQUESTED, sorted(fakenvml.IMPLEMENTED - REQUESTED)


def test_every_driver_profile_exports_only_implemented_symbols():
    for name, driver in fakenvml.DRIVERS.items():
        assert driver.exported() <= fakenvml.IMPLEMENTED, name
        fake = FakeNvml([H100_SXM], driver)
        for symbol in REQUESTED:
            assert hasattr(fake, symbol) == (symbol in driver.exported()), (name, symbol)


def _wrapper_symbols(wrapper: str, seen: set[str] | None = None) -> set[str]:
    """The C symbols a pynvml wrapper requests, following calls to other nvml* wrappers."""
    seen = set() if seen is None else seen
    if wrapper in seen:
        return set()
    seen.add(wrapper)
    match = re.search(rf"^def {wrapper}\(.*?(?=^\S)", PYNVML_SOURCE, re.S | re.M)
    if match is None:
        return set()
    body = match.group(0)
    symbols = set(re.findall(r'_nvmlGetFunctionPointer\("(\w+)"\)', body))
    for callee in set(re.findall(r"\b(nvml\w+)\(", body)) - {wrapper}:
        if callee.startswith("nvml") and callee[4:5].isupper():
            symbols |= _wrapper_symbols(callee, seen)
    return symbols


def test_the_fake_backs_every_pynvml_wrapper_gputop_calls():
    names: set[str] = set()
    for path in GPUTOP_SOURCES.rglob("*.py"):  # sources/nvml/ among them
        names |= set(re.findall(r"\b(nvml[A-Z]\w+)", path.read_text()))
    wrappers = {n for n in names if callable(getattr(pynvml, n, None))}
    assert wrappers, "gputop calls no pynvml wrapper?"
    missing = {w: sorted(_wrapper_symbols(w) - fakenvml.IMPLEMENTED) for w in sorted(wrappers)}
    assert not {w: m for w, m in missing.items() if m}


def test_callables_take_attribute_assignment(fake_nvml):
    fake = fake_nvml()
    fake.nvmlErrorString.restype = ctypes.c_char_p  # what pynvml does
    assert fake.nvmlErrorString(pynvml.NVML_ERROR_GPU_IS_LOST) == b"GPU is lost"
    with pytest.raises(AttributeError):
        fake.nvmlDeviceGetVbiosVersion  # noqa: B018 (not offered: AttributeError like a CDLL)


# ------------------------------------------------------------------------------------ round trip


def test_init_count_handles_and_identity(fake_nvml):
    fake = fake_nvml([H100_SXM, A100_SXM, CONSUMER])
    pynvml.nvmlInit()
    assert pynvml._nvmlLib_refcount == 1 and fake.initialized == 1
    assert pynvml.nvmlSystemGetDriverVersion() == "550.54.15"
    assert pynvml.nvmlSystemGetCudaDriverVersion_v2() == 12040
    assert pynvml.nvmlDeviceGetCount() == 3
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(3)]
    assert len({ctypes.cast(h, ctypes.c_void_p).value for h in handles}) == 3
    assert [pynvml.nvmlDeviceGetIndex(h) for h in handles] == [0, 1, 2]
    h100, a100, rtx = handles
    assert pynvml.nvmlDeviceGetName(h100) == "NVIDIA H100 80GB HBM3"
    assert pynvml.nvmlDeviceGetName(a100) == "NVIDIA A100-SXM4-80GB"
    uuid = pynvml.nvmlDeviceGetUUID(h100)
    assert uuid.startswith("GPU-") and uuid != pynvml.nvmlDeviceGetUUID(a100)
    pci = pynvml.nvmlDeviceGetPciInfo(h100)
    assert pci.busId == "00000000:18:00.0" and pci.pciDeviceId == 0x233010DE
    assert pynvml.nvmlDeviceGetArchitecture(h100) == pynvml.NVML_DEVICE_ARCH_HOPPER
    assert pynvml.nvmlDeviceGetArchitecture(rtx) == pynvml.NVML_DEVICE_ARCH_ADA
    assert pynvml.nvmlDeviceGetNumGpuCores(h100) == 16896
    assert pynvml.nvmlDeviceGetNumGpuCores(a100) == 6912
    assert pynvml.nvmlDeviceGetMemoryBusWidth(h100) == 5120
    assert pynvml.nvmlDeviceGetMemoryBusWidth(rtx) == 384
    assert pynvml.nvmlDeviceGetMaxClockInfo(h100, pynvml.NVML_CLOCK_MEM) == 2619
    assert pynvml.nvmlDeviceGetMaxClockInfo(a100, pynvml.NVML_CLOCK_MEM) == 1593
    assert pynvml.nvmlDeviceGetMaxClockInfo(rtx, pynvml.NVML_CLOCK_MEM) == 10501
    assert pynvml.nvmlDeviceGetCudaComputeCapability(h100) == (9, 0)
    assert pynvml.nvmlDeviceGetMigMode(h100) == [0, 0]
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetMigMode(rtx)
    pynvml.nvmlShutdown()
    assert fake.initialized == 0 and pynvml._nvmlLib_refcount == 0
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()


def test_memory_info_v2_and_v1(fake_nvml):
    fake_nvml()
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    v2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert v2.total == 81559 * fakenvml.MiB
    assert v2.used == (600 * fakenvml.MiB) + 58 * fakenvml.GiB
    assert v2.total == v2.reserved + v2.used + v2.free
    v1 = pynvml.nvmlDeviceGetMemoryInfo(h)
    assert v1.total == v2.total and v1.free == v2.free and v1.used == v2.used + v2.reserved


def test_wrong_struct_versions_are_rejected(fake_nvml):
    fake = fake_nvml()
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
        pynvml.nvmlDeviceGetMemoryInfo(h, version=0x01000028)
    mem = pynvml.c_nvmlMemory_t()  # a v1 struct handed to the v2 symbol
    mismatch = pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    assert fake.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(mem)) == mismatch
    support = pynvml.c_nvmlGpmSupport_t(version=2)
    assert fake.nvmlGpmQueryDeviceSupport(h, ctypes.byref(support)) == mismatch
    request = pynvml.c_nvmlGpmMetricsGet_t(version=7)
    with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
        pynvml.nvmlGpmMetricsGet(request)

    class ProcessInfoV1(ctypes.Structure):  # the 16-byte r450 layout, to the v3 symbol
        _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]

    count = ctypes.c_uint(10)
    ret = fake.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(count), (ProcessInfoV1 * 10)())
    assert ret == mismatch
    assert str(pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)) == "Argument version mismatch"


def test_readings_move_with_the_clock(fake_nvml):
    fake = fake_nvml([H100_SXM, H100_SXM])
    pynvml.nvmlInit()
    h0, h1 = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    util = pynvml.nvmlDeviceGetUtilizationRates(h0)
    assert (util.gpu, util.memory) == (85, 45)  # t = 0: the base values
    assert pynvml.nvmlDeviceGetUtilizationRates(h1).gpu != 85  # GPU 1 is out of phase
    assert pynvml.nvmlDeviceGetPowerUsage(h0) == 520_000
    assert pynvml.nvmlDeviceGetEnforcedPowerLimit(h0) == 700_000
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h0)
    fake.advance(2.5)
    assert pynvml.nvmlDeviceGetUtilizationRates(h0).gpu == 95  # a quarter period: the crest
    assert pynvml.nvmlDeviceGetPowerUsage(h0) == 580_000
    fake.advance(7.5)  # a whole period since e0: energy grew by exactly base power x time
    assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h0) - e0 == pytest.approx(5_200_000, abs=2)
    assert pynvml.nvmlDeviceGetClockInfo(h0, pynvml.NVML_CLOCK_SM) == 1755
    assert pynvml.nvmlDeviceGetClockInfo(h0, pynvml.NVML_CLOCK_MEM) == 2619
    assert pynvml.nvmlDeviceGetTemperature(h0, pynvml.NVML_TEMPERATURE_GPU) == 48
    assert pynvml.nvmlDeviceGetTemperatureV(h0, pynvml.NVML_TEMPERATURE_GPU) == 48
    assert pynvml.nvmlDeviceGetPerformanceState(h0) == 0
    assert pynvml.nvmlDeviceGetCurrentClocksEventReasons(h0) == 0
    assert pynvml.nvmlDeviceGetPcieThroughput(h0, pynvml.NVML_PCIE_UTIL_RX_BYTES) == 4_000_000
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetFanSpeed(h0)


def test_consumer_board_has_a_fan_and_no_nvlink(fake_nvml):
    fake_nvml([CONSUMER])
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetFanSpeed(h) == 38
    values = pynvml.nvmlDeviceGetFieldValues(
        h, [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 0xFFFFFFFF), pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT]
    )
    assert [v.nvmlReturn for v in values] == [pynvml.NVML_ERROR_NOT_SUPPORTED] * 2
    assert pynvml.nvmlDeviceGetCurrentClocksEventReasons(h) == pynvml.nvmlClocksEventReasonGpuIdle


def test_field_values_count_nvlink_and_pcie_traffic(fake_nvml):
    fake = fake_nvml()
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    ids = [
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 0xFFFFFFFF),
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, 0xFFFFFFFF),
        (pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, 0),
        (pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT, 0),
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 99),
        (5000, 0),
    ]
    first = pynvml.nvmlDeviceGetFieldValues(h, ids)
    assert [v.nvmlReturn for v in first] == [0, 0, 0, 0, pynvml.NVML_ERROR_INVALID_ARGUMENT, pynvml.NVML_ERROR_INVALID_ARGUMENT]
    assert first[3].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT and first[3].value.uiVal == 18
    assert first[0].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    fake.advance(10.0)  # a whole period: the mean rate is the base rate
    second = pynvml.nvmlDeviceGetFieldValues(h, ids)
    rate = lambda i: (second[i].value.ullVal - first[i].value.ullVal) / 10.0  # noqa: E731
    assert rate(0) == pytest.approx(150_000_000, rel=1e-6)  # KiB/s
    assert rate(1) == pytest.approx(140_000_000, rel=1e-6)
    assert rate(2) == pytest.approx(1_500_000 * 1024, rel=1e-6)  # bytes/s
    assert second[0].timestamp - first[0].timestamp == 10_000_000  # us


def test_running_processes_and_their_utilization(fake_nvml):
    fake = fake_nvml([H100_SXM, CONSUMER])
    pynvml.nvmlInit()
    h100, rtx = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h100)  # pynvml asks for _v3
    assert [(p.pid, p.usedGpuMemory) for p in procs] == [(os.getpid(), 18 << 30), (4_000_000, 40 << 30)]
    assert pynvml.nvmlDeviceGetGraphicsRunningProcesses(h100) == []
    assert [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses_v2(h100)] == [os.getpid(), 4_000_000]
    assert [p.pid for p in pynvml.nvmlDeviceGetGraphicsRunningProcesses(rtx)] == [os.getpid(), 4_000_002]
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 2  # the size call, then the fill

    samples = pynvml.nvmlDeviceGetProcessUtilization(h100, 0)
    # each process in its own phase
    assert {s.pid: s.smUtil for s in samples} == {os.getpid(): 60, 4_000_000: 28}
    seen = max(s.timeStamp for s in samples)
    with pytest.raises(pynvml.NVMLError_NotFound):  # nothing newer than what was seen
        pynvml.nvmlDeviceGetProcessUtilization(h100, seen)
    fake.advance(0.5)
    assert pynvml.nvmlDeviceGetProcessUtilization(h100, seen)[0].timeStamp == seen + 500_000
    info = pynvml.nvmlDeviceGetProcessesUtilizationInfo(h100, 0)
    assert sorted(s.pid for s in info) == sorted([os.getpid(), 4_000_000])


def test_gpm_metrics_between_two_samples(fake_nvml):
    fake = fake_nvml([H100_SXM, A100_SXM])
    pynvml.nvmlInit()
    h100, a100 = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    assert pynvml.nvmlGpmQueryDeviceSupport(h100).isSupportedDevice == 1
    assert pynvml.nvmlGpmQueryDeviceSupport(a100).isSupportedDevice == 0
    s1, s2 = pynvml.nvmlGpmSampleAlloc(), pynvml.nvmlGpmSampleAlloc()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlGpmSampleGet(a100, s1)
    wanted = [
        pynvml.NVML_GPM_METRIC_SM_UTIL,
        pynvml.NVML_GPM_METRIC_SM_OCCUPANCY,
        pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
        pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
        pynvml.NVML_GPM_METRIC_FP16_UTIL,
        pynvml.NVML_GPM_METRIC_FP32_UTIL,
        pynvml.NVML_GPM_METRIC_FP64_UTIL,
        pynvml.NVML_GPM_METRIC_NVDEC_0_UTIL,
    ]

    def metrics(first, second):
        request = pynvml.c_nvmlGpmMetricsGet_t()
        request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(wanted)
        request.sample1, request.sample2 = first, second
        for i, metric_id in enumerate(wanted):
            request.metrics[i].metricId = metric_id
        pynvml.nvmlGpmMetricsGet(request)
        return [(m.nvmlReturn, round(m.value, 6)) for m in request.metrics[: len(wanted)]]

    pynvml.nvmlGpmSampleGet(h100, s1)
    fake.advance(10.0)  # a whole period: every metric is its profile's base value
    pynvml.nvmlGpmSampleGet(h100, s2)
    got = metrics(s1, s2)
    assert got[:7] == [(0, 75.0), (0, 40.0), (0, 35.0), (0, 55.0), (0, 12.0), (0, 20.0), (0, 6.0)]
    assert got[7][0] == pynvml.NVML_ERROR_NOT_SUPPORTED
    fake.advance(2.5)
    pynvml.nvmlGpmSampleGet(h100, s1)  # the pair (s2, s1) covers a crest: above base
    assert metrics(s2, s1)[0][1] > 75.0
    with pytest.raises(pynvml.NVMLError_InvalidArgument):  # the newer sample first
        metrics(s1, s2)
    pynvml.nvmlGpmSampleFree(s1)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlGpmSampleFree(s1)
    pynvml.nvmlGpmSampleFree(s2)


# --------------------------------------------------------------------------------- faults, drivers


def test_error_injection(fake_nvml):
    fake = fake_nvml([H100_SXM, H100_SXM])
    pynvml.nvmlInit()
    h0, h1 = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    fake.fail("nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_NOT_SUPPORTED, device=0)
    fake.fail("nvmlDeviceGetTemperature", pynvml.NVML_ERROR_NO_PERMISSION)
    fake.fail("nvmlDeviceGetUUID", pynvml.NVML_ERROR_GPU_IS_LOST, device=1, times=1)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetPowerUsage(h0)
    assert pynvml.nvmlDeviceGetPowerUsage(h1) > 0
    for h in (h0, h1):
        with pytest.raises(pynvml.NVMLError_NoPermission):
            pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetUUID(h1)
    assert pynvml.nvmlDeviceGetUUID(h1).startswith("GPU-")  # once only
    fake.clear_failures()
    assert pynvml.nvmlDeviceGetPowerUsage(h0) > 0
    with pytest.raises(ValueError):
        fake.fail("nvmlDeviceGetPowerUsageTypo", pynvml.NVML_ERROR_NOT_SUPPORTED)


def test_gpu_lost_after_n_ticks(fake_nvml):
    fake = fake_nvml([dataclasses.replace(H100_SXM, lost_after=2), A100_SXM])
    pynvml.nvmlInit()
    h0, h1 = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    for _ in range(2):
        pynvml.nvmlDeviceGetUtilizationRates(h0)
    assert pynvml.nvmlDeviceGetName(h0) and not fake.is_lost(0)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetUtilizationRates(h0)
    for call in (pynvml.nvmlDeviceGetName, pynvml.nvmlDeviceGetPowerUsage, pynvml.nvmlGpmQueryDeviceSupport):
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call(h0)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetName(h1) == "NVIDIA A100-SXM4-80GB"  # the other GPU carries on
    fake.lose(1)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetName(h1)


def test_old_driver_lacks_the_newer_symbols(fake_nvml):
    fake_nvml([H100_SXM], driver=OLD_DRIVER)
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlSystemGetDriverVersion() == "470.223.02"
    for call, args in [
        (pynvml.nvmlDeviceGetComputeRunningProcesses_v3, ()),
        (pynvml.nvmlDeviceGetMemoryInfo, (pynvml.nvmlMemory_v2,)),
        (pynvml.nvmlDeviceGetCurrentClocksEventReasons, ()),
        (pynvml.nvmlGpmQueryDeviceSupport, ()),
        (pynvml.nvmlDeviceGetTemperatureV, (pynvml.NVML_TEMPERATURE_GPU,)),
        (pynvml.nvmlDeviceGetNumGpuCores, ()),
    ]:
        with pytest.raises(pynvml.NVMLError_FunctionNotFound):
            call(h, *args)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlGpmSampleAlloc()
    # pynvml's unversioned wrapper asks for _v3 and turns FunctionNotFound into its own error
    with pytest.raises(pynvml.NVMLLibraryMismatchError):
        pynvml.nvmlDeviceGetComputeRunningProcesses(h)
    assert len(pynvml.nvmlDeviceGetComputeRunningProcesses_v2(h)) == 2
    assert pynvml.nvmlDeviceGetMemoryInfo(h).total == 81559 * fakenvml.MiB
    assert pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h) == 0
    assert pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU) == 48
    values = pynvml.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES])
    assert values[0].nvmlReturn == pynvml.NVML_ERROR_INVALID_ARGUMENT  # field id newer than r470


def test_mig_parent_device(fake_nvml):
    fake_nvml([dataclasses.replace(A100_SXM, mig_enabled=True)])
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetMigMode(h) == [pynvml.NVML_DEVICE_MIG_ENABLE] * 2
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlDeviceGetComputeRunningProcesses(h)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetUtilizationRates(h)


@pytest.mark.parametrize(
    "spec, error",
    [
        ("none:driver_not_loaded", pynvml.NVMLError_DriverNotLoaded),
        ("H100_SXM:no_permission", pynvml.NVMLError_NoPermission),
        ("none:library_not_found", pynvml.NVMLError_LibraryNotFound),
    ],
)
def test_init_failures(fake_nvml, spec, error):
    fake_nvml(spec)
    with pytest.raises(error):
        pynvml.nvmlInit()
    assert pynvml._nvmlLib_refcount == 0


def test_library_missing_fixture(nvml_library_missing):
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        pynvml.nvmlInit()


def test_fixture_restores_pynvml(fake_nvml):
    before = (pynvml.nvmlLib, pynvml._nvmlGetFunctionPointer_cache, pynvml.CDLL)
    mp = pytest.MonkeyPatch()
    fakenvml.install(FakeNvml(), mp)
    pynvml.nvmlInit()
    pynvml.nvmlDeviceGetCount()
    assert pynvml._nvmlGetFunctionPointer_cache
    mp.undo()
    assert (pynvml.nvmlLib, pynvml._nvmlGetFunctionPointer_cache, pynvml.CDLL) == before
    assert pynvml._nvmlLib_refcount == 0


# ------------------------------------------------------------------------------------------- spec


def test_parse_spec():
    devices, driver = fakenvml.parse_spec("H100_SXM*2,a100_sxm+lost_after=3+mig_enabled=1:old_driver")
    assert [d.name for d in devices] == [H100_SXM.name] * 2 + [A100_SXM.name]
    assert devices[2].lost_after == 3 and devices[2].mig_enabled and driver is OLD_DRIVER
    devices, driver = fakenvml.parse_spec("none:driver_not_loaded")
    assert devices == [] and driver.init_error == pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    assert fakenvml.parse_spec("none:library_not_found")[1] == fakenvml.LIBRARY_NOT_FOUND
    for bad in ("B200", "H100_SXM:warp_drive", "H100_SXM+colour=red"):
        with pytest.raises(ValueError):
            fakenvml.parse_spec(bad)


def test_install_from_env(monkeypatch):
    monkeypatch.setenv("GPUTOP_FAKE_NVML", "CONSUMER*3")
    monkeypatch.setattr(pynvml, "nvmlLib", pynvml.nvmlLib)  # undo what install_from_env sets
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setattr(pynvml, "_nvmlLib_refcount", 0)
    fake = fakenvml.install_from_env()
    assert pynvml.nvmlLib is fake
    pynvml.nvmlInit()
    assert pynvml.nvmlDeviceGetCount() == 3
    monkeypatch.delenv("GPUTOP_FAKE_NVML")
    assert fakenvml.install_from_env() is None


def test_simulated_option_labels_every_device_and_keeps_its_uuid():
    plain, _ = fakenvml.parse_spec("H100_SXM*2")
    labelled, _ = fakenvml.parse_spec("H100_SXM*2:simulated")
    assert [p.name for p in labelled] == ["NVIDIA H100 80GB HBM3 (simulated)"] * 2
    assert all(p.name == "NVIDIA H100 80GB HBM3" for p in plain)
    assert all(p.uuid_name == "NVIDIA H100 80GB HBM3" for p in labelled)  # same UUIDs as plain
    assert fakenvml.simulated(labelled[0]) == labelled[0]  # applying it twice changes nothing
