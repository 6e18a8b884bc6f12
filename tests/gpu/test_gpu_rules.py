"""The GPU check's logic that runs without a GPU: the reference rules (tests/gpu/crosscheck.py)
against injected mismatches and nvidia-smi output written by hand in its formats (not recordings
of a real GPU: tests/data gets those from the first GPU check), the honest detection of a GPU,
the NVML call timer over the fake, a recording's figures, and the summary
(test_gpu_children.py runs the children)."""

from __future__ import annotations

import crosscheck as xc
import machine
import nvml_latency
import pynvml
import pytest
import recording
import summary

pytestmark = pytest.mark.unit

MiB = 1 << 20


# ------------------------------------------------------------------------- the comparison


def test_compare_marks_an_injected_mismatch():
    ok = xc.compare("power (W)", 300.0, xc.Ref(310.0, "nvidia-smi"), xc.Rule(rel=0.05))
    bad = xc.compare("power (W)", 300.0, xc.Ref(360.0, "nvidia-smi"), xc.Rule(rel=0.05))
    assert ok.verdict == "match" and not ok.mismatch
    assert bad.verdict == "MISMATCH" and bad.mismatch
    assert "| **MISMATCH** |" in xc.table([ok, bad]) and "| match |" in xc.table([ok, bad])
    assert xc.compare("fan", None, xc.Ref(40.0, "smi"), xc.EXACT).verdict == "MISMATCH: gputop n/a"
    assert xc.compare("fan", 40.0, xc.Ref(None, "smi"), xc.EXACT).verdict == "MISMATCH: driver n/a"
    assert xc.compare("fan", None, xc.Ref(None, "smi"), xc.EXACT).verdict == "both n/a"
    assert xc.compare("x", 1, xc.Ref(None, "smi", missing="no such field"), xc.EXACT).verdict == "unchecked: no such field"
    assert xc.compare("pcie", xc.NOT_SHOWN, xc.Ref(5.0, "smi"), xc.EXACT).verdict == xc.NOT_SHOWN
    procs = xc.Rule(kind="processes")
    assert xc.compare("p", {7: 100 * MiB}, xc.Ref({7: 104 * MiB}, "smi"), procs).verdict == "match"
    assert xc.compare("p", {7: 100 * MiB}, xc.Ref({7: 100 * MiB, 8: MiB}, "smi"), procs).mismatch
    reasons = xc.Rule(kind="reasons")
    assert xc.compare("r", [], xc.Ref(0, "smi"), reasons).verdict == "match"
    assert xc.compare("r", [], xc.Ref(0x4, "smi"), reasons).mismatch
    assert xc.compare("r", ["idle", "sw_power_cap"], xc.Ref(0x5, "smi"), reasons).verdict == "match"
    assert xc.compare("r", ["idle"], xc.Ref(0x5, "smi"), reasons).mismatch


# Hand-written in nvidia-smi's formats (units in the CSV header and cells, [N/A], P-states,
# hex masks; -q -x's element names): a stand-in until a real GPU's output is kept in tests/data.
SMI_CSV = """\
name, uuid, pci.bus_id, driver_version, memory.total [MiB], memory.used [MiB], power.draw [W], \
enforced.power.limit [W], clocks.sm [MHz], clocks.mem [MHz], clocks.max.mem [MHz], temperature.gpu, \
pstate, fan.speed [%], utilization.gpu [%], utilization.memory [%], clocks_event_reasons.active, \
mig.mode.current, pcie.link.gen.current, pcie.link.width.current, pcie.link.gen.max, pcie.link.width.max
NVIDIA H200, GPU-1234, 00000000:18:00.0, 580.159.04, 143771 MiB, 1530 MiB, 120.50 W, 700.00 W, 1980 MHz, \
3201 MHz, 3201 MHz, 35, P0, [N/A], 0 %, 0 %, 0x0000000000000001, Disabled, 5, 16, 5, 16
"""
SMI_XML = """<?xml version="1.0" ?>
<nvidia_smi_log><timestamp>Tue Dec  1 22:00:00 2026</timestamp><driver_version>580.159.04</driver_version>
<cuda_version>13.0</cuda_version><attached_gpus>1</attached_gpus>
<gpu id="00000000:18:00.0"><product_name>NVIDIA H200</product_name><product_architecture>Hopper</product_architecture>
<processes><process_info><pid>4242</pid><type>C</type><process_name>python3</process_name>
<used_memory>1024 MiB</used_memory></process_info></processes></gpu></nvidia_smi_log>
"""


def _gputop_gpu(**changes) -> dict:
    gpu = {
        "mem_total_bytes": 143771 * MiB,
        "mem_used_bytes": 1530 * MiB,
        "power_w": 121.0,
        "power_limit_w": 700.0,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 3201,
        "temp_c": 35.0,
        "pstate": 0,
        "fan_pct": None,
        "gpu_util_pct": 0.0,
        "mem_busy_pct": 0.0,
        "clock_event_reasons": ["idle"],
        "processes": [{"pid": 4242, "gpu_mem_bytes": 1024 * MiB}],
        "info": {
            "name": "NVIDIA H200",
            "uuid": "GPU-1234",
            "pci_bus_id": "00000000:18:00.0",
            "driver_version": "580.159.04",
            "cuda_version": "13.0",
            "architecture": "Hopper",
            "sm_count": 132,
            "max_mem_clock_mhz": 3201,
            "mig_enabled": False,
            "pcie_link_gen": 5,
            "pcie_link_width": 16,
            "pcie_link_gen_max": 5,
            "pcie_link_width_max": 16,
        },
    }
    gpu.update(changes)
    return gpu


def test_nvidia_smi_output_is_read_into_a_reference():
    ref = xc.smi_reference(xc.parse_query_csv(SMI_CSV), SMI_XML)
    assert ref["mem_total_bytes"].value == 143771 * MiB and ref["power_w"].value == 120.5
    assert ref["pstate"].value == 0 and ref["fan_pct"].value is None and ref["mig_enabled"].value is False
    assert ref["clock_event_reasons"].value == 1 and ref["pcie_gen"].value == 5
    assert ref["cuda_version"] == xc.Ref("13.0", "nvidia-smi -q -x")
    assert ref["processes"].value == {4242: 1024 * MiB}
    ref["sm_count"] = xc.Ref(132, "torch")
    rows = xc.cross_check(_gputop_gpu(), ref)
    assert [r.field for r in rows if r.mismatch] == []
    assert {r.field: r.verdict for r in rows if r.verdict != "match"} == {"fan (%)": "both n/a"}
    assert ref["pcie_gen_max"].value == 5 and ref["pcie_width_max"].value == 16
    # a wrong value in gputop's snapshot is marked, and only that one
    gpu = _gputop_gpu(power_w=150.0, processes=[])
    gpu["info"]["pcie_link_width"] = 8
    wrong = xc.cross_check(gpu, ref)
    assert [r.field for r in wrong if r.mismatch] == ["power (W)", "PCIe width (current)", "processes (pid: memory)"]


def test_fake_differences_tell_host_facts_from_device_facts():
    real = {"gpus": [{"power_w": 100.0, "info": {"name": "H200", "cpu_affinity": list(range(16)), "pcie_link_gen": 5}}]}
    fake = {"gpus": [{"power_w": 500.0, "info": {"name": "H100", "cpu_affinity": list(range(56)), "pcie_link_gen": 5}}]}
    notes = {d["field"]: d["note"] for d in xc.fake_differences(real, fake)}
    assert notes == {
        "info.cpu_affinity": "host fact (the machine's CPUs, not the GPU model's)",
        "info.name": "device fact (a profile of this GPU would carry the real value)",
    }


def test_a_field_this_driver_lacks_is_unchecked_not_a_mismatch():
    rows = {r.field: r for r in xc.cross_check(_gputop_gpu(), xc.smi_reference(xc.parse_query_csv(SMI_CSV), None))}
    assert rows["CUDA version (driver)"].verdict == "unchecked: no -q -x output"
    assert rows["SM count"].verdict.startswith("unchecked")


def test_nvidia_smi_refusing_a_field_names_it():
    fields = ("name", "power.draw.average")
    assert xc.unknown_field('Field "power.draw.average" is not a valid field to query.\n', fields) == "power.draw.average"
    assert xc.unknown_field('Field "other" is not a valid field to query.', fields) is None
    assert xc.unknown_field("NVIDIA-SMI has failed", fields) is None


# ------------------------------------------------------------------------- the machine


def test_the_fake_is_never_taken_for_a_gpu(fake_nvml, monkeypatch):
    assert "names the NVML fake" in machine.no_gpu_reason({"GPUTOP_FAKE_NVML": "H100_SXM"})
    monkeypatch.delenv("GPUTOP_FAKE_NVML", raising=False)
    fake_nvml()  # installed in this process as pynvml's library: nvmlInit succeeds on it
    assert machine.no_gpu_reason({}) == "pynvml.nvmlLib is FakeNvml, not the real libnvidia-ml"


def test_without_the_library_there_is_no_gpu(nvml_library_missing):
    reason = machine.no_gpu_reason({})
    assert reason is not None and reason.startswith("nvmlInit failed (")


def test_every_nvml_call_of_a_tick_is_timed_and_the_library_put_back(fake_nvml):
    fake = fake_nvml(real_time=True)
    result = nvml_latency.measure(seconds=0.5, interval=0.1, process_interval=0.2)
    assert pynvml.nvmlLib is fake
    rows = {(r["phase"], r["symbol"]): r for r in result["symbols"]}
    assert result["gpus"] == 1 and result["ticks"] >= 3
    assert rows["open", "nvmlInitWithFlags"]["calls"] == 1 and rows["open", "nvmlShutdown"]["calls"] == 1
    tick = rows["tick", "nvmlDeviceGetUtilizationRates"]
    assert tick["calls"] == result["ticks"] and tick["returns"] == {"0": result["ticks"]}
    assert tick["median_us"] > 0 and tick["per_tick_us"] == pytest.approx(tick["total_ms"] * 1e3 / result["ticks"])
    assert ("tick", "nvmlDeviceGetComputeRunningProcesses_v3") in rows  # the process scans
    assert rows["open", "nvmlDeviceGetFanSpeed"]["returns"] == {"3": 1}  # NOT_SUPPORTED on the H100 profile
    text = nvml_latency.table(result)
    assert "| tick | nvmlDeviceGetUtilizationRates |" in text and "NVML time per tick, all symbols: " in text


def test_the_summary_counts_and_names_what_failed(tmp_path):
    (tmp_path / "snapshot.json").write_text("{}")
    results = [
        summary.Result("tests/gpu/test_gpu_nvml.py::test_a", "passed", 1.25, [("power (W)", "300 (expected within 5 %)")]),
        summary.Result("tests/gpu/test_gpu_nvml.py::test_b", "failed", 2.0, [], "AssertionError: assert 1 == 2"),
        summary.Result("tests/gpu/test_gpu_workloads.py::test_c", "skipped", 0.0, [], "needs a real NVIDIA GPU: ..."),
    ]
    text = summary.render(results, tmp_path)
    assert "- result: 1 passed, 1 failed, 1 skipped; **test_b FAILED**" in text
    assert "| test_gpu_nvml.py::test_b | **failed** | 2.0 | AssertionError: assert 1 == 2 |" not in text
    assert "| test_b | **failed** | 2.0 | AssertionError: assert 1 == 2 |" in text
    assert "## test_a: passed" in text and "| power (W) | 300 (expected within 5 %) |" in text
    assert "- `snapshot.json` (2 bytes)" in text and "- screenshots: none" in text


# ------------------------------------------------------------------------- a recording


def test_a_recording_is_read_before_and_during_the_steps(tmp_path):
    """11 samples 1 s apart: 100 W before the first step (it begins at 3 s), 300 W during the
    seven steps, the energy counter the power's integral (so the two agree)."""
    from gputop.model import CpuSample, GpuInfo, GpuSample, Sample, WorkloadStep
    from gputop.trace import TraceWriter

    t0, s = 1_800_000_000_000_000_000, 1_000_000_000
    info = GpuInfo(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        uuid=None,
        pci_bus_id=None,
        architecture="Hopper",
        sm_count=132,
        mem_bus_width_bits=None,
        max_mem_clock_mhz=None,
        peak_dram_bw_bytes_per_s=None,
        driver_version=None,
        cuda_version=None,
        gpm_supported=True,
    )
    cpu = CpuSample(
        cpu_util_pct=50.0,
        core_util_pct=(50.0, 50.0),
        core_freq_mhz=(3000.0, 3000.0),
        cpu_power_w=None,
        ram_used_bytes=2**30,
        ram_total_bytes=2**34,
        load1=1.0,
    )
    power = [100.0 if i < 3 else 300.0 for i in range(11)]
    energy = [0.0]
    for i in range(1, 11):
        energy.append(energy[-1] + (power[i - 1] + power[i]) / 2)
    path = tmp_path / "run.json"
    with TraceWriter.create(str(path)) as writer:
        writer.set_workload(4242, "matmul")
        for i in range(11):
            gpu = GpuSample(
                info, power_w=power[i], energy_j=energy[i], sm_active_pct=80.0 if i >= 3 else 0.0, tensor_active_pct=40.0 if i >= 3 else 0.0
            )
            writer.write_sample(Sample(ts_ns=t0 + i * s, cpu=cpu, gpus=(gpu,)))
            if i >= 4:
                writer.write_workload([WorkloadStep(step=i - 3, samples=8, loss=1.0, wall_s=1.0, ts_ns=t0 + i * s)])
    a = recording.analyse_run(path)
    assert (a["samples"], a["steps"], a["span_s"], a["rate_hz"]) == (11, 7, 10.0, 1.0)
    assert (a["samples_before"], a["samples_during"]) == (3, 8)
    assert (a["before_power_w"], a["during_power_w"]) == (100.0, 300.0)
    assert (a["during_sm_active_pct"], a["during_tensor_active_pct"]) == (80.0, 40.0)
    assert a["during_dram_bw_bytes_per_s"] is None  # n/a on every sample: no median made up
    assert a["energy_counter_j"] == pytest.approx(a["power_integral_j"]) and a["power_integral_j"] == 2500.0
