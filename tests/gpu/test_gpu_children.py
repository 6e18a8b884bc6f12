"""The GPU check's children without a GPU: one past its time-out is stopped, and the nvidia-smi
cross-check runs end to end against a stand-in nvidia-smi (an NVML client, as nvidia-smi is) over
the fake that tests/sitecustom installs, in nvidia-smi's output formats."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import crosscheck as xc
import machine
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_a_child_past_its_timeout_is_stopped(tmp_path):
    runner = machine.Runner(tmp_path, budget_s=60.0)
    t0 = time.monotonic()
    proc = runner.run("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], timeout=1.0)
    assert proc.timed_out and not proc.ok and time.monotonic() - t0 < 15
    assert "timed out" in (tmp_path / "logs" / "sleeper.err").read_text()
    runner.deadline = time.monotonic()
    with pytest.raises(machine.OutOfTime):
        runner.run("late", [sys.executable, "-c", "pass"], timeout=1.0)


# A stand-in nvidia-smi for the real-hardware path here: an NVML client (as nvidia-smi is) over the
# fake that tests/sitecustom installs, in nvidia-smi's output formats, refusing the fields an older
# driver's nvidia-smi does not know with its words. Not a model of nvidia-smi's every field.
FAKE_SMI = """#!{python}
import sys
import pynvml as N

N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(0)
UNKNOWN = ("power.draw.average", "power.draw.instant")
MIB = 1 << 20


def text(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def fields():
    mem = N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2)
    mig = N.nvmlDeviceGetMigMode(h)[0]
    return {{
        "name": text(N.nvmlDeviceGetName(h)), "uuid": text(N.nvmlDeviceGetUUID(h)),
        "pci.bus_id": text(N.nvmlDeviceGetPciInfo(h).busId),
        "driver_version": text(N.nvmlSystemGetDriverVersion()),
        "memory.total": f"{{mem.total // MIB}} MiB", "memory.used": f"{{mem.used // MIB}} MiB",
        "power.draw": f"{{N.nvmlDeviceGetPowerUsage(h) / 1000:.2f}} W",
        "enforced.power.limit": f"{{N.nvmlDeviceGetEnforcedPowerLimit(h) / 1000:.2f}} W",
        "clocks.sm": f"{{N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_SM)}} MHz",
        "clocks.mem": f"{{N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_MEM)}} MHz",
        "clocks.max.mem": f"{{N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_MEM)}} MHz",
        "temperature.gpu": str(N.nvmlDeviceGetTemperature(h, N.NVML_TEMPERATURE_GPU)),
        "pstate": f"P{{N.nvmlDeviceGetPerformanceState(h)}}",
        "utilization.gpu": f"{{N.nvmlDeviceGetUtilizationRates(h).gpu}} %",
        "utilization.memory": f"{{N.nvmlDeviceGetUtilizationRates(h).memory}} %",
        "clocks_event_reasons.active": f"0x{{N.nvmlDeviceGetCurrentClocksEventReasons(h):016x}}",
        "mig.mode.current": "Enabled" if mig == 1 else "Disabled",
        "pcie.link.gen.current": str(N.nvmlDeviceGetCurrPcieLinkGeneration(h)),
        "pcie.link.gen.max": str(N.nvmlDeviceGetMaxPcieLinkGeneration(h)),
        "pcie.link.width.current": str(N.nvmlDeviceGetCurrPcieLinkWidth(h)),
        "pcie.link.width.max": str(N.nvmlDeviceGetMaxPcieLinkWidth(h)),
    }}


args = sys.argv[1:]
if args == ["-q", "-x"]:
    cuda = N.nvmlSystemGetCudaDriverVersion()
    print(f"<?xml version=\\"1.0\\" ?><nvidia_smi_log><cuda_version>{{cuda // 1000}}.{{cuda % 1000 // 10}}"
          f"</cuda_version><gpu><product_name>{{text(N.nvmlDeviceGetName(h))}}</product_name>"
          f"<product_architecture>Hopper</product_architecture><processes></processes></gpu></nvidia_smi_log>")
elif args and args[0].startswith("--query-gpu="):
    wanted = args[0].split("=", 1)[1].split(",")
    for field in wanted:
        if field in UNKNOWN:
            print(f'Field "{{field}}" is not a valid field to query.')
            sys.exit(2)
    values = fields()
    print(", ".join(wanted))
    print(", ".join(values.get(f, "[N/A]") for f in wanted))
else:
    sys.exit(f"fake nvidia-smi: {{args}} not understood")
"""


def test_the_crosscheck_against_a_stand_in_nvidia_smi(tmp_path):
    """nvidia-smi's two outputs and gputop's snapshot read as the GPU test reads them, the fields
    an older nvidia-smi refuses dropped and the query repeated, every row compared."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI.format(python=sys.executable))
    smi.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        # steady readings: the two processes read NVML up to seconds apart on a loaded machine
        GPUTOP_FAKE_NVML="H100_SXM+power_swing_w=0+util_swing_pct=0+temp_swing_c=0",
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "sitecustom"), str(ROOT / "tests")]),
    )
    runner = machine.Runner(tmp_path, budget_s=180.0, env=env)
    query, fields = machine.query_smi(runner)
    xml = runner.run("smi_q_x", ["nvidia-smi", "-q", "-x"], timeout=60)
    snap = runner.gputop("snapshot", "snapshot", "--json", timeout=60)
    assert query.ok and xml.ok and snap.ok, (query.why(), xml.why(), snap.why())
    assert [f for f in xc.SMI_FIELDS if f not in fields] == ["power.draw.average", "power.draw.instant"]
    reference = xc.smi_reference(xc.parse_query_csv(query.stdout), xml.stdout)
    rows = {r.field: r for r in xc.cross_check(snap.json()["gpus"][0], reference)}
    for field in (
        "name",
        "uuid",
        "PCI bus id",
        "driver version",
        "CUDA version (driver)",
        "architecture",
        "memory total (bytes)",
        "memory used (bytes)",
        "power (W)",
        "power limit (W)",
        "SM clock (MHz)",
        "memory clock (MHz)",
        "temperature (C)",
        "pstate",
        "GPU util (%)",
        "clocks held by",
        "MIG enabled",
        "PCIe generation (current)",
        "PCIe width (current)",
        "PCIe generation (max)",
        "PCIe width (max)",
    ):
        assert rows[field].verdict == "match", rows[field]
        assert rows[field].source.startswith("nvidia-smi")
    assert rows["SM count"].verdict == "unchecked: the reference has no such value"  # torch gives it on a GPU
    # the fake puts every querying process on the GPU (gputop's snapshot, not this nvidia-smi,
    # which lists none): a mismatch, and marked as one
    assert [f for f, r in rows.items() if r.mismatch] == ["processes (pid: memory)"]
