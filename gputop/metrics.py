"""The metric catalogue: one table of every signal gputop measures.

A metric's ``name`` is public: it is the field name on the model dataclasses, the key in
``gputop snapshot --json``, the trace track name and the stem of the Prometheus name. The TUI
labels, the JSON snapshot, the trace writer and the exporter all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["gpu", "cpu", "core", "workload"]
Kind = Literal["gauge", "counter", "info"]


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str  # "%", "bytes", "bytes/s", "W", "J", "MHz", "C", "" (dimensionless)
    scope: Scope
    description: str
    kind: Kind = "gauge"


_GPU = [
    Metric(
        "gpu_util_pct",
        "%",
        "gpu",
        "share of the sample period in which any kernel ran (NVML utilization.gpu; AMD: gfx_activity, the compute units' engine)",
    ),
    Metric(
        "mem_busy_pct",
        "%",
        "gpu",
        "share of the sample period in which device memory was read or written (NVML utilization.memory; "
        "AMD: umc_activity, the memory controllers': a busy share, not GPM's DRAM bandwidth)",
    ),
    Metric("sm_active_pct", "%", "gpu", "GPM: average share of SMs with at least one warp resident (Hopper and newer)"),
    Metric("sm_occupancy_pct", "%", "gpu", "GPM: resident warps as a share of the SMs' maximum (Hopper and newer)"),
    Metric("tensor_active_pct", "%", "gpu", "GPM: share of cycles the tensor cores were busy (any precision)"),
    Metric("dram_bw_util_pct", "%", "gpu", "GPM: DRAM bandwidth used as a share of peak"),
    Metric("fp16_active_pct", "%", "gpu", "GPM: share of cycles the FP16 pipe was busy"),
    Metric("fp32_active_pct", "%", "gpu", "GPM: share of cycles the FP32 pipe was busy"),
    Metric("fp64_active_pct", "%", "gpu", "GPM: share of cycles the FP64 pipe was busy"),
    Metric("dram_bw_bytes_per_s", "bytes/s", "gpu", "DRAM bandwidth: dram_bw_util_pct x the device's peak DRAM bandwidth"),
    Metric("mem_used_bytes", "bytes", "gpu", "device memory in use"),
    Metric("mem_total_bytes", "bytes", "gpu", "device memory in all"),
    Metric("power_w", "W", "gpu", "board power draw"),
    Metric("power_limit_w", "W", "gpu", "enforced power limit"),
    Metric("energy_j", "J", "gpu", "energy used since the driver loaded (or since gputop started, where integrated from power)", "counter"),
    Metric("sm_clock_mhz", "MHz", "gpu", "SM clock"),
    Metric("mem_clock_mhz", "MHz", "gpu", "memory clock"),
    Metric("temp_c", "C", "gpu", "GPU core temperature (AMD: the edge sensor, which MI300X lacks)"),
    Metric("fan_pct", "%", "gpu", "fan speed as a share of maximum (no fan on datacentre boards)"),
    Metric("pstate", "", "gpu", "performance state, 0 (fastest) to 15"),
    Metric("clock_event_reasons", "", "gpu", "why clocks are held below their maximum, in words", "info"),
    Metric("pcie_tx_bytes_per_s", "bytes/s", "gpu", "PCIe transmit throughput"),
    Metric("pcie_rx_bytes_per_s", "bytes/s", "gpu", "PCIe receive throughput"),
    Metric("nvlink_tx_bytes_per_s", "bytes/s", "gpu", "NVLink transmit throughput, all links"),
    Metric("nvlink_rx_bytes_per_s", "bytes/s", "gpu", "NVLink receive throughput, all links"),
    Metric("temp_hotspot_c", "C", "gpu", "AMD: junction (hotspot) temperature, the hottest point of the die"),
    Metric("temp_mem_c", "C", "gpu", "AMD: memory (HBM or VRAM) temperature"),
    Metric("xgmi_read_bytes_per_s", "bytes/s", "gpu", "AMD: XGMI (Infinity Fabric) data read, all links"),
    Metric("xgmi_write_bytes_per_s", "bytes/s", "gpu", "AMD: XGMI (Infinity Fabric) data written, all links"),
]

_CPU = [
    Metric("cpu_util_pct", "%", "cpu", "all cores' utilization, averaged"),
    Metric("core_util_pct", "%", "core", "one core's utilization"),
    Metric("core_freq_mhz", "MHz", "core", "one core's current frequency"),
    Metric("cpu_power_w", "W", "cpu", "CPU package power from RAPL energy counters (n/a where unreadable)"),
    Metric("ram_used_bytes", "bytes", "cpu", "host memory in use (total minus available)"),
    Metric("ram_total_bytes", "bytes", "cpu", "host memory in all"),
    Metric("load1", "", "cpu", "one-minute load average"),
]

_WORKLOAD = [
    Metric("step", "", "workload", "training step index", "counter"),
    Metric("samples_per_s", "samples/s", "workload", "training throughput"),
    Metric("tflops", "TFLOP/s", "workload", "achieved model FLOP rate"),
    Metric("mfu_pct", "%", "workload", "model FLOPs utilization: achieved / the device's peak FLOP/s"),
    Metric("loss", "", "workload", "training loss"),
    Metric("joules_per_step", "J", "workload", "energy used per training step"),
]

CATALOGUE: dict[str, Metric] = {m.name: m for m in _GPU + _CPU + _WORKLOAD}

GPU_METRICS: tuple[str, ...] = tuple(m.name for m in _GPU)
CPU_METRICS: tuple[str, ...] = tuple(m.name for m in _CPU)
WORKLOAD_METRICS: tuple[str, ...] = tuple(m.name for m in _WORKLOAD)


def metric(name: str) -> Metric:
    """The catalogue entry for ``name``; a KeyError names the unknown metric."""
    return CATALOGUE[name]
