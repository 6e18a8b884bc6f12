"""Prometheus collector over the latest Sample: scrapes read what the sampler last took, never sample.

The sampling thread calls ``Exporter.update(sample)``; a scrape's ``collect()`` reads one reference
(the sample and the count taken, swapped together as one tuple), so it never sees half a tick and
never waits on NVML. 200 scrapes a second cost 200 renders and no extra samples.

Names follow Prometheus conventions and derive from the catalogue (gputop.metrics) through one
table, ``NAMES``: base units (bytes, watts, joules, hertz, celsius), ``_ratio`` for shares 0..1
(converted from the catalogue's percent), ``_total`` for counters. Every series has a ``hostname``
label; GPU series also ``gpu``, ``uuid`` and ``name``; per-core series ``core``. A value that is
``None`` is no series at all, never 0.
"""

from __future__ import annotations

import socket
from typing import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gputop import __version__
from gputop.metrics import CPU_METRICS, GPU_METRICS, metric
from gputop.model import GpuSample, Sample

PREFIX = "gputop_"

# catalogue name -> Prometheus name (without the ``_total`` a counter gets in the exposition).
# A catalogue metric missing here fails a test; workload metrics are not exported (they belong to
# a launched script, not to the node).
NAMES: dict[str, str] = {
    "gpu_util_pct": "gpu_utilization_ratio",
    "mem_busy_pct": "gpu_memory_busy_ratio",
    "sm_active_pct": "gpu_sm_active_ratio",
    "sm_occupancy_pct": "gpu_sm_occupancy_ratio",
    "tensor_active_pct": "gpu_tensor_active_ratio",
    "dram_bw_util_pct": "gpu_dram_bandwidth_utilization_ratio",
    "fp16_active_pct": "gpu_fp16_active_ratio",
    "fp32_active_pct": "gpu_fp32_active_ratio",
    "fp64_active_pct": "gpu_fp64_active_ratio",
    "dram_bw_bytes_per_s": "gpu_dram_bandwidth_bytes_per_second",
    "mem_used_bytes": "gpu_memory_used_bytes",
    "mem_total_bytes": "gpu_memory_capacity_bytes",  # not *_total_bytes: _total is for counters
    "power_w": "gpu_power_watts",
    "power_limit_w": "gpu_power_limit_watts",
    "energy_j": "gpu_energy_joules",
    "sm_clock_mhz": "gpu_sm_clock_hertz",
    "mem_clock_mhz": "gpu_memory_clock_hertz",
    "temp_c": "gpu_temperature_celsius",
    "fan_pct": "gpu_fan_speed_ratio",
    "pstate": "gpu_pstate",
    "clock_event_reasons": "gpu_clock_event_reason",
    "pcie_tx_bytes_per_s": "gpu_pcie_transmit_bytes_per_second",
    "pcie_rx_bytes_per_s": "gpu_pcie_receive_bytes_per_second",
    "nvlink_tx_bytes_per_s": "gpu_nvlink_transmit_bytes_per_second",
    "nvlink_rx_bytes_per_s": "gpu_nvlink_receive_bytes_per_second",
    "temp_hotspot_c": "gpu_hotspot_temperature_celsius",  # AMD
    "temp_mem_c": "gpu_memory_temperature_celsius",  # AMD
    "xgmi_read_bytes_per_s": "gpu_xgmi_read_bytes_per_second",  # AMD
    "xgmi_write_bytes_per_s": "gpu_xgmi_write_bytes_per_second",  # AMD
    "cpu_util_pct": "cpu_utilization_ratio",
    "core_util_pct": "cpu_core_utilization_ratio",
    "core_freq_mhz": "cpu_core_frequency_hertz",
    "cpu_power_w": "cpu_package_power_watts",
    "ram_used_bytes": "host_memory_used_bytes",
    "ram_total_bytes": "host_memory_capacity_bytes",
    "load1": "host_load1",
}

# catalogue unit -> factor to the Prometheus base unit
_SCALE = {"%": 0.01, "MHz": 1e6}

GPU_LABELS = ("hostname", "gpu", "uuid", "name")


def prom_name(catalogue_name: str) -> str:
    """The exposed name of a catalogue metric (counters get ``_total`` appended in the exposition)."""
    return PREFIX + NAMES[catalogue_name]


_HELP_UNIT = {"%": " (0..1)", "MHz": " (Hz)"}


def _family(catalogue_name: str, labels: tuple[str, ...]) -> GaugeMetricFamily | CounterMetricFamily:
    m = metric(catalogue_name)
    cls = CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily
    suffix = _HELP_UNIT.get(m.unit, f" ({m.unit})" if m.unit else "")
    return cls(prom_name(catalogue_name), m.description + suffix, labels=list(labels))


class Exporter(Collector):
    """A custom collector over the latest Sample; ``update`` is the only writer."""

    def __init__(self, hostname: str | None = None, interval_s: float | None = None) -> None:
        self.hostname = socket.gethostname() if hostname is None else hostname
        self.interval_s = interval_s
        self._state: tuple[Sample | None, int] = (None, 0)

    def update(self, sample: Sample) -> None:
        """Publish a new sample (one reference swap: scrapes see the old one or the new one)."""
        self._state = (sample, self._state[1] + 1)

    @property
    def samples(self) -> int:
        return self._state[1]

    def collect(self) -> Iterator[Metric]:
        sample, count = self._state  # one read: the sample and its count belong together
        host = self.hostname
        build = InfoMetricFamily(PREFIX + "build", "gputop version", labels=["hostname"])
        build.add_metric([host], {"version": __version__})
        yield build
        taken = CounterMetricFamily(PREFIX + "samples", "samples taken since the exporter started", labels=["hostname"])
        taken.add_metric([host], count)
        yield taken
        if self.interval_s is not None:
            yield _gauge("sample_interval_seconds", "seconds between samples", host, self.interval_s)
        if sample is None:
            return
        yield _gauge("last_sample_timestamp_seconds", "Unix time the latest sample was taken", host, sample.ts_ns / 1e9)
        yield from _cpu_families(sample, host)
        yield from _gpu_families(sample, host)


def _gauge(name: str, help_: str, host: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, help_, labels=["hostname"])
    family.add_metric([host], value)
    return family


def _cpu_families(sample: Sample, host: str) -> Iterator[Metric]:
    cpu = sample.cpu
    for name in CPU_METRICS:
        scale = _SCALE.get(metric(name).unit, 1.0)
        value = getattr(cpu, name)
        if isinstance(value, tuple):  # per core
            family = _family(name, ("hostname", "core"))
            for core, v in enumerate(value):
                if v is not None:
                    family.add_metric([host, str(core)], v * scale)
        else:
            family = _family(name, ("hostname",))
            if value is not None:
                family.add_metric([host], value * scale)
        if family.samples:
            yield family


def _gpu_families(sample: Sample, host: str) -> Iterator[Metric]:
    gpus = sample.gpus
    yield _gauge("gpus", "GPUs monitored on this host", host, len(gpus))
    if not gpus:
        reason = InfoMetricFamily(PREFIX + "gpu_unavailable", "why no GPU is monitored", labels=["hostname"])
        reason.add_metric([host], {"reason": sample.gpu_unavailable or "no GPU found"})
        yield reason
        return
    labels = {g.info.index: [host, str(g.info.index), g.info.uuid or "", g.info.name] for g in gpus}

    info = InfoMetricFamily(PREFIX + "gpu", "what a device is (static)", labels=list(GPU_LABELS))
    lost = GaugeMetricFamily(
        PREFIX + "gpu_lost",
        "1 when the device stopped answering (fell off the bus); its other series are then absent",
        labels=list(GPU_LABELS),
    )
    sms = GaugeMetricFamily(PREFIX + "gpu_multiprocessors", "streaming multiprocessors (SMs) on the device", labels=list(GPU_LABELS))
    peak = GaugeMetricFamily(
        PREFIX + "gpu_dram_peak_bandwidth_bytes_per_second",
        "peak DRAM bandwidth: 2 x max memory clock x bus width / 8",
        labels=list(GPU_LABELS),
    )
    for g in gpus:
        i = g.info
        info.add_metric(
            labels[i.index],
            {
                k: v
                for k, v in (
                    ("pci_bus_id", i.pci_bus_id),
                    ("architecture", i.architecture),
                    ("vendor", i.vendor),
                    ("driver_version", i.driver_version),
                    ("cuda_version", i.cuda_version),
                    ("gpm_supported", str(i.gpm_supported).lower()),
                    ("mig_enabled", str(i.mig_enabled).lower()),
                )
                if v is not None
            },
        )
        lost.add_metric(labels[i.index], 1.0 if g.lost else 0.0)
        if i.sm_count is not None:
            sms.add_metric(labels[i.index], i.sm_count)
        if i.peak_dram_bw_bytes_per_s is not None:
            peak.add_metric(labels[i.index], i.peak_dram_bw_bytes_per_s)
    yield from (f for f in (info, lost, sms, peak) if f.samples)

    for name in GPU_METRICS:
        if name == "clock_event_reasons":
            yield from _reason_families(gpus, labels)
            continue
        scale = _SCALE.get(metric(name).unit, 1.0)
        family = _family(name, GPU_LABELS)
        for g in gpus:
            value = getattr(g, name)
            if value is not None:
                family.add_metric(labels[g.info.index], value * scale)
        if family.samples:
            yield family


def _reason_families(gpus: tuple[GpuSample, ...], labels: dict[int, list[str]]) -> Iterator[Metric]:
    """``gpu_clock_event_reason{reason}`` 1 per active reason, and how many are active (0 when the
    clocks run free), so "no reason" and "not readable" stay apart."""
    active = GaugeMetricFamily(
        prom_name("clock_event_reasons"),
        "1 for each reason the clocks are held below their maximum by",
        labels=list(GPU_LABELS) + ["reason"],
    )
    count = GaugeMetricFamily(
        PREFIX + "gpu_clock_event_reasons_active",
        "how many clock event reasons are active (0: clocks not held back)",
        labels=list(GPU_LABELS),
    )
    for g in gpus:
        if g.clock_event_reasons is None:
            continue
        count.add_metric(labels[g.info.index], len(g.clock_event_reasons))
        for reason in g.clock_event_reasons:
            active.add_metric(labels[g.info.index] + [reason], 1.0)
    yield from (f for f in (active, count) if f.samples)
