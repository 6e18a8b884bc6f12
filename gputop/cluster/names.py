"""Metric names, labels and units of gputop serve, dcgm-exporter, AMD's device-metrics-exporter and
node-exporter, mapped once.

Everything the cluster view reads is converted here, and nowhere else, into gputop's own units
(percent, bytes, watts, degrees C): gputop's ``*_ratio`` and DCGM's ``PROF`` ratios are 0..1,
DCGM's ``DEV_GPU_UTIL`` is already percent, its framebuffer fields are MiB. DCGM writes a blank
sentinel (2^31 - 16, 2^47 or 2^63 - 16, plus a small error code) where a field has no value: that
is None, never a number. AMD's device-metrics-exporter (its default names, no field prefix) gives
activity in percent, VRAM in MB (2^20 bytes, as amdsmi counts them), power in W and the edge
temperature in degrees C (MI300X has no edge sensor: no series), its GPU index in ``gpu_id``.
``host_of`` names the node an ``instance`` label belongs to.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

MIB = 1024 * 1024

GPUTOP, DCGM, AMD = "gputop", "dcgm", "amd"


class Field(NamedTuple):
    source: str  # GPUTOP, DCGM or AMD
    field: str  # gputop's name for the value (a ClusterGpu attribute, or a DCGM memory part)
    scale: float  # multiply the exported value by this to get gputop's unit


# exported name -> what it is. The union of both tables is the one GPU query's name regex.
GPU_METRICS: dict[str, Field] = {
    "gputop_gpu_sm_active_ratio": Field(GPUTOP, "sm_active_pct", 100.0),
    "gputop_gpu_utilization_ratio": Field(GPUTOP, "gpu_util_pct", 100.0),
    "gputop_gpu_memory_used_bytes": Field(GPUTOP, "mem_used_bytes", 1.0),
    "gputop_gpu_memory_capacity_bytes": Field(GPUTOP, "mem_total_bytes", 1.0),
    "gputop_gpu_power_watts": Field(GPUTOP, "power_w", 1.0),
    "gputop_gpu_temperature_celsius": Field(GPUTOP, "temp_c", 1.0),
    "DCGM_FI_PROF_SM_ACTIVE": Field(DCGM, "sm_active_pct", 100.0),  # 0..1
    "DCGM_FI_DEV_GPU_UTIL": Field(DCGM, "gpu_util_pct", 1.0),  # percent
    "DCGM_FI_DEV_FB_USED": Field(DCGM, "mem_used_bytes", MIB),
    "DCGM_FI_DEV_FB_TOTAL": Field(DCGM, "mem_total_bytes", MIB),  # not a default counter
    "DCGM_FI_DEV_FB_FREE": Field(DCGM, "mem_free_bytes", MIB),
    "DCGM_FI_DEV_FB_RESERVED": Field(DCGM, "mem_reserved_bytes", MIB),
    "DCGM_FI_DEV_POWER_USAGE": Field(DCGM, "power_w", 1.0),
    "DCGM_FI_DEV_GPU_TEMP": Field(DCGM, "temp_c", 1.0),
    "gpu_gfx_activity": Field(AMD, "gpu_util_pct", 1.0),  # percent
    "gpu_used_vram": Field(AMD, "mem_used_bytes", MIB),
    "gpu_total_vram": Field(AMD, "mem_total_bytes", MIB),
    "gpu_package_power": Field(AMD, "power_w", 1.0),  # MI3xx
    "gpu_average_package_power": Field(AMD, "power_w", 1.0),  # MI2xx
    "gpu_edge_temperature": Field(AMD, "temp_c", 1.0),
}

# the series a node's history shows (range queries): SMs active or util, power, memory used
HISTORY_METRICS = tuple(
    name for name, f in GPU_METRICS.items() if f.field in ("sm_active_pct", "gpu_util_pct", "power_w", "mem_used_bytes")
)

# one series per GPU that every exporter has, to read the GPU's name, UUID and host name from
# (gputop's info series; FB_USED is in every dcgm-exporter counters file; AMD's total VRAM on
# bare metal and under a hypervisor alike)
IDENTITY_METRICS = ("gputop_gpu_info", "DCGM_FI_DEV_FB_USED", "gpu_total_vram")

# label names: gputop's first, then dcgm-exporter's, then AMD's
INDEX_LABELS = ("gpu", "gpu_id")
UUID_LABELS = ("uuid", "UUID", "gpu_uuid")
NAME_LABELS = ("name", "modelName", "card_model")
HOSTNAME_LABELS = ("hostname", "Hostname", "nodename")  # nodename: node-exporter's node_uname_info

# gputop serve --run's job series (gputop.commands.exporter): per rank, name -> the ClusterRank
# field it fills (already in gputop's units: seconds, a share 0..1, counts)
WORKLOAD_RANK_METRICS = {
    "gputop_workload_steps_total": "steps",
    "gputop_workload_samples_total": "samples",
    "gputop_workload_steps_per_second": "steps_per_s",
    "gputop_workload_step_p50_seconds": "step_p50_s",
    "gputop_workload_data_wait_ratio": "data_wait_share",
}
WORKLOAD_RANK_STATE = "gputop_workload_rank_state"  # {state}: 1 for the current one
WORKLOAD_RANK_INFO = "gputop_workload_rank_info"  # {device}
WORKLOAD_STRAGGLER = "gputop_workload_straggler"  # {rank, reason}
WORKLOAD_STATUS = "gputop_workload_status"  # {status}: 1 for the current one
WORKLOAD_INFO = "gputop_workload_info"  # {workload}
WORKLOAD_SAMPLES_PER_S = "gputop_workload_samples_per_second"
WORKLOAD_METRICS = (
    *WORKLOAD_RANK_METRICS,
    WORKLOAD_RANK_STATE,
    WORKLOAD_RANK_INFO,
    WORKLOAD_STRAGGLER,
    WORKLOAD_STATUS,
    WORKLOAD_INFO,
    WORKLOAD_SAMPLES_PER_S,
)
WORKLOAD_LABELS = ("run", "rank", "reason", "state", "status", "workload", "device", "hostname")

GPUTOP_CORE_UTIL = "gputop_cpu_core_utilization_ratio"  # per core, 0..1
GPUTOP_BUILD = "gputop_build_info"
NODE_CPU = "node_cpu_seconds_total"  # node-exporter, per core and mode, a counter in seconds
NODE_UNAME = "node_uname_info"

# DCGM's blanks (dcgm_structs.h): a base and up to 16 codes above it (not found, not supported...)
_INT32_BLANK = 0x7FFFFFF0
_FP64_BLANK = 140737488355328.0  # 2 ** 47
_INT64_BLANK = float(0x7FFFFFFFFFFFFFF0)  # as a float64 this is 2 ** 63: every int64 blank
_BLANK_SPAN = 16
_INFINITIES = (math.inf, -math.inf)


def is_dcgm_blank(value: float) -> bool:
    """True for DCGM's "no value" sentinels (as Prometheus carries them, float64)."""
    return (
        _INT32_BLANK <= value < _INT32_BLANK + _BLANK_SPAN
        or _FP64_BLANK <= value < _FP64_BLANK + _BLANK_SPAN
        or value >= _INT64_BLANK - 1024
    )  # float64 spacing near 2^63 is 1024 or 2048


def convert(metric_name: str, text: str) -> tuple[Field, float | None] | None:
    """The field an exported sample fills and its value in gputop's unit (None: no value: a
    DCGM blank, NaN, or a value that is not a number). None for a name this view does not read."""
    field = GPU_METRICS.get(metric_name)
    if field is None:
        return None
    return field, to_unit(field, text)


def to_unit(field: Field, text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if value != value or value in _INFINITIES:  # NaN (a stale or failed field), +-Inf
        return None
    if value >= _INT32_BLANK and field.source == DCGM and is_dcgm_blank(value):
        return None
    return value * field.scale


def gpu_of(labels: Mapping[str, str]) -> str | None:
    """A series' GPU index label: gputop's and DCGM's ``gpu``, AMD's ``gpu_id``."""
    return labels.get("gpu", labels.get("gpu_id"))


def label(labels: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that ``labels`` has with a value ("" is no value)."""
    for name in names:
        value = labels.get(name)
        if value:
            return value
    return None


def host_of(instance: str) -> str:
    """The host part of an ``instance`` label: ``gpu-7:9400`` -> ``gpu-7``, ``[fd00::7]:9100``
    -> ``fd00::7``; a bare IPv6 address or a name without a port is the host itself."""
    if instance.startswith("["):
        end = instance.find("]")
        if end > 0:
            return instance[1:end]
    head, sep, tail = instance.rpartition(":")
    if sep and ":" not in head and tail.isdigit():
        return head
    return instance
