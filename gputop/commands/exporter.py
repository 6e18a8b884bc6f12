"""Prometheus collector over the latest Sample: scrapes read what the sampler last took, never sample.

The sampling thread calls ``Exporter.update(sample)``; a scrape's ``collect()`` reads one reference
(the sample and the count taken, swapped together as one tuple), so it never sees half a tick and
never waits on NVML. 200 scrapes a second cost 200 renders and no extra samples.

Names follow Prometheus conventions and derive from the catalogue (gputop.metrics) through one
table, ``NAMES``: base units (bytes, watts, joules, hertz, celsius), ``_ratio`` for shares 0..1
(converted from the catalogue's percent), ``_total`` for counters. Every series has a ``hostname``
label; GPU series also ``gpu``, ``uuid`` and ``name``; per-core series ``core``. A value that is
``None`` is no series at all, never 0.

With ``serve --run``, a launched job's figures too (``JobFigures``, swapped in with the sample):
``gputop_workload_*`` series labelled ``run`` (the job: its torchrun run id, else
``NAME-PID`` of the launched process) and, per rank, ``rank`` (the global rank). Bounded labels
only: no pid, no step number (an elastic restart keeps the rank's series; its counters go on
counting). Not ``job``: that is the scrape job's target label, which Prometheus would rename
ours ``exported_job``. A rank's state and the job's status are enumerations: one series per
value, 1 for the current one and 0 for the others (a state that changes never makes a gap).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gputop import __version__
from gputop.metrics import CPU_METRICS, GPU_METRICS, metric
from gputop.model import GpuSample, RankRow, RankStraggler, Sample, WorkloadState
from gputop.workload.ranks import RankTotal

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


# a launched job's per-rank gauges: RankRow attribute -> (name after gputop_workload_, help)
RANK_GAUGES: dict[str, tuple[str, str]] = {
    "steps_per_s": ("steps_per_second", "the rank's steps a second over its last 64 steps after its first (their count over their time)"),
    "step_p50_s": ("step_p50_seconds", "the median time of the rank's last 64 steps after its first (seconds)"),
    "data_wait_share": (
        "data_wait_ratio",
        "the share of the rank's step time spent waiting for its next batch (0..1; no DataLoader: absent)",
    ),
}
# a launched job's per-rank counters: RankTotal attribute -> (name without _total, help)
RANK_COUNTERS: dict[str, tuple[str, str]] = {
    "steps": ("steps", "the rank's training steps since the job began (every attempt's)"),
    "samples": ("samples", "the rank's samples since the job began (absent where a batch could not be seen)"),
}
RANK_STATES = ("stepping", "waiting", "stalled", "exited")  # gputop.workload.ranks.stall's words
JOB_STATUSES = ("running", "stopping", "ok", "failed", "stopped")  # WorkloadState.status's words
JOB_LABELS = ("hostname", "run")
RANK_LABELS = ("hostname", "run", "rank")


@dataclass(frozen=True)
class JobFigures:
    """A launched job's figures as ``serve`` exports them: its state now and each rank's totals."""

    run: str  # the ``run`` label: the torchrun run id, else NAME-PID
    state: WorkloadState
    totals: Mapping[int, RankTotal]  # rank -> its steps and samples since the job began


class Exporter(Collector):
    """A custom collector over the latest Sample; ``update`` is the only writer."""

    def __init__(self, hostname: str | None = None, interval_s: float | None = None) -> None:
        self.hostname = socket.gethostname() if hostname is None else hostname
        self.interval_s = interval_s
        self._state: tuple[Sample | None, int, JobFigures | None] = (None, 0, None)
        self.scraped = 0  # the count (``samples``) of the latest sample a scrape has read: serve's
        # --run waits for a scrape of the job's final figures

    def update(self, sample: Sample, job: JobFigures | None = None) -> None:
        """Publish a new sample and, with ``serve --run``, the job's figures (one reference swap:
        scrapes see the old ones or the new ones)."""
        self._state = (sample, self._state[1] + 1, job)

    @property
    def samples(self) -> int:
        return self._state[1]

    def collect(self) -> Iterator[Metric]:
        sample, count, job = self._state  # one read: the sample, its count and the job's figures belong together
        self.scraped = max(self.scraped, count)
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
        if job is not None:
            yield from _job_families(job, host)


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


def _job_families(job: JobFigures, host: str) -> Iterator[Metric]:
    """A launched job's series: what it is and how it stands, its samples/s and straggler, and
    each rank's figures (a value it does not give: no series)."""
    state, key = job.state, [host, job.run]
    info = InfoMetricFamily(PREFIX + "workload", "the job gputop serve --run launched", labels=list(JOB_LABELS))
    info.add_metric(key, {"workload": state.name})
    yield info
    status = GaugeMetricFamily(
        PREFIX + "workload_status",
        "1 for how the job stands now (running, stopping, ok, failed, stopped), 0 for the others",
        labels=[*JOB_LABELS, "status"],
    )
    for word in JOB_STATUSES:
        status.add_metric([*key, word], 1.0 if state.status == word else 0.0)
    yield status
    yield _job_gauge("workload_ranks", "the job's ranks that have stepped", key, len(state.ranks))
    if state.samples_per_s is not None:
        yield _job_gauge(
            "workload_samples_per_second", "the job's samples a second: each rank's over its recent steps, summed", key, state.samples_per_s
        )
    if state.straggler is not None:
        yield _straggler(state.straggler, key)
    if state.ranks:
        yield from _rank_families(state.ranks, job.totals, key)


def _job_gauge(name: str, help_: str, key: list[str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, help_, labels=list(JOB_LABELS))
    family.add_metric(key, value)
    return family


def _straggler(s: RankStraggler, key: list[str]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        PREFIX + "workload_straggler",
        "1 for the rank that holds the job back, with why (data loader, host CPU, GPU memory (allocator retries), "
        "GPU clocks, GPU work, compute); absent: none",
        labels=[*RANK_LABELS, "reason"],
    )
    family.add_metric([*key, str(s.rank), s.reason or "not measured"], 1.0)
    return family


def _rank_families(rows: tuple[RankRow, ...], totals: Mapping[int, RankTotal], key: list[str]) -> Iterator[Metric]:
    labels = {r.rank: [*key, str(r.rank)] for r in rows}
    info = InfoMetricFamily(PREFIX + "workload_rank", "a rank of the job and its device", labels=list(RANK_LABELS))
    state = GaugeMetricFamily(
        PREFIX + "workload_rank_state",
        "1 for the rank's state now (stepping, waiting, stalled, exited), 0 for the others",
        labels=[*RANK_LABELS, "state"],
    )
    for r in rows:
        info.add_metric(labels[r.rank], {k: v for k, v in (("device", r.device), ("uuid", r.device_uuid)) if v})
        for word in RANK_STATES:
            state.add_metric([*labels[r.rank], word], 1.0 if r.state == word else 0.0)
    yield info
    yield state
    for attr, (name, help_) in RANK_COUNTERS.items():
        counter = CounterMetricFamily(PREFIX + "workload_" + name, help_, labels=list(RANK_LABELS))
        for r in rows:
            total = totals.get(r.rank)
            value = None if total is None else getattr(total, attr)
            if value is not None:
                counter.add_metric(labels[r.rank], value)
        if counter.samples:
            yield counter
    for attr, (name, help_) in RANK_GAUGES.items():
        gauge = GaugeMetricFamily(PREFIX + "workload_" + name, help_, labels=list(RANK_LABELS))
        for r in rows:
            value = getattr(r, attr)
            if value is not None:
                gauge.add_metric(labels[r.rank], value)
        if gauge.samples:
            yield gauge
