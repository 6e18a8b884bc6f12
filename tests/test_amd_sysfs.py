"""AMD GPUs without ROCm: SysfsSource over a fake sysfs tree laid out as the amdgpu driver lays
out its files (a Radeon with hwmon, a second amdgpu card without one, and an Intel card that is
not read)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gputop.sources.amd import AmdUnavailable
from gputop.sources.amd.sysfs import SysfsSource, amdgpu_devices

pytestmark = pytest.mark.unit


def _files(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text + "\n")


def _card(root: Path, n: int, bus: str, driver: str, vendor: str, files: dict[str, str], hwmon: dict[str, str] | None) -> None:
    device = root / "devices" / bus
    _files(device, {"vendor": vendor, **files})
    (root / "drivers" / driver).mkdir(parents=True, exist_ok=True)
    os.symlink(root / "drivers" / driver, device / "driver")
    if hwmon is not None:
        _files(device / "hwmon" / "hwmon3", hwmon)
    (root / "drm" / f"card{n}").mkdir(parents=True)
    os.symlink(device, root / "drm" / f"card{n}" / "device")


@pytest.fixture
def drm(tmp_path: Path) -> str:
    radeon = {
        "device": "0x744c",
        "product_name": "AMD Radeon RX 7900 XTX",
        "gpu_busy_percent": "71",
        "mem_busy_percent": "23",
        "mem_info_vram_used": str(9 << 30),
        "mem_info_vram_total": str(24 << 30),
        "current_link_speed": "16.0 GT/s PCIe",
        "current_link_width": "16",
        "max_link_speed": "32.0 GT/s PCIe",
        "max_link_width": "16",
        "local_cpulist": "0-7,16-23",
    }
    hwmon = {
        "power1_average": "251000000",
        "power1_cap": "327000000",
        "temp1_label": "edge",
        "temp1_input": "54000",
        "temp2_label": "junction",
        "temp2_input": "71500",
        "temp3_label": "mem",
        "temp3_input": "62000",
        "freq1_label": "sclk",
        "freq1_input": "2482000000",
        "freq2_label": "mclk",
        "freq2_input": "1249000000",
        "pwm1": "102",
        "pwm1_max": "255",
    }
    _card(tmp_path, 0, "0000:03:00.0", "i915", "0x8086", {"gpu_busy_percent": "5"}, None)
    _card(tmp_path, 1, "0000:0c:00.0", "amdgpu", "0x1002", radeon, hwmon)
    _card(tmp_path, 2, "0000:0d:00.0", "amdgpu", "0x1002", {"device": "0x164e", "gpu_busy_percent": "101"}, None)
    return str(tmp_path / "drm")


def test_each_reading_from_its_file(drm):
    clock = iter([0.0, 2.0, 4.0])
    source = SysfsSource.open(first_index=1, drm=drm, clock=lambda: next(clock))
    assert [d.index for d in source.devices] == [1, 2]  # the Intel card is not amdgpu's
    radeon, igpu = source.sample()
    info = radeon.info
    assert (info.name, info.vendor, info.pci_bus_id) == ("AMD Radeon RX 7900 XTX", "amd", "0000:0c:00.0")
    assert (info.pcie_link_gen, info.pcie_link_width, info.pcie_link_gen_max) == (4, 16, 5)
    assert info.cpu_affinity == tuple(range(8)) + tuple(range(16, 24))
    assert (radeon.gpu_util_pct, radeon.mem_busy_pct) == (71.0, 23.0)
    assert (radeon.mem_used_bytes, radeon.mem_total_bytes) == (9 << 30, 24 << 30)
    assert (radeon.power_w, radeon.power_limit_w) == (251.0, 327.0)  # microwatts
    assert (radeon.temp_c, radeon.temp_hotspot_c, radeon.temp_mem_c) == (54.0, 71.5, 62.0)  # millidegrees
    assert (radeon.sm_clock_mhz, radeon.mem_clock_mhz) == (2482, 1249)  # Hz
    assert radeon.fan_pct == pytest.approx(40.0)
    assert radeon.energy_j == 0.0 and radeon.processes is None
    (radeon2, _) = source.sample()
    assert radeon2.energy_j == pytest.approx(251.0 * 2.0)  # power integrated: no counter here
    # the second card has no hwmon and an impossible busy share: n/a, never 0
    assert igpu.info.name == "AMD GPU 0x164e (amdgpu)"
    assert igpu.gpu_util_pct is None and igpu.power_w is None and igpu.temp_c is None and igpu.energy_j is None
    assert source.processes() == {1: None, 2: None}


def test_no_amdgpu_card(tmp_path):
    assert amdgpu_devices(str(tmp_path / "nothing")) == []
    with pytest.raises(AmdUnavailable, match="no GPU of the amdgpu driver"):
        SysfsSource.open(drm=str(tmp_path))


def test_without_rocm_the_driver_s_files_are_read(drm, monkeypatch, fake_nvml):
    """No libamd_smi (amdsmi's import fails): open_gpus falls back to sysfs, after NVIDIA's GPUs."""
    import fakeamdsmi
    from gputop.sources.amd import sysfs
    from gputop.sources.vendors import open_gpus

    fake_nvml("H100_SXM")
    fakeamdsmi.uninstall()
    monkeypatch.setattr(sysfs, "DRM", drm)
    gpu, reason = open_gpus()
    assert gpu is not None and reason is None
    try:
        assert [(d.index, d.vendor) for d in gpu.devices] == [(0, "nvidia"), (1, "amd"), (2, "amd")]
    finally:
        gpu.close()
