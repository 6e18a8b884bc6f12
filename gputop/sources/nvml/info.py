"""What an NVIDIA device is, read once when the source opens: name, UUID, architecture, SM count,
memory bus and peak DRAM bandwidth, PCIe link, the CPUs near it, driver and CUDA versions; and why
NVML could not start."""

from __future__ import annotations

import os
from typing import Any

import pynvml

from gputop.model import GpuInfo
from gputop.sources.nvml.query import query

_OPEN_REASONS = {
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: "libnvidia-ml.so.1 not found (no NVIDIA driver installed)",
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED: "NVIDIA driver not loaded",
    pynvml.NVML_ERROR_NO_PERMISSION: "no permission to open the NVIDIA driver",
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: "NVIDIA driver and libnvidia-ml versions differ (reboot after a driver update?)",
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND: "NVIDIA driver too old for nvidia-ml-py",
    pynvml.NVML_ERROR_OPERATING_SYSTEM: "the operating system blocked access to the NVIDIA driver",
}

_ARCHITECTURES = {
    pynvml.NVML_DEVICE_ARCH_KEPLER: "Kepler",
    pynvml.NVML_DEVICE_ARCH_MAXWELL: "Maxwell",
    pynvml.NVML_DEVICE_ARCH_PASCAL: "Pascal",
    pynvml.NVML_DEVICE_ARCH_VOLTA: "Volta",
    pynvml.NVML_DEVICE_ARCH_TURING: "Turing",
    pynvml.NVML_DEVICE_ARCH_AMPERE: "Ampere",
    pynvml.NVML_DEVICE_ARCH_ADA: "Ada",
    pynvml.NVML_DEVICE_ARCH_HOPPER: "Hopper",
    pynvml.NVML_DEVICE_ARCH_BLACKWELL: "Blackwell",
}
# FP32 cores per SM, by compute capability (major, minor), then by major alone.
_CORES_PER_SM_BY_CC = {
    (6, 0): 64,
    (8, 0): 64,  # GP100, GA100
    3: 192,
    5: 128,
    6: 128,
    7: 64,
    8: 128,
    9: 128,
    10: 128,
    12: 128,
}
_CORES_PER_SM_BY_ARCH = {
    "Kepler": 192,
    "Maxwell": 128,
    "Pascal": 128,
    "Volta": 64,
    "Turing": 64,
    "Ampere": 128,
    "Ada": 128,
    "Hopper": 128,
    "Blackwell": 128,
}


def _cores_per_sm(arch: str | None, cc: tuple[int, int] | None, name: str) -> int | None:
    if cc is not None:
        per_sm = _CORES_PER_SM_BY_CC.get(cc) or _CORES_PER_SM_BY_CC.get(cc[0])
        if per_sm:
            return per_sm
    if arch == "Ampere" and ("A100" in name or "A30" in name):
        return 64  # GA100
    if arch == "Pascal" and "P100" in name:
        return 64  # GP100
    return _CORES_PER_SM_BY_ARCH.get(arch) if arch else None


def cuda_version() -> str | None:
    version = None
    for name in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        fn = getattr(pynvml, name, None)
        version = version or (query(fn) if fn else None)
    return None if not version else f"{version // 1000}.{version % 1000 // 10}"


def text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _cpu_affinity(h: Any) -> tuple[int, ...] | None:
    """The CPUs NVML calls near the device (a bitmask, 64 CPUs a word); None where not given."""
    words = max(16, -(-(os.cpu_count() or 1) // 64))  # 1024 CPUs at least
    mask = query(pynvml.nvmlDeviceGetCpuAffinity, h, words)
    if mask is None:
        return None
    cpus = tuple(64 * i + bit for i, word in enumerate(mask) for bit in range(64) if int(word) >> bit & 1)
    return cpus or None  # an empty mask says nothing


def static_info(index: int, h: Any, driver: str | None, cuda: str | None) -> GpuInfo:
    name = text(query(pynvml.nvmlDeviceGetName, h)) or f"GPU {index}"
    pci = query(pynvml.nvmlDeviceGetPciInfo, h)
    arch = _ARCHITECTURES.get(query(pynvml.nvmlDeviceGetArchitecture, h))
    cores = query(pynvml.nvmlDeviceGetNumGpuCores, h)
    cc = query(pynvml.nvmlDeviceGetCudaComputeCapability, h)
    per_sm = _cores_per_sm(arch, tuple(cc) if cc else None, name)
    sm_count = cores // per_sm if cores and per_sm and cores % per_sm == 0 else None
    bus_bits = query(pynvml.nvmlDeviceGetMemoryBusWidth, h)
    max_mem_mhz = query(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_MEM)
    peak = 2.0 * max_mem_mhz * 1e6 * bus_bits / 8.0 if bus_bits and max_mem_mhz else None
    mig = query(pynvml.nvmlDeviceGetMigMode, h)
    mig_enabled = bool(mig) and mig[0] == pynvml.NVML_DEVICE_MIG_ENABLE
    # GPM over a whole MIG-partitioned device would need per-instance samples; not done here.
    gpm = query(pynvml.nvmlGpmQueryDeviceSupport, h)
    gpm_supported = bool(gpm and gpm.isSupportedDevice) and not mig_enabled
    return GpuInfo(
        index=index,
        name=name,
        uuid=text(query(pynvml.nvmlDeviceGetUUID, h)),
        pci_bus_id=text(pci.busId) if pci is not None else None,
        architecture=arch,
        sm_count=sm_count,
        mem_bus_width_bits=bus_bits or None,
        max_mem_clock_mhz=max_mem_mhz or None,
        peak_dram_bw_bytes_per_s=peak,
        driver_version=driver,
        cuda_version=cuda,
        gpm_supported=gpm_supported,
        mig_enabled=mig_enabled,
        pcie_link_gen=query(pynvml.nvmlDeviceGetCurrPcieLinkGeneration, h) or None,
        pcie_link_width=query(pynvml.nvmlDeviceGetCurrPcieLinkWidth, h) or None,
        pcie_link_gen_max=query(pynvml.nvmlDeviceGetMaxPcieLinkGeneration, h) or None,
        pcie_link_width_max=query(pynvml.nvmlDeviceGetMaxPcieLinkWidth, h) or None,
        cpu_affinity=_cpu_affinity(h),
        numa_node=_numa_node(h),
    )


def _numa_node(h: Any) -> int | None:
    node = query(pynvml.nvmlDeviceGetNumaNodeId, h)
    return node if isinstance(node, int) and node >= 0 else None


def lost_info(index: int, driver: str | None, cuda: str | None) -> GpuInfo:
    return GpuInfo(
        index=index,
        name=f"GPU {index}",
        uuid=None,
        pci_bus_id=None,
        architecture=None,
        sm_count=None,
        mem_bus_width_bits=None,
        max_mem_clock_mhz=None,
        peak_dram_bw_bytes_per_s=None,
        driver_version=driver,
        cuda_version=cuda,
    )


def unavailable_reason(err: Exception) -> str:
    if isinstance(err, pynvml.NVMLError):
        return _OPEN_REASONS.get(err.value, f"NVML failed to start: {err}")
    return f"libnvidia-ml does not match nvidia-ml-py: {err}"
