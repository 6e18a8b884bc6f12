"""gputop.sources.nvml against the fake libnvidia-ml (tests/fakenvml.py): real pynvml, fake driver."""

from __future__ import annotations

import dataclasses
import logging
import math
import os

import pynvml
import pytest

import fakenvml
from fakenvml import A100_SXM, CONSUMER, H100_SXM, HIDDEN_PID, OLD_DRIVER, FakeProcess
from gputop.model import GpuSample
from gputop.sources.nvml import GpuUnavailable, NvmlSource
from gputop.sources.nvml import info as nvml_info
from gputop.sources.nvml import query as nvml_query
from gputop.sources.nvml import source as nvml_source
from helpers import wait_for

pytestmark = pytest.mark.unit

GPM_FIELDS = {
    "sm_active_pct": pynvml.NVML_GPM_METRIC_SM_UTIL,
    "sm_occupancy_pct": pynvml.NVML_GPM_METRIC_SM_OCCUPANCY,
    "tensor_active_pct": pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
    "dram_bw_util_pct": pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
    "fp16_active_pct": pynvml.NVML_GPM_METRIC_FP16_UTIL,
    "fp32_active_pct": pynvml.NVML_GPM_METRIC_FP32_UTIL,
    "fp64_active_pct": pynvml.NVML_GPM_METRIC_FP64_UTIL,
}
RATE_FIELDS = ("pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s", "nvlink_tx_bytes_per_s", "nvlink_rx_bytes_per_s")


def only(src: NvmlSource) -> GpuSample:
    (sample,) = src.sample()
    return sample


# ------------------------------------------------------------------------------------ static info


@pytest.mark.parametrize(
    "profile, arch, sm_count, peak",
    [
        (H100_SXM, "Hopper", 132, 2 * 2619e6 * 5120 / 8),  # 3.35 TB/s
        (A100_SXM, "Ampere", 108, 2 * 1593e6 * 5120 / 8),  # GA100: 64 cores per SM
        (CONSUMER, "Ada", 128, 2 * 10501e6 * 384 / 8),
    ],
)
def test_static_info_of_each_profile(source, profile, arch, sm_count, peak):
    fake, src = source([profile])
    (info,) = src.devices
    assert info.index == 0 and info.name == profile.name
    assert info.uuid.startswith("GPU-")
    assert info.pci_bus_id == f"00000000:{profile.pci_bus:02X}:00.0"
    assert info.architecture == arch and info.sm_count == sm_count
    assert info.mem_bus_width_bits == profile.mem_bus_width_bits
    assert info.max_mem_clock_mhz == profile.max_mem_clock_mhz
    assert info.peak_dram_bw_bytes_per_s == pytest.approx(peak)
    assert (info.driver_version, info.cuda_version) == ("550.54.15", "12.4")
    assert info.gpm_supported is profile.gpm_supported and info.mig_enabled is False


def test_h100_peak_bandwidth_is_3_35_tb_per_s(source):
    _, src = source([H100_SXM])
    assert src.devices[0].peak_dram_bw_bytes_per_s == pytest.approx(3.35e12, rel=1e-3)


@pytest.mark.parametrize(
    "arch, cc, name, per_sm",
    [
        ("Ampere", (8, 0), "A100", 64),
        ("Ampere", (8, 6), "RTX 3090", 128),
        ("Ada", (8, 9), "L4", 128),
        ("Hopper", (9, 0), "H100", 128),
        ("Volta", (7, 0), "V100", 64),
        ("Turing", (7, 5), "T4", 64),
        ("Blackwell", (10, 0), "B200", 128),
        ("Ampere", None, "NVIDIA A30", 64),
        ("Ampere", None, "A10", 128),
        (None, None, "mystery", None),
    ],
)
def test_cores_per_sm(arch, cc, name, per_sm):
    assert nvml_info._cores_per_sm(arch, cc, name) == per_sm


# ------------------------------------------------------------------------------------- readings


def test_h100_readings_on_the_first_tick(source):
    fake, src = source([H100_SXM])
    s = only(src)
    assert not s.lost and s.processes is None
    assert s.gpu_util_pct == round(fake.value(0, "gpu_util"))
    assert s.mem_busy_pct == round(fake.value(0, "mem_busy"))
    total, reserved, used, _ = fakenvml._memory(fake, fake._dev[0])
    assert (s.mem_used_bytes, s.mem_total_bytes) == (used, total)  # memory info v2: used excludes reserved
    assert s.power_w == pytest.approx(round(fake.value(0, "power_w") * 1000) / 1000)
    assert s.power_limit_w == 700.0
    assert s.energy_j == pytest.approx(fake.energy_mj(0) / 1000)
    assert (s.sm_clock_mhz, s.mem_clock_mhz) == (1755, 2619)
    assert s.temp_c == round(fake.value(0, "temp_c"))
    assert s.fan_pct is None  # datacentre board: no fan, and never 0
    assert s.pstate == 0 and s.clock_event_reasons == ()
    # rates and GPM need a second reading
    assert all(getattr(s, f) is None for f in (*GPM_FIELDS, "dram_bw_bytes_per_s", *RATE_FIELDS))


def test_consumer_board(source):
    fake, src = source([CONSUMER])
    s = only(src)
    assert s.fan_pct == 38.0 and s.pstate == 2 and s.clock_event_reasons == ("idle",)
    fake.advance(1.0)
    s = only(src)
    assert s.pcie_tx_bytes_per_s > 0 and s.pcie_rx_bytes_per_s > 0
    assert s.nvlink_tx_bytes_per_s is None and s.nvlink_rx_bytes_per_s is None  # no NVLink: n/a, not 0
    assert all(getattr(s, f) is None for f in GPM_FIELDS)


def test_a100_has_no_gpm_but_nvlink(source):
    fake, src = source([A100_SXM])
    assert only(src).clock_event_reasons == ("sw_power_cap",)
    fake.advance(0.5)
    s = only(src)
    assert all(getattr(s, f) is None for f in (*GPM_FIELDS, "dram_bw_bytes_per_s"))
    assert s.nvlink_tx_bytes_per_s > 0 and s.nvlink_rx_bytes_per_s > 0
    assert fake.calls["nvmlGpmSampleGet"] == 0


def test_readings_follow_the_device(source):
    fake, src = source([H100_SXM])
    first = only(src)
    fake.advance(2.0)
    second = only(src)
    assert second.power_w == pytest.approx(round(fake.value(0, "power_w") * 1000) / 1000)
    assert second.power_w != first.power_w
    assert second.energy_j > first.energy_j


@pytest.mark.parametrize(
    "bits, words",
    [
        (0, ()),
        (0x1, ("idle",)),
        (0x4 | 0x8, ("sw_power_cap", "hw_slowdown")),
        (0x20 | 0x40, ("sw_thermal_slowdown", "hw_thermal_slowdown")),
        (0x1000, ("0x1000",)),
    ],
)
def test_clock_event_reasons_in_words(bits, words):
    assert nvml_query._reasons(bits) == (words,)


# ------------------------------------------------------------------------------- rates and energy


def test_nvlink_and_pcie_rates_from_counter_deltas(source):
    fake, src = source([H100_SXM])
    t1 = fake.now_ns
    only(src)
    t2 = fake.advance(0.5)
    s = only(src)
    for field, counter in [
        ("nvlink_tx_bytes_per_s", "nvlink_tx"),
        ("nvlink_rx_bytes_per_s", "nvlink_rx"),
        ("pcie_tx_bytes_per_s", "pcie_tx"),
        ("pcie_rx_bytes_per_s", "pcie_rx"),
    ]:
        delta_kib = fake.counter_kib(0, counter, t2) - fake.counter_kib(0, counter, t1)
        assert getattr(s, field) == pytest.approx(delta_kib * 1024 / 0.5), field
    assert s.nvlink_tx_bytes_per_s == pytest.approx(150e6 * 1024, rel=0.15)  # KiB/s profile, in bytes/s


def test_a_failed_counter_read_gives_no_rate_then_recovers(source):
    fake, src = source([H100_SXM])
    only(src)
    fake.advance(0.5)
    fake.fail("nvmlDeviceGetFieldValues", pynvml.NVML_ERROR_UNKNOWN, times=1)
    s = only(src)
    assert all(getattr(s, f) is None for f in RATE_FIELDS)
    fake.advance(0.5)
    assert only(src).nvlink_tx_bytes_per_s is None  # the tick after has no previous reading yet
    fake.advance(0.5)
    assert only(src).nvlink_tx_bytes_per_s > 0


def test_energy_counter(source):
    fake, src = source([H100_SXM])
    sample = only(src)
    assert sample.energy_j == pytest.approx(fake.energy_mj(0) / 1000)  # since the driver loaded
    assert sample.info.energy_counter is True


def test_a_board_without_an_energy_counter_says_so_in_its_info(source):
    fake, src = source([dataclasses.replace(H100_SXM, energy_start_mj=None)])
    sample = only(src)
    assert sample.info.energy_counter is False and sample.energy_j == 0.0  # integrated, from gputop's start


def test_energy_integrated_from_power_without_a_counter(source):
    driver = fakenvml.R550.without("nvmlDeviceGetTotalEnergyConsumption")
    fake, src = source([H100_SXM], driver)
    first = only(src)
    assert first.energy_j == 0.0  # counting starts with gputop
    fake.advance(1.0)
    second = only(src)
    assert second.energy_j == pytest.approx((first.power_w + second.power_w) / 2 * 1.0)
    fake.advance(1.0)
    third = only(src)
    assert third.energy_j == pytest.approx(second.energy_j + (second.power_w + third.power_w) / 2)


def test_no_power_no_energy(fake_nvml):
    fake = fake_nvml([CONSUMER], fakenvml.R550.without("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage"))
    src = NvmlSource.open(clock=lambda: fake.now_ns / 1e9)
    try:
        s = only(src)
        assert s.power_w is None and s.energy_j is None
    finally:
        src.close()


# ------------------------------------------------------------------------------------------- GPM


def test_gpm_needs_two_samples_about_100_ms_apart(source):
    fake, src = source([H100_SXM])
    t1 = fake.now_ns
    assert all(getattr(only(src), f) is None for f in GPM_FIELDS)  # no pair yet
    fake.advance(0.05)
    assert all(getattr(only(src), f) is None for f in GPM_FIELDS)
    assert fake.calls["nvmlGpmSampleGet"] == 1  # too soon: no sample taken, the older one kept
    t3 = fake.advance(0.06)
    s = only(src)
    for field, metric in GPM_FIELDS.items():
        assert getattr(s, field) == pytest.approx(fake.gpm_value(0, metric, t1, t3)), field
    peak = src.devices[0].peak_dram_bw_bytes_per_s
    assert s.dram_bw_bytes_per_s == pytest.approx(s.dram_bw_util_pct / 100 * peak)
    assert s.sms_active == pytest.approx(s.sm_active_pct / 100 * 132)
    fake.advance(0.05)
    assert only(src).sm_active_pct == s.sm_active_pct  # too soon again: the last pair's values stay
    t5 = fake.advance(0.5)
    s = only(src)  # the buffers swapped: this pair is (t3, t5)
    assert s.sm_active_pct == pytest.approx(fake.gpm_value(0, pynvml.NVML_GPM_METRIC_SM_UTIL, t3, t5))
    assert fake.calls["nvmlGpmSampleAlloc"] == 2


def test_gpm_metric_a_device_lacks_is_none_alone(source):
    gpm = tuple(m for m in H100_SXM.gpm_metrics if m[0] != pynvml.NVML_GPM_METRIC_FP64_UTIL)
    fake, src = source([dataclasses.replace(H100_SXM, gpm_metrics=gpm)])
    only(src)
    fake.advance(0.2)
    s = only(src)
    assert s.fp64_active_pct is None
    assert s.fp32_active_pct is not None and s.sm_active_pct is not None


def test_a_failed_gpm_sample_restarts_the_pair(source):
    fake, src = source([H100_SXM])
    only(src)
    fake.advance(0.2)
    assert only(src).sm_active_pct is not None
    fake.advance(0.2)
    fake.fail("nvmlGpmSampleGet", pynvml.NVML_ERROR_UNKNOWN, times=1)
    assert only(src).sm_active_pct is None
    fake.advance(0.2)
    assert only(src).sm_active_pct is None  # first sample of a new pair
    fake.advance(0.2)
    assert only(src).sm_active_pct is not None


# ------------------------------------------------------------------------------ the old driver


def test_old_driver_falls_back_to_older_symbols(source):
    fake, src = source([CONSUMER], OLD_DRIVER)
    (info,) = src.devices
    assert (info.driver_version, info.cuda_version) == ("470.223.02", "11.4")
    assert info.sm_count is None and info.peak_dram_bw_bytes_per_s is None  # no core count, no bus width
    assert info.gpm_supported is False and info.architecture == "Ada"
    s = only(src)
    total, reserved, used, _ = fakenvml._memory(fake, fake._dev[0])
    assert (s.mem_used_bytes, s.mem_total_bytes) == (used + reserved, total)  # v1: used counts reserved
    assert s.temp_c == round(fake.value(0, "temp_c"))
    assert s.clock_event_reasons == ("idle",)
    # no PCIe byte counters in this driver: the throughput query (KB/s -> bytes/s) on its own thread
    s = wait_for(lambda: (x := only(src)).pcie_tx_bytes_per_s is not None and x, 30, "a PCIe throughput reading")
    assert s.pcie_tx_bytes_per_s == round(fake.value(0, "pcie_tx_kib_s")) * 1024
    for symbol in (
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        "nvmlDeviceGetPcieThroughput",
    ):
        assert fake.calls[symbol] >= 2, symbol  # probed, then read
    procs = src.processes()[0]
    assert {p.pid for p in procs} == {os.getpid(), HIDDEN_PID + 2}
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v2"] >= 2


def test_missing_function_is_logged_once_at_debug(source, caplog, monkeypatch):
    monkeypatch.setattr(nvml_query, "_logged", set())
    caplog.set_level(logging.DEBUG, logger="gputop.sources.nvml")
    fake, src = source([H100_SXM])
    fake.fail("nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    for _ in range(3):
        assert only(src).power_w is None
        fake.advance(0.1)
    lines = [r for r in caplog.records if "nvmlDeviceGetPowerUsage" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG


def test_library_mismatch_error_counts_as_a_missing_function():
    def unversioned(*args):
        raise pynvml.NVMLLibraryMismatchError("use a versioned function")

    assert nvml_query.query(unversioned) is None
    assert nvml_query.query(unversioned, unanswerable=nvml_query.UNANSWERABLE) is nvml_query.UNANSWERABLE


# ------------------------------------------------------------------------------- injected errors


@pytest.mark.parametrize(
    "code", [pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NO_PERMISSION, pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_TIMEOUT]
)
@pytest.mark.parametrize(
    "symbol, field",
    [
        ("nvmlDeviceGetPowerUsage", "power_w"),
        ("nvmlDeviceGetTemperatureV", "temp_c"),
        ("nvmlDeviceGetClockInfo", "mem_clock_mhz"),  # (a tick asks the slow tier first: the memory clock)
        ("nvmlDeviceGetCurrentClocksEventReasons", "clock_event_reasons"),
        ("nvmlDeviceGetMemoryInfo_v2", "mem_used_bytes"),
        ("nvmlDeviceGetTotalEnergyConsumption", "energy_j"),
    ],
)
def test_an_error_in_a_tick_gives_none_not_zero(source, symbol, field, code):
    fake, src = source([H100_SXM, CONSUMER])
    fake.fail(symbol, code, device=0, times=1)
    gpu0, gpu1 = src.sample()
    assert getattr(gpu0, field) is None and not gpu0.lost
    assert getattr(gpu1, field) is not None
    assert gpu0.gpu_util_pct is not None  # the other fields go on
    fake.advance(0.1)
    assert getattr(src.sample()[0], field) is not None  # and the next tick reads it again


def test_what_is_unsupported_at_probe_is_never_asked_again(fake_nvml):
    fake = fake_nvml([H100_SXM])
    fake.fail("nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_NOT_SUPPORTED)
    src = NvmlSource.open(clock=lambda: fake.now_ns / 1e9)
    try:
        for _ in range(5):
            s = only(src)
            assert s.power_w is None and s.fan_pct is None
            fake.advance(0.2)
        assert fake.calls["nvmlDeviceGetPowerUsage"] == 1
        assert fake.calls["nvmlDeviceGetFanSpeed"] == 1  # the H100 has no fan: asked once
    finally:
        src.close()


def test_a_transient_error_at_probe_keeps_asking(fake_nvml):
    fake = fake_nvml([H100_SXM])
    fake.fail("nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_UNKNOWN, times=1)
    src = NvmlSource.open(clock=lambda: fake.now_ns / 1e9)
    try:
        assert only(src).power_w is not None
    finally:
        src.close()


# ---------------------------------------------------------------------------------- lost GPUs


def test_gpu_lost_mid_run_while_the_others_go_on(source):
    lost_after = 3  # calls of the tick marker: the probe's, then two ticks
    fake, src = source([dataclasses.replace(H100_SXM, lost_after=lost_after), CONSUMER])
    for _ in range(2):
        gpu0, gpu1 = src.sample()
        assert not gpu0.lost and gpu0.gpu_util_pct is not None
        fake.advance(0.2)
    for _ in range(3):
        gpu0, gpu1 = src.sample()
        assert gpu0 == GpuSample(src.devices[0], lost=True)
        assert gpu0.info.name == H100_SXM.name  # still named
        assert not gpu1.lost and gpu1.power_w is not None
        fake.advance(0.2)
    procs = src.processes()
    assert procs[0] is None and procs[1]


def test_gpu_lost_during_processes_query(source):
    fake, src = source([H100_SXM, CONSUMER])
    src.sample()
    fake.lose(0)
    procs = src.processes()
    assert procs[0] is None and procs[1]
    assert src.sample()[0].lost


def test_gpu_lost_from_the_start(source):
    fake, src = source([dataclasses.replace(A100_SXM, lost_after=0), H100_SXM])
    assert [d.name for d in src.devices] == ["GPU 0", H100_SXM.name]
    gpu0, gpu1 = src.sample()
    assert gpu0.lost and not gpu1.lost


def test_gpu_lost_is_not_unknown_error(source):
    fake, src = source([H100_SXM])
    fake.fail("nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_UNKNOWN, times=2)
    assert not only(src).lost
    fake.fail("nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_GPU_IS_LOST, times=1)
    assert only(src).lost
    assert only(src).lost  # for good, although the device would answer again


# --------------------------------------------------------------------------------- processes


def test_processes_v3_with_utilization(source, monkeypatch):
    monkeypatch.setattr(nvml_source, "PROCESS_BUDGET_S_PER_S", math.inf)  # every call scans again
    fake, src = source([H100_SXM])
    procs = src.processes()[0]
    by_pid = {p.pid: p for p in procs}
    assert set(by_pid) == {os.getpid(), HIDDEN_PID}
    me = by_pid[os.getpid()]
    assert me.gpu_index == 0 and me.kind == "compute" and me.gpu_mem_bytes == 18 << 30
    assert me.sm_util_pct == pytest.approx(60, abs=5) and me.mem_util_pct == pytest.approx(30, abs=2)
    assert (me.name, me.user, me.command, me.cpu_pct) == (None, None, None, None)  # the sampler's job
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 0
    # no newer utilization samples since the last look: NOT_FOUND means None, not an error
    again = src.processes()[0]
    assert {p.pid for p in again} == {os.getpid(), HIDDEN_PID}
    assert all(p.sm_util_pct is None and p.mem_util_pct is None for p in again)
    fake.advance(0.2)
    assert all(p.sm_util_pct is not None for p in src.processes()[0])


def test_compute_and_graphics_merge_by_pid(source):
    _, src = source([CONSUMER])
    kinds = {p.pid: p.kind for p in src.processes()[0]}
    assert kinds == {os.getpid(): "compute+graphics", HIDDEN_PID + 2: "graphics"}


def test_process_memory_not_available_is_none(source):
    profile = dataclasses.replace(CONSUMER, processes=(FakeProcess(HIDDEN_PID, None, 10, 5, "compute"),))
    _, src = source([profile])
    (proc,) = src.processes()[0]
    assert proc.gpu_mem_bytes is None


def test_no_processes_is_an_empty_tuple(source):
    _, src = source([dataclasses.replace(H100_SXM, processes=())])
    assert src.processes() == {0: ()}


# ---------------------------------------------------------------------------------------- MIG


def test_mig_enabled_device_does_not_crash(source):
    mig = dataclasses.replace(A100_SXM, mig_enabled=True)
    fake, src = source([mig, CONSUMER])
    assert src.devices[0].mig_enabled is True
    for _ in range(2):
        gpu0, gpu1 = src.sample()
        fake.advance(0.2)
    assert gpu0.gpu_util_pct is None and gpu0.mem_used_bytes is not None and not gpu0.lost
    assert src.processes()[0] is None  # the parent's process list is root's only: n/a
    assert src.processes()[1]


def test_mig_enabled_h100_leaves_gpm_off(source):
    _, src = source([dataclasses.replace(H100_SXM, mig_enabled=True)])
    assert src.devices[0].mig_enabled and not src.devices[0].gpm_supported


# ------------------------------------------------------------------------------ open and close


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("H100_SXM:driver_not_loaded", "NVIDIA driver not loaded"),
        ("H100_SXM:no_permission", "no permission to open the NVIDIA driver"),
        ("H100_SXM:rm_version_mismatch", "NVIDIA driver and libnvidia-ml versions differ"),
        ("none", "no NVIDIA GPU found"),
    ],
)
def test_open_says_why_there_is_no_gpu(fake_nvml, spec, reason):
    fake = fake_nvml(spec)
    with pytest.raises(GpuUnavailable) as caught:
        NvmlSource.open()
    assert caught.value.reason.startswith(reason) and str(caught.value) == caught.value.reason
    assert fake.initialized == 0  # nothing left open


def test_open_without_the_library(nvml_library_missing):
    with pytest.raises(GpuUnavailable) as caught:
        NvmlSource.open()
    assert caught.value.reason == "libnvidia-ml.so.1 not found (no NVIDIA driver installed)"


def test_close_frees_gpm_samples_and_shuts_down(fake_nvml):
    fake = fake_nvml([H100_SXM, H100_SXM])
    src = NvmlSource.open()
    src.sample()
    assert len(fake._gpm_samples) == 4
    src.close()
    src.close()  # twice is fine
    assert fake._gpm_samples == {} and fake.initialized == 0
    with pytest.raises(RuntimeError):
        src.sample()


def test_close_after_a_gpu_is_lost(fake_nvml):
    fake = fake_nvml([H100_SXM])
    src = NvmlSource.open()
    fake.lose(0)
    assert only(src).lost
    src.close()
    assert fake.initialized == 0


def test_eight_gpus(source):
    fake, src = source([H100_SXM] * 8)
    assert [d.index for d in src.devices] == list(range(8))
    assert len({d.uuid for d in src.devices}) == 8
    src.sample()
    fake.advance(0.5)
    samples = src.sample()
    assert all(s.sm_active_pct is not None and s.nvlink_tx_bytes_per_s for s in samples)


def test_slow_fields_are_read_on_their_own_cadence(source):
    """Power limit, temperature, fan and pstate are re-read at most every SLOW_INTERVAL_S."""
    fake, src = source([H100_SXM])
    src.sample()
    before = fake.calls["nvmlDeviceGetTemperatureV"], fake.calls["nvmlDeviceGetUtilizationRates"]
    for _ in range(4):  # 4 ticks at 10 Hz: inside one slow interval
        fake.advance(0.1)
        gpu = src.sample()[0]
        assert gpu.temp_c is not None and gpu.power_limit_w is not None  # carried, not dropped
    assert fake.calls["nvmlDeviceGetTemperatureV"] == before[0]
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == before[1] + 4
    fake.advance(0.2)
    src.sample()
    assert fake.calls["nvmlDeviceGetTemperatureV"] == before[0] + 1
