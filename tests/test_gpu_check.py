"""benchmarks/gpu_check.py: the prepared check for the first real GPU. ``--simulated`` runs end
to end here, in a real subprocess over the NVML fake and this CPU (so the check cannot rot before
a GPU comes); the comparison it rests on is tested with injected mismatches, and nvidia-smi's
output formats are parsed from hand-written samples of them (not recordings of a real GPU)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402  (benchmarks/, on the path above)
import gpu_crosscheck as xc  # noqa: E402

pytestmark = pytest.mark.xdist_group("gpu_check")  # its module fixture runs once, on one worker

MiB = 1 << 20


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """One whole ``--simulated`` run, shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("gpu_check")
    done = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--simulated", "--out", str(out),
                           "--budget", "420"], capture_output=True, text=True, timeout=480)
    return out, done


def _results(out: pathlib.Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _step(out: pathlib.Path, name: str) -> dict:
    return next(s for s in _results(out)["steps"] if s["name"] == name)


def _check(step: dict, prefix: str) -> dict:
    return next(c for c in step["checks"] if c["what"].startswith(prefix))


@pytest.mark.e2e
def test_every_step_passes_under_simulated(simulated):
    out, done = simulated
    assert done.returncode == 0, done.stdout + done.stderr
    statuses = {s["name"]: s["status"] for s in _results(out)["steps"]}
    assert set(statuses) == {"setup", *gpu_check.STEPS}
    insight = _step(out, "insight")
    if insight["status"] == "skipped":  # until the training-insight feature lands
        assert insight["notes"] == ["skipped: not built yet (gputop report --json has no workload.verdict)"]
    assert all(v == "passed" for k, v in statuses.items() if k != "insight")
    assert re.search(r"gpu_check: 6 of 6 steps passed or skipped; see .*summary\.md", done.stdout)


@pytest.mark.e2e
def test_the_crosscheck_has_real_rows_that_match_the_fakes_own_values(simulated):
    out, _ = simulated
    rows = {r["field"]: r for r in json.loads((out / "crosscheck.json").read_text())}
    for field in ("name", "PCI bus id", "driver version", "CUDA version (driver)", "architecture", "SM count",
                  "memory total (bytes)", "memory used (bytes)", "power (W)", "power limit (W)",
                  "SM clock (MHz)", "memory clock (MHz)", "temperature (C)", "pstate", "GPU util (%)",
                  "clocks held by", "MIG enabled", "processes (pid: memory)"):
        assert rows[field]["verdict"] == "match", rows[field]
        assert rows[field]["gputop"] not in ("n/a", "-") and rows[field]["driver"] != "n/a"
    assert rows["name"]["gputop"] == "NVIDIA H100 80GB HBM3 (simulated)"
    assert rows["power (W)"]["source"] == "fake's wave at the sample's ts"
    assert "4000000: 40960 MiB" in rows["processes (pid: memory)"]["driver"]  # the fake's hidden pid
    for field in ("PCIe generation (current)", "PCIe width (current)", "PCIe generation (max)", "PCIe width (max)"):
        assert rows[field]["verdict"] == "match" and rows[field]["gputop"] in ("5", "16"), rows[field]
    assert not any(r["verdict"].startswith("MISMATCH") for r in rows.values())
    summary = (out / "summary.md").read_text()
    assert "SIMULATED" in summary and "0 mismatch" in summary
    assert "| power (W) | " in summary and (out / "snapshot.json").exists()


@pytest.mark.e2e
def test_the_recording_is_checked_against_the_fakes_waves(simulated):
    out, _ = simulated
    record = _step(out, "record")
    for prefix in ("samples at 10 Hz", "workload steps recorded", "GPM SM activity", "GPM tensor activity",
                   "DRAM bandwidth", "energy counter delta vs power x time",
                   "recorded power vs the fake's own wave"):
        assert _check(record, prefix)["verdict"] == "pass", _check(record, prefix)
    assert _check(record, "power rising")["verdict"] == "info"  # the fake's power ignores the load
    figures = _results(out)["record"]
    assert figures["steps"] >= 3 and figures["samples"] >= 30
    assert abs(figures["energy_counter_j"] - figures["power_integral_j"]) <= 0.1 * figures["power_integral_j"]
    report = json.loads((out / "matmul_report.json").read_text())
    assert report["workload"]["name"] == "matmul" and report["workload"]["steps"] == figures["steps"]


@pytest.mark.e2e
def test_compare_and_the_reference_configurations_ran(simulated):
    out, _ = simulated
    for name in ("mlp", "cnn"):
        doc = json.loads((out / f"compare_{name}.json").read_text())
        assert doc["cpu"]["status"] == "ok" and doc["cpu"]["samples_per_s"] > 0
        assert doc["gpu"] is None and "CUDA" in doc["gpu_unavailable"]
    refs = _results(out)["references"]
    assert len(refs) == 3 and all(w["ended"] == "finished" and w["samples_per_s_median"] > 0 for w in refs.values())
    tokens = _check(_step(out, "compare"), "transformer")
    assert re.match(r"[\d,.]+ tokens/s \([\d,.]+ sequences/s x 32\)", tokens["value"])


@pytest.mark.e2e
def test_screenshots_show_the_simulated_gpu(simulated):
    out, _ = simulated
    shots = sorted((out / "screenshots").glob("*.svg"))
    assert [p.name for p in shots] == ["workload-160x50.svg", "workload-80x24.svg"]
    for svg in shots:
        text = svg.read_text()
        assert "H100" in text and "simulated" in text and "mlp" in text


@pytest.mark.e2e
def test_the_summary_names_every_step_and_the_fake_section(simulated):
    out, _ = simulated
    summary = (out / "summary.md").read_text()
    for name in gpu_check.STEPS:
        assert f"## {name}: " in summary
    assert "## Fields the fake gets wrong (to fix in tests/fakenvml.py)" in summary
    assert "Not measurable under --simulated" in summary


# ------------------------------------------------------------------------- the comparison

@pytest.mark.unit
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
    gpu = {"mem_total_bytes": 143771 * MiB, "mem_used_bytes": 1530 * MiB, "power_w": 121.0,
           "power_limit_w": 700.0, "sm_clock_mhz": 1980, "mem_clock_mhz": 3201, "temp_c": 35.0, "pstate": 0,
           "fan_pct": None, "gpu_util_pct": 0.0, "mem_busy_pct": 0.0, "clock_event_reasons": ["idle"],
           "processes": [{"pid": 4242, "gpu_mem_bytes": 1024 * MiB}],
           "info": {"name": "NVIDIA H200", "uuid": "GPU-1234", "pci_bus_id": "00000000:18:00.0",
                    "driver_version": "580.159.04", "cuda_version": "13.0", "architecture": "Hopper",
                    "sm_count": 132, "max_mem_clock_mhz": 3201, "mig_enabled": False,
                    "pcie_link_gen": 5, "pcie_link_width": 16, "pcie_link_gen_max": 5, "pcie_link_width_max": 16}}
    gpu.update(changes)
    return gpu


@pytest.mark.unit
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


@pytest.mark.unit
def test_fake_differences_tell_host_facts_from_device_facts():
    real = {"gpus": [{"power_w": 100.0, "info": {"name": "H200", "cpu_affinity": list(range(16)), "pcie_link_gen": 5}}]}
    fake = {"gpus": [{"power_w": 500.0, "info": {"name": "H100", "cpu_affinity": list(range(56)), "pcie_link_gen": 5}}]}
    notes = {d["field"]: d["note"] for d in xc.fake_differences(real, fake)}
    assert notes == {"info.cpu_affinity": "host fact (the machine's CPUs, not the GPU model's)",
                     "info.name": "device fact (a profile of this GPU would carry the real value)"}


@pytest.mark.unit
def test_a_field_this_driver_lacks_is_unchecked_not_a_mismatch():
    rows = {r.field: r for r in xc.cross_check(_gputop_gpu(), xc.smi_reference(xc.parse_query_csv(SMI_CSV), None))}
    assert rows["CUDA version (driver)"].verdict == "unchecked: no -q -x output"
    assert rows["SM count"].verdict.startswith("unchecked")


# ---------------------------------------------------------------------------- robustness

@pytest.mark.e2e
def test_a_child_past_its_timeout_is_stopped(tmp_path):
    ctx = gpu_check.Context(argparse.Namespace(simulated=False, out=tmp_path, budget=60.0))
    t0 = time.monotonic()
    proc = ctx.run("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], timeout=1.0)
    assert proc.timed_out and not proc.ok and time.monotonic() - t0 < 15
    assert "timed out" in (tmp_path / "logs" / "sleeper.err").read_text()


@pytest.mark.unit
def test_a_failing_step_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUTOP_FAKE_NVML_EPOCH_NS", "0")  # restored after: main sets it

    def boom(ctx, step):
        raise RuntimeError("boom")

    monkeypatch.setitem(gpu_check.STEP_FUNCS, "crosscheck", boom)
    assert gpu_check.main(["--simulated", "--out", str(tmp_path), "--only", "crosscheck", "insight"]) == 1
    steps = {s["name"]: s for s in _results(tmp_path)["steps"]}
    assert steps["crosscheck"]["status"] == "FAILED"
    assert steps["crosscheck"]["notes"] == ["error: RuntimeError: boom (traceback in logs/crosscheck.traceback)"]
    assert "boom" in (tmp_path / "logs" / "crosscheck.traceback").read_text()
    assert steps["insight"]["status"] == "skipped"
    assert "**crosscheck FAILED**" in (tmp_path / "summary.md").read_text()


@pytest.mark.e2e
def test_without_gputop_it_says_how_to_carry_the_wheels(tmp_path):
    # -S: no site-packages, so neither gputop nor pynvml nor psutil can be imported
    done = subprocess.run([sys.executable, "-S", str(BENCH / "gpu_check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("gpu_check: error: cannot import gputop, gputop.workloads, pynvml, psutil (wheels: ")
    assert gpu_check.INSTALL_LINE in done.stderr and "--prepare-wheels" in done.stderr
    assert done.stderr.count("\n") == 1


@pytest.mark.e2e
def test_help_says_how_to_carry_the_wheels():
    done = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    assert "--prepare-wheels" in done.stdout and "--target /tmp/site .whl/*.whl" in done.stdout


# A stand-in nvidia-smi for the real-hardware path here: an NVML client (as nvidia-smi is) over the
# fake that tests/sitecustom installs, in nvidia-smi's output formats, refusing the fields an older
# driver's nvidia-smi does not know with its words. Not a model of nvidia-smi's every field.
FAKE_SMI = '''#!{python}
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
'''


@pytest.mark.e2e
def test_the_real_hardware_path_against_a_stand_in_nvidia_smi(tmp_path):
    """Without --simulated: nvidia-smi's two outputs and the snapshot taken together, fields an
    older nvidia-smi refuses dropped and the query repeated, every row compared. torch sees no
    GPU here, so the probe fails (and with it the step) and the SM count is unchecked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI.format(python=sys.executable))
    smi.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               # steady readings: the two processes read NVML up to seconds apart on a loaded machine
               GPUTOP_FAKE_NVML="H100_SXM+power_swing_w=0+util_swing_pct=0+temp_swing_c=0",
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "sitecustom"), str(ROOT / "tests")]))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--out", str(out), "--only", "crosscheck"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    step = _step(out, "crosscheck")
    assert _check(step, "torch holds a context")["verdict"] == "FAIL"
    assert all(_check(step, f"{name} written")["verdict"] == "pass"
               for name in ("smi_q.xml", "smi_query.csv", "snapshot.json"))
    assert "fields this nvidia-smi does not know (left out): power.draw.average, power.draw.instant" in step["notes"]
    rows = {r["field"]: r for r in json.loads((out / "crosscheck.json").read_text())}
    for field in ("name", "uuid", "PCI bus id", "driver version", "CUDA version (driver)", "architecture",
                  "memory total (bytes)", "memory used (bytes)", "power (W)", "power limit (W)",
                  "SM clock (MHz)", "memory clock (MHz)", "temperature (C)", "pstate", "GPU util (%)",
                  "clocks held by", "MIG enabled", "PCIe generation (current)", "PCIe width (current)",
                  "PCIe generation (max)", "PCIe width (max)"):
        assert rows[field]["verdict"] == "match", rows[field]
        assert rows[field]["source"].startswith("nvidia-smi")
    assert rows["SM count"]["verdict"] == "unchecked: torch probe gave nothing"
    # the fake puts every querying process on the GPU (gputop's snapshot, not this nvidia-smi,
    # which lists none): a mismatch, and marked as one
    assert rows["processes (pid: memory)"]["verdict"] == "MISMATCH"
    assert [r for r in rows if rows[r]["verdict"].startswith("MISMATCH")] == ["processes (pid: memory)"]
    assert _check(step, "cross-check processes")["verdict"] == "FAIL"
    assert json.loads((out / "fake_differences.json").read_text()) == []  # the same fake on both sides
    assert "| processes (pid: memory) |" in (out / "summary.md").read_text()
