"""A device's PCIe link and the CPUs near it (GpuInfo, read once at open), through real pynvml
over the fake libnvidia-ml; and the fake's symbols for them."""

from __future__ import annotations

import dataclasses
import json

import pynvml
import pytest

import fakenvml
from fakenvml import A100_SXM, CONSUMER, H100_SXM, OLD_DRIVER
from gputop import trace
from gputop.sources.nvml import NvmlSource
from helpers import gputop

SOCKET0 = tuple(range(0, 56)) + tuple(range(112, 168))  # a DGX H100's GPUs 0-3: socket 0 and its SMT twins
SOCKET1 = tuple(range(56, 112)) + tuple(range(168, 224))


@pytest.mark.unit
def test_fake_affinity_is_a_bitmask_of_64_cpus_a_word(fake_nvml):
    fake_nvml([H100_SXM] * 8)
    pynvml.nvmlInit()
    h0, h4 = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlDeviceGetHandleByIndex(4)
    assert list(pynvml.nvmlDeviceGetCpuAffinity(h0, 4)) == [(1 << 56) - 1, ((1 << 64) - 1) ^ ((1 << 48) - 1), (1 << 40) - 1, 0]
    # too few words: the CPUs past them are left out, as in C
    assert list(pynvml.nvmlDeviceGetCpuAffinity(h4, 1)) == [((1 << 64) - 1) ^ ((1 << 56) - 1)]
    assert pynvml.nvmlDeviceGetCurrPcieLinkGeneration(h0) == 5
    assert pynvml.nvmlDeviceGetMaxPcieLinkWidth(h0) == 16
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetNumaNodeId(h0)
    pynvml.nvmlShutdown()


@pytest.mark.unit
def test_eight_gpus_split_over_two_sockets(source):
    _, src = source([H100_SXM] * 8)
    assert [d.cpu_affinity for d in src.devices] == [SOCKET0] * 4 + [SOCKET1] * 4
    assert all(d.numa_node is None for d in src.devices)


@pytest.mark.unit
def test_pcie_link_per_model(source):
    _, src = source([H100_SXM, A100_SXM, CONSUMER])
    links = [(d.pcie_link_gen, d.pcie_link_width, d.pcie_link_gen_max, d.pcie_link_width_max) for d in src.devices]
    assert links == [(5, 16, 5, 16), (4, 16, 4, 16), (1, 16, 4, 16)]
    assert src.devices[2].cpu_affinity == tuple(range(32))  # a desktop: one socket, every CPU


@pytest.mark.unit
def test_an_affinity_set_by_a_test_and_a_numa_node(source):
    _, src = source([dataclasses.replace(H100_SXM, cpu_affinity="2-3,70", numa_node=4)])
    assert src.devices[0].cpu_affinity == (2, 3, 70)
    assert src.devices[0].numa_node == 4


@pytest.mark.unit
def test_not_supported_is_none(source):
    quiet = dataclasses.replace(H100_SXM, cpu_affinity=None, pcie_gen=None, pcie_width=None, pcie_gen_max=None, pcie_width_max=None)
    _, src = source([quiet])
    info = src.devices[0]
    assert (
        info.cpu_affinity,
        info.numa_node,
        info.pcie_link_gen,
        info.pcie_link_width,
        info.pcie_link_gen_max,
        info.pcie_link_width_max,
    ) == (None,) * 6


@pytest.mark.unit
def test_an_injected_error_and_a_missing_symbol_are_none(fake_nvml):
    driver = fakenvml.R550.without("nvmlDeviceGetCpuAffinity", "nvmlDeviceGetMaxPcieLinkWidth")
    fake = fake_nvml([H100_SXM], driver)
    fake.fail("nvmlDeviceGetCurrPcieLinkGeneration", pynvml.NVML_ERROR_NOT_SUPPORTED)
    src = NvmlSource.open(clock=lambda: fake.now_ns / 1e9)
    try:
        info = src.devices[0]
        assert info.cpu_affinity is None and info.pcie_link_width_max is None
        assert info.pcie_link_gen is None and info.pcie_link_width == 16
    finally:
        src.close()


@pytest.mark.unit
def test_old_driver_has_the_link_and_affinity_but_no_numa_query(source):
    _, src = source([H100_SXM], OLD_DRIVER)
    assert "nvmlDeviceGetNumaNodeId" not in OLD_DRIVER.exported()
    assert src.devices[0].pcie_link_gen == 5 and src.devices[0].cpu_affinity == SOCKET0


@pytest.mark.unit
def test_spec_strings_set_them():
    devices, _ = fakenvml.parse_spec("H100_SXM+cpu_affinity=64-127+pcie_gen=3,H100_SXM+cpu_affinity=none")
    assert devices[0].cpu_affinity == "64-127" and devices[0].pcie_gen == 3
    assert devices[1].cpu_affinity is None
    assert fakenvml.parse_cpus("0-2,7") == fakenvml.parse_cpus("0-2;7") == {0, 1, 2, 7}


@pytest.mark.e2e
def test_snapshot_text_and_json_show_the_link_and_the_near_cpus():
    fake = "H100_SXM,CONSUMER+pcie_gen=none+pcie_width=none+pcie_gen_max=none+pcie_width_max=none+cpu_affinity=none"
    out = gputop("snapshot", "--json", fake=fake)
    assert out.returncode == 0, out.stderr
    h100, rtx = (g["info"] for g in json.loads(out.stdout)["gpus"])
    assert (h100["pcie_link_gen"], h100["pcie_link_width"], h100["pcie_link_gen_max"], h100["pcie_link_width_max"]) == (5, 16, 5, 16)
    assert h100["cpu_affinity"] == list(range(56)) + list(range(112, 168)) and h100["numa_node"] is None
    assert rtx["pcie_link_gen"] is None and rtx["cpu_affinity"] is None
    text = gputop("snapshot", fake="CONSUMER,H100_SXM+cpu_affinity=none").stdout
    assert "links    PCIe 1x16 (max 4x16) tx" in text and "near CPUs 0-31   NUMA node n/a" in text
    assert "links    PCIe 5x16 tx" in text and "near CPUs n/a" in text


@pytest.mark.e2e
def test_the_recording_header_keeps_them(tmp_path):
    path = tmp_path / "t.json"
    out = gputop("record", "--out", str(path), "--duration", "0.5", "--interval", "0.1", fake="H100_SXM+cpu_affinity=0-1;64+pcie_gen=4")
    assert out.returncode == 0, out.stderr
    (info,) = trace.load(path).gpus
    assert (info.pcie_link_gen, info.pcie_link_width, info.pcie_link_gen_max) == (4, 16, 5)
    assert info.cpu_affinity == (0, 1, 64) and info.numa_node is None


@pytest.mark.unit
def test_the_gpu_panel_says_the_link_under_its_frame(source):
    from gputop.model import GpuSample
    from gputop.tui.widgets.gpu import panel_subtitle

    _, src = source(
        [H100_SXM, CONSUMER, dataclasses.replace(A100_SXM, pcie_gen=None, pcie_width=None, pcie_gen_max=None, pcie_width_max=None)]
    )
    assert [panel_subtitle(GpuSample(info)) for info in src.devices] == ["Hopper · PCIe 5x16", "Ada · PCIe 1x16 (max 4x16)", "Ampere"]
