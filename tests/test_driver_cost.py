"""What gputop costs the GPU driver: the NVML fake's cost model, reads tiered by cost (PCIe
throughput off the tick path, process lists within a budget), devices read side by side, and
gputop's own driver time counted at query's choke point."""

from __future__ import annotations

import threading
import time

import pynvml
import pytest

import fakenvml
from fakenvml import CONSUMER, H100_SXM, DriverProfile
from gputop.sources.nvml import NvmlSource
from gputop.sources.nvml import pcie as nvml_pcie
from gputop.sources.nvml import source as nvml_source
from gputop.sources.nvml.query import DRIVER_TIME, query
from helpers import wait_for

pytestmark = pytest.mark.unit

COSTED = DriverProfile(cost_model=True)
PCIE = "nvmlDeviceGetPcieThroughput"


def test_the_cost_model_charges_each_call_its_figure_and_is_off_by_default(fake_nvml):
    plain = fake_nvml([H100_SXM])
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlDeviceGetUtilizationRates(handle)
    assert plain.cost_ns == {} and plain.calls["nvmlDeviceGetUtilizationRates"] == 1
    pynvml.nvmlShutdown()

    fake = fake_nvml([H100_SXM], COSTED)
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    started = time.perf_counter()
    pynvml.nvmlDeviceGetComputeRunningProcesses_v3(handle)  # two calls: the size, then the list
    took = time.perf_counter() - started
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 2
    assert fake.cost_ns["nvmlDeviceGetComputeRunningProcesses_v3"] == 2 * round(4491.4e-6 * 1e9)
    assert took >= 2 * 4491.4e-6  # the calls really took their cost
    pynvml.nvmlDeviceGetPcieThroughput(handle, pynvml.NVML_PCIE_UTIL_TX_BYTES)
    assert fake.cost_ns[PCIE] == 20_000_000
    pynvml.nvmlDeviceGetName(handle)
    assert fake.cost_ns["nvmlDeviceGetName"] == round(fakenvml.COST_OTHER_S * 1e9)
    # each call's own wall time inside the fake: at least its cost (the fake's Python is inside it)
    assert set(fake.wall_ns) == set(fake.cost_ns) and all(fake.wall_ns[k] >= fake.cost_ns[k] for k in fake.cost_ns)
    assert fake.stats()["wall_ns"] == dict(fake.wall_ns)


def test_the_spec_options_cost_and_no_pcie_counters():
    devices, driver = fakenvml.parse_spec("H100_SXM*2:cost:no_pcie_counters")
    assert isinstance(driver, DriverProfile) and driver.cost_model and len(devices) == 2
    assert driver.max_field_id < pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES
    _, old = fakenvml.parse_spec("H100_SXM:cost:old_driver")
    assert isinstance(old, DriverProfile) and old.cost_model and old.name == "r470"


def test_pcie_throughput_never_waits_on_the_tick_path(fake_nvml):
    """Without byte counters the 20 ms throughput calls run on their own thread: a GPU read
    returns while one of them is stuck in the driver."""
    fake = fake_nvml([H100_SXM, H100_SXM], DriverProfile(max_field_id=fakenvml._BEFORE_PCIE_COUNTERS))
    armed, held, release = threading.Event(), threading.Event(), threading.Event()
    real = getattr(fake, PCIE)

    def stuck(*args):
        if armed.is_set():
            held.set()
            release.wait(60)
        return real(*args)

    setattr(fake, PCIE, stuck)
    src = NvmlSource.open()
    try:
        assert set(src.read_intervals()) >= {"pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s"}
        armed.set()  # from the next round on, a throughput call hangs in the driver
        wait_for(held.is_set, 60, "the PCIe thread's next throughput call")
        started = time.monotonic()
        read = src.sample()
        assert time.monotonic() - started < 30  # (the stuck call is released after 60 s)
        assert all(g.gpu_util_pct is not None and not g.lost for g in read)
    finally:
        release.set()
        src.close()


def test_pcie_throughput_rounds_keep_within_a_budget_that_grows_with_the_gpus_up_to_its_cap():
    def per_second(gpus: int) -> float:  # driver time a second: tx and rx per GPU, 20 ms each
        return 2 * gpus * nvml_pcie.WINDOW_S / nvml_pcie.interval_for(2 * gpus, gpus)

    assert per_second(1) == pytest.approx(nvml_pcie.BUDGET_S_PER_S_PER_GPU)
    assert per_second(2) == pytest.approx(2 * nvml_pcie.BUDGET_S_PER_S_PER_GPU)
    assert per_second(8) == pytest.approx(nvml_pcie.BUDGET_S_PER_S)  # capped: what 8 GPUs cost before
    assert nvml_pcie.BUDGET_S_PER_S_PER_GPU < nvml_pcie.BUDGET_S_PER_S
    assert nvml_pcie.interval_for(1, 8) == nvml_pcie.MIN_INTERVAL_S  # however cheap a round, once a second at most


def test_pcie_throughput_calls_run_on_the_pcie_threads_only(fake_nvml):
    fake = fake_nvml([H100_SXM, H100_SXM], DriverProfile(cost_model=True, max_field_id=fakenvml._BEFORE_PCIE_COUNTERS))
    src = NvmlSource.open()
    try:
        probed = set(fake.threads[PCIE])  # the probe at open: this thread
        wait_for(lambda: all(g.pcie_rx_bytes_per_s for g in src.sample()), 30, "PCIe throughput")
        assert fake.threads[PCIE] - probed and all(name.startswith("gputop-pcie") for name in fake.threads[PCIE] - probed)
    finally:
        src.close()


def test_devices_are_read_side_by_side_by_a_few_threads_without_more_driver_time(fake_nvml):
    devices = nvml_source.READERS_MAX + 2
    fake = fake_nvml([H100_SXM] * devices, COSTED)
    src = NvmlSource.open()
    try:
        src.sample()
        names = {n for symbol, threads in fake.threads.items() if symbol == "nvmlDeviceGetPowerUsage" for n in threads}
        readers = {n for n in names if n.startswith("gputop-gpu")}
        assert 2 <= len(readers) <= nvml_source.READERS_MAX  # more than one reader, never one a device past the cap
        before = dict(fake.calls)
        src.sample()
        per_read = {k: v - before.get(k, 0) for k, v in fake.calls.items() if v - before.get(k, 0)}
        assert per_read["nvmlDeviceGetPowerUsage"] == devices  # once a device, as one after another would
    finally:
        src.close()


def test_process_lists_are_read_within_their_budget(fake_nvml):
    fake = fake_nvml([H100_SXM] * 2, COSTED)
    clock = [100.0]
    src = NvmlSource.open(clock=lambda: clock[0])
    try:
        started = time.perf_counter()
        first = src.processes()
        took = time.perf_counter() - started  # >= 2 devices x 2 calls x 4.49 ms
        calls = fake.calls["nvmlDeviceGetComputeRunningProcesses_v3"]
        clock[0] += took / 0.02 / 2  # half the budget's wait: the same table, no call
        assert src.processes() == first and fake.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == calls
        clock[0] += took / 0.02 * 4  # well past it: read again
        src.processes()
        assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v3"] > calls
    finally:
        src.close()


def test_query_counts_its_calls_and_their_time(fake_nvml):
    fake = fake_nvml([CONSUMER], COSTED)
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    ns0, calls0 = DRIVER_TIME.read()
    query(pynvml.nvmlDeviceGetFanSpeed, handle)
    query(pynvml.nvmlDeviceGetPcieThroughput, handle, pynvml.NVML_PCIE_UTIL_TX_BYTES)
    ns1, calls1 = DRIVER_TIME.read()
    assert calls1 - calls0 == 2
    assert ns1 - ns0 >= fake.cost_ns["nvmlDeviceGetFanSpeed"] + fake.cost_ns[PCIE]  # at least the driver's time
    assert NvmlSource.driver_time() == DRIVER_TIME.read()


def test_side_by_side_runs_on_daemon_threads_and_raises_the_callers_error():
    """A call hung in the driver must not hold gputop's exit: the workers are daemon threads."""
    from gputop.sources.nvml.workers import SideBySide

    pool = SideBySide(3, "test-side")
    try:
        names = pool.map(lambda x: (x * 2, threading.current_thread()), [1, 2, 3])
        assert [n for n, _ in names] == [2, 4, 6]
        assert all(t.daemon and t.name.startswith("test-side") for _, t in names)

        def boom(x: int) -> int:
            if x == 2:
                raise ValueError("no")
            return x

        with pytest.raises(ValueError):
            pool.map(boom, [1, 2, 3])
    finally:
        pool.close()
