"""What an AMD device is, read once when the source opens: name, UUID, PCI address, architecture,
compute units, PCIe link, NUMA node and the CPUs on it, the HIP ordinal, the driver version."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from gputop.model import GpuInfo
from gputop.sources.amd.library import known, query

# gfx target -> the architecture's marketing family (the asic info's target_graphics_version)
_FAMILIES = {
    "gfx908": "CDNA",
    "gfx90a": "CDNA 2",
    "gfx940": "CDNA 3",
    "gfx941": "CDNA 3",
    "gfx942": "CDNA 3",
    "gfx950": "CDNA 4",
    "gfx1030": "RDNA 2",
    "gfx1100": "RDNA 3",
    "gfx1101": "RDNA 3",
    "gfx1102": "RDNA 3",
    "gfx1200": "RDNA 4",
    "gfx1201": "RDNA 4",
}
# PCIe transfer rate (amdsmi_get_pcie_info: MT/s) -> generation
_PCIE_GEN_BY_MTS = {2500: 1, 5000: 2, 8000: 3, 16000: 4, 32000: 5, 64000: 6}


def architecture(gfx: Any) -> str | None:
    if not isinstance(gfx, str) or not gfx.startswith("gfx") or gfx == "gfx0":
        return None
    return _FAMILIES.get(gfx, gfx)


def pcie_gen(mts: Any) -> int | None:
    """A PCIe generation from a rate in MT/s (amdsmi_get_pcie_info's unit; the metrics struct's
    pcie_link_speed is in 0.1 GT/s and is not read here)."""
    value = known(mts, 32)
    return _PCIE_GEN_BY_MTS.get(value) if value is not None else None


def node_cpus(node: int | None, root: str = "/sys/devices/system/node") -> tuple[int, ...] | None:
    """The CPUs of NUMA node ``node`` (its cpulist), None where the node is not there."""
    if node is None:
        return None
    try:
        with open(f"{root}/node{node}/cpulist") as f:
            return cpu_list(f.read())
    except OSError:
        return None


def cpu_list(text: str | None) -> tuple[int, ...] | None:
    """A kernel CPU list ("0-3,8-11") as CPUs; None where empty."""
    cpus: list[int] = []
    for part in filter(None, (text or "").strip().split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(cpus) or None


def static_info(amdsmi: ModuleType, index: int, h: Any) -> GpuInfo:
    asic = query(amdsmi.amdsmi_get_gpu_asic_info, h) or {}
    name = asic.get("market_name")
    enum = query(amdsmi.amdsmi_get_gpu_enumeration_info, h) or {}
    driver = query(amdsmi.amdsmi_get_gpu_driver_info, h) or {}
    pcie = query(amdsmi.amdsmi_get_pcie_info, h) or {}
    static, metric = pcie.get("pcie_static", {}), pcie.get("pcie_metric", {})
    node = known(query(amdsmi.amdsmi_topo_get_numa_node_number, h), 32)
    # HIP's UUID where given: what a ROCm PyTorch reports for its device (the job's GPU is found by it)
    hip_uuid = enum.get("hip_uuid")
    uuid = hip_uuid if isinstance(hip_uuid, str) and hip_uuid.strip() else query(amdsmi.amdsmi_get_gpu_device_uuid, h)
    version = driver.get("driver_version")
    return GpuInfo(
        index=index,
        name=name if isinstance(name, str) and name and name != "N/A" else f"AMD GPU {index}",
        uuid=uuid or None,
        pci_bus_id=query(amdsmi.amdsmi_get_gpu_device_bdf, h),
        architecture=architecture(asic.get("target_graphics_version")),
        sm_count=known(asic.get("num_compute_units"), 32) or None,
        mem_bus_width_bits=None,
        max_mem_clock_mhz=None,
        peak_dram_bw_bytes_per_s=None,  # HBM's data rate is not the memory clock x 2: not guessed
        driver_version=version if isinstance(version, str) and version != "N/A" else None,
        cuda_version=None,
        pcie_link_gen=pcie_gen(metric.get("pcie_speed")),
        pcie_link_width=known(metric.get("pcie_width"), 16) or None,
        pcie_link_gen_max=pcie_gen(static.get("max_pcie_speed")),
        pcie_link_width_max=known(static.get("max_pcie_width"), 16) or None,
        cpu_affinity=node_cpus(node),
        numa_node=None,  # (the GPU's own NUMA node, as on Grace Hopper: not an AMD notion here)
        vendor="amd",
        runtime_index=known(enum.get("hip_id"), 32),
    )
