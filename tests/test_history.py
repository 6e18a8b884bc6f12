"""History: every numeric metric as a bounded series on one shared time axis."""

import pytest

from gputop import metrics
from gputop.model import CpuSample, GpuInfo, GpuSample, Sample
from gputop.view.history import History, core_key, cpu_key, flatten, gpu_key, workload_key

pytestmark = pytest.mark.unit

INFO = GpuInfo(
    index=0,
    name="H100",
    uuid="GPU-0",
    pci_bus_id="0000:01:00.0",
    architecture="Hopper",
    sm_count=132,
    mem_bus_width_bits=5120,
    max_mem_clock_mhz=2619,
    peak_dram_bw_bytes_per_s=3.35e12,
    driver_version="550",
    cuda_version="12.4",
)


def cpu(util=10.0, cores=(10.0, 10.0)):
    return CpuSample(
        cpu_util_pct=util,
        core_util_pct=cores,
        core_freq_mhz=(2000.0, None),
        cpu_power_w=None,
        ram_used_bytes=1 << 30,
        ram_total_bytes=1 << 32,
        load1=0.5,
    )


def gpu(sm=50.0, **kw):
    return GpuSample(info=INFO, sm_active_pct=sm, power_w=300.0, pstate=0, clock_event_reasons=("sw_power_cap",), **kw)


def sample(t, util=10.0, gpus=()):
    return Sample(ts_ns=t, cpu=cpu(util), gpus=gpus)


def test_flatten_names_every_numeric_metric():
    points = flatten(sample(1, gpus=(gpu(),)))
    expected = {cpu_key(m) for m in ("cpu_util_pct", "cpu_power_w", "ram_used_bytes", "ram_total_bytes", "load1")}
    expected |= {core_key(c, m) for c in (0, 1) for m in ("core_util_pct", "core_freq_mhz")}
    expected |= {gpu_key(0, m) for m in metrics.GPU_METRICS if m != "clock_event_reasons"}
    assert set(points) == expected
    assert points["gpu0.sm_active_pct"] == 50.0
    assert points["gpu0.pstate"] == 0  # an int is a number; 0 is a value, not missing
    assert points["cpu.core1.core_freq_mhz"] is None
    assert points["gpu0.dram_bw_util_pct"] is None  # None stays None, never 0


def test_push_and_read_series():
    h = History(capacity=10)
    for t in range(3):
        h.push(sample(t * 1000, util=float(t), gpus=(gpu(sm=t * 10.0),)))
    assert len(h) == 3
    assert h.series("cpu.cpu_util_pct") == [0.0, 1.0, 2.0]
    assert h.series("gpu0.sm_active_pct") == [0.0, 10.0, 20.0]
    assert h.timestamps() == [0, 1000, 2000]
    assert h.latest("gpu0.power_w") == 300.0
    assert "gpu0.clock_event_reasons" not in h


def test_capacity_bounds_memory_and_keeps_the_newest():
    h = History(capacity=5)
    for t in range(1000):
        h.push(sample(t, util=float(t), gpus=(gpu(),)))
    assert len(h) == 5
    assert h.timestamps() == [995, 996, 997, 998, 999]
    assert all(len(h.series(name)) == 5 for name in h.names())
    assert h.series("cpu.cpu_util_pct") == [995.0, 996.0, 997.0, 998.0, 999.0]


def test_last_gives_up_to_n_newest_oldest_first():
    h = History(capacity=100)
    for t in range(10):
        h.push(sample(t, util=float(t)))
    assert h.last("cpu.cpu_util_pct", 3) == [7.0, 8.0, 9.0]
    assert h.last("cpu.cpu_util_pct", 500) == [float(t) for t in range(10)]  # never padded, never trimmed to a width
    assert h.last("cpu.cpu_util_pct", 0) == []
    assert h.timestamps(2) == [8, 9]
    assert h.last("gpu7.power_w", 5) == [] and h.series("nope") == [] and h.latest("nope") is None


def test_late_and_missing_series_stay_aligned_with_timestamps():
    h = History(capacity=4)
    h.push(sample(0))
    h.push(sample(1), extra={workload_key("samples_per_s"): 1200.0})
    h.push(sample(2))  # the workload said nothing this tick
    h.push(sample(3), extra={workload_key("samples_per_s"): 1300.0})
    assert h.series("workload.samples_per_s") == [None, 1200.0, None, 1300.0]
    h.push(sample(4))
    assert h.series("workload.samples_per_s") == [1200.0, None, 1300.0, None]
    assert len(h.timestamps()) == len(h.series("workload.samples_per_s")) == len(h.series("cpu.load1"))


def test_a_lost_gpu_records_none():
    h = History()
    h.push(sample(0, gpus=(gpu(sm=80.0),)))
    h.push(sample(1, gpus=(GpuSample(info=INFO, lost=True),)))
    assert h.series("gpu0.sm_active_pct") == [80.0, None]


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        History(capacity=0)


def test_pushes_count_every_sample_recorded_past_the_capacity_too():
    """What a chart compares to know how many points are new since it drew (len stops growing)."""
    h = History(capacity=3)
    assert h.pushes == 0
    for t in range(5):
        h.push(sample(t))
    h.record(10, {"cpu.load1": 1.0})
    assert (h.pushes, len(h)) == (6, 3)
