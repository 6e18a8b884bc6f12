"""`gputop snapshot`: one sample, as text for people or JSON keyed by metric name."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace

from gputop import __version__
from gputop import format as fmt
from gputop.model import CpuSample, GpuInfo, GpuProcess, GpuSample, Sample, to_dict
from gputop.sampler import SupportsSample

# GPM metrics and NVLink/PCIe rates need two readings >= 100 ms apart; CPU % needs a delta too.
SETTLE_S = 0.25


def take(sampler: SupportsSample, settle_s: float = SETTLE_S) -> Sample:
    """Two ticks ``settle_s`` apart; the second has the rates and GPM metrics filled in.

    Where a GPU keeps no energy counter, the sources integrate power from their first reading:
    here that is the snapshot's own quarter second, no figure of the GPU's, so it is n/a
    (``info.energy_counter`` false says why).
    """
    sampler.sample()
    time.sleep(settle_s)
    sample = sampler.sample()
    if not any(g.info.energy_counter is False and g.energy_j is not None for g in sample.gpus):
        return sample
    gpus = tuple(replace(g, energy_j=None) if g.info.energy_counter is False else g for g in sample.gpus)
    return replace(sample, gpus=gpus)


def to_json(sample: Sample, driver: tuple[float, int] | None = None) -> str:
    """``driver``: gputop's own time in GPU driver calls (seconds) and their count, taking the
    snapshot (the sources' open and both ticks); ``gputop_driver`` is null without it."""
    own = None if driver is None else {"seconds": driver[0], "calls": driver[1]}
    doc = {"gputop_version": __version__, "host": socket.gethostname(), "gputop_driver": own, **to_dict(sample)}
    return json.dumps(doc, indent=2) + "\n"


def to_text(sample: Sample, driver: tuple[float, int] | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sample.ts_ns / 1e9))
    head = f"{socket.gethostname()}  {stamp}"
    if sample.gpus:
        info = sample.gpus[0].info
        head += f"  driver {fmt.text(info.driver_version)}" + (f"  CUDA {fmt.text(info.cuda_version)}" if info.vendor == "nvidia" else "")
    lines = [head, *_cpu_lines(sample.cpu)]
    if not sample.gpus:
        lines.append(f"GPU  none shown: {sample.gpu_unavailable or 'no NVIDIA GPU found'}")
    for gpu in sample.gpus:
        lines.extend(_gpu_lines(gpu))
    if driver is not None:
        lines.append(f"gputop   {driver[0] * 1000:.1f} ms in {driver[1]} GPU driver calls, taking this snapshot (open and two reads)")
    return "\n".join(lines) + "\n"


def _cpu_lines(cpu: CpuSample) -> list[str]:
    n = len(cpu.core_util_pct)
    lines = [
        f"CPU  {cpu.busy_cores:.1f} of {n} cores busy ({fmt.pct(cpu.cpu_util_pct)})   "
        f"load {fmt.num(cpu.load1, 2)}   RAM {fmt.used_total(cpu.ram_used_bytes, cpu.ram_total_bytes)}   "
        f"package power {fmt.watts(cpu.cpu_power_w)}"
    ]
    cells = [f"{i:>3} {fmt.pct(u):>5} {fmt.mhz(f):>9}" for i, (u, f) in enumerate(zip(cpu.core_util_pct, cpu.core_freq_mhz))]
    per_row = 4
    for start in range(0, n, per_row):
        lines.append("    " + "   ".join(cells[start : start + per_row]))
    return lines


def _gpu_lines(gpu: GpuSample) -> list[str]:
    info = gpu.info
    title = f"[{info.index}] {info.name}  ({fmt.text(info.architecture)}, {fmt.num(info.sm_count, 0)} SMs, {fmt.text(info.pci_bus_id)})"
    if info.mig_enabled:
        title += "  MIG on"
    if gpu.lost:
        return [title, "    lost: the GPU stopped answering (fell off the bus?)"]
    if info.vendor == "amd":
        return [title, *_amd_lines(gpu), *_process_lines(gpu)]
    sms = gpu.sms_active
    sm_text = (
        f"{sms:.0f} of {info.sm_count} active ({fmt.pct(gpu.sm_active_pct)})"
        if sms is not None
        else f"n/a ({fmt.sm_gap(info.architecture, info.gpm_supported, info.mig_enabled)})"
    )
    peak = info.peak_dram_bw_bytes_per_s
    bw = f"{fmt.rate(gpu.dram_bw_bytes_per_s)} ({fmt.pct(gpu.dram_bw_util_pct)} of {fmt.rate(peak)})"
    lines = [
        title,
        f"    SMs      {sm_text}   occupancy {fmt.pct(gpu.sm_occupancy_pct)}   tensor {fmt.pct(gpu.tensor_active_pct)}   "
        f"NVML util {fmt.pct(gpu.gpu_util_pct)}",
        f"    memory   {fmt.used_total(gpu.mem_used_bytes, gpu.mem_total_bytes)}   bandwidth {bw}   busy {fmt.pct(gpu.mem_busy_pct)}",
        f"    power    {fmt.watts(gpu.power_w)} of {fmt.watts(gpu.power_limit_w)}   energy {_energy(gpu)}   "
        f"clocks SM {fmt.mhz(gpu.sm_clock_mhz)}, mem {fmt.mhz(gpu.mem_clock_mhz)}   P{fmt.num(gpu.pstate, 0)}",
        f"    thermal  {fmt.celsius(gpu.temp_c)}   fan {fmt.pct(gpu.fan_pct)}   clocks held by: {fmt.reasons(gpu.clock_event_reasons)}",
        f"    links    PCIe {_link(info)} tx {fmt.rate(gpu.pcie_tx_bytes_per_s)} rx {fmt.rate(gpu.pcie_rx_bytes_per_s)}   "
        f"NVLink tx {fmt.rate(gpu.nvlink_tx_bytes_per_s)} rx {fmt.rate(gpu.nvlink_rx_bytes_per_s)}",
        f"    host     near CPUs {fmt.core_ranges(info.cpu_affinity) if info.cpu_affinity else fmt.NA}   "
        f"NUMA node {fmt.num(info.numa_node, 0)}",
    ]
    return lines + _process_lines(gpu)


def _amd_lines(gpu: GpuSample) -> list[str]:
    """An AMD GPU's readings in its own words (CUs, UMC activity, XGMI; see gputop.sources.amd)."""
    info = gpu.info
    return [
        f"    CUs      busy {fmt.pct(gpu.gpu_util_pct)} of the time (GFX activity; {fmt.num(info.sm_count, 0)} CUs)   "
        f"HIP device {fmt.num(info.runtime_index, 0)}",
        f"    memory   {fmt.used_total(gpu.mem_used_bytes, gpu.mem_total_bytes)}   "
        f"controllers busy {fmt.pct(gpu.mem_busy_pct)} (UMC activity)",
        f"    power    {fmt.watts(gpu.power_w)} of {fmt.watts(gpu.power_limit_w)}   energy {_energy(gpu)}   "
        f"clocks GFX {fmt.mhz(gpu.sm_clock_mhz)}, mem {fmt.mhz(gpu.mem_clock_mhz)}",
        f"    thermal  edge {fmt.celsius(gpu.temp_c)}, hotspot {fmt.celsius(gpu.temp_hotspot_c)}, mem {fmt.celsius(gpu.temp_mem_c)}   "
        f"fan {fmt.pct(gpu.fan_pct)}   clocks held by: {fmt.reasons(gpu.clock_event_reasons)}",
        f"    links    PCIe {_link(info)}   XGMI read {fmt.rate(gpu.xgmi_read_bytes_per_s)} write {fmt.rate(gpu.xgmi_write_bytes_per_s)}",
        f"    host     near CPUs {fmt.core_ranges(info.cpu_affinity) if info.cpu_affinity else fmt.NA}",
    ]


def _process_lines(gpu: GpuSample) -> list[str]:
    lines = []
    if gpu.processes is None:
        lines.append("    processes: n/a (not readable on this device)")
    elif not gpu.processes:
        lines.append("    processes: none")
    else:
        lines.append(f"    {'pid':>8}  {'user':<10} {'GPU mem':>10} {'SM':>6} {'CPU':>6}  command")
        for p in sorted(gpu.processes, key=lambda p: -(p.gpu_mem_bytes or 0)):
            lines.append(
                f"    {p.pid:>8}  {fmt.text(p.user)[:10]:<10} {fmt.bytes_(p.gpu_mem_bytes):>10} "
                f"{fmt.pct(p.sm_util_pct):>6} {fmt.pct(p.cpu_pct):>6}  {_command(p)[:80]}"
            )
    return lines


def _energy(gpu: GpuSample) -> str:
    """The driver's energy counter, since it loaded; n/a, and why, on a GPU that keeps none."""
    if gpu.info.energy_counter is False:
        return f"{fmt.NA} (no energy counter on this GPU)"
    return f"{fmt.joules(gpu.energy_j)} since the driver loaded"


def _link(info: GpuInfo) -> str:
    """The PCIe link as the source found it when it opened (gen x width, and the most it allows)."""
    return fmt.pcie_links(info.pcie_link_gen, info.pcie_link_width, info.pcie_link_gen_max, info.pcie_link_width_max)


def _command(p: GpuProcess) -> str:
    return fmt.command(p.command, p.name)
