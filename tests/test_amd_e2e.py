"""AMD GPUs end to end on the libamd_smi fake: gputop as a child (snapshot text and JSON, --debug,
record then report, serve scraped over HTTP), both vendors on one machine, no ROCm at all, and a
launched job's energy per step on its HIP device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

import fakeamdsmi
from gputop.model import CpuSample, Sample
from gputop.sources.amd import AmdSource
from gputop.trace import load, to_samples
from gputop.workload import Workload
from helpers import Served, fake_env, gputop, wait_for

pytestmark = pytest.mark.e2e


def test_snapshot_json_of_an_mi300x():
    done = gputop("snapshot", "--json", amd="MI300X")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    (gpu,) = doc["gpus"]
    assert gpu["info"]["vendor"] == "amd" and gpu["info"]["name"] == "AMD Instinct MI300X"
    assert gpu["info"]["sm_count"] == 304 and gpu["info"]["runtime_index"] == 0
    assert gpu["power_w"] > 0 and gpu["energy_j"] > 0 and gpu["temp_hotspot_c"] == 68.0
    assert gpu["temp_c"] is None and gpu["sm_active_pct"] is None  # n/a, never 0
    assert 0 <= gpu["gpu_util_pct"] <= 100 and 0 <= gpu["mem_busy_pct"] <= 100
    assert gpu["xgmi_read_bytes_per_s"] > 0  # two readings 0.25 s apart
    assert [p["pid"] for p in gpu["processes"]]  # the fake reports the asking process


def test_snapshot_text_shows_both_vendors():
    done = gputop("snapshot", fake="H100_SXM", amd="MI250X")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[0] NVIDIA H100" in out and "[1] AMD Instinct MI250X" in out and "[2] AMD Instinct MI250X" in out
    assert "CUs      busy" in out and "(UMC activity)" in out and "XGMI read" in out
    assert out.count("SMs      ") == 1  # NVIDIA's lines as they were, for the NVIDIA GPU only


def test_debug_names_the_amdsmi_package_and_no_rocm_prints_nothing():
    done = gputop("--debug", "snapshot", amd="RADEON")
    assert done.returncode == 0
    assert "amdsmi package /" in done.stderr and "(version 7.0.2)" in done.stderr
    # without ROCm (amdsmi installed, no libamd_smi.so): nothing on stdout but the snapshot, and
    # the reason is NVIDIA's as before (AMD's is logged)
    done = gputop("--debug", "snapshot", fake="none:driver_not_loaded")
    assert done.returncode == 0
    assert "Unable to find libamd_smi.so" not in done.stdout
    assert "GPU  none shown: NVIDIA driver not loaded\n" in done.stdout
    assert "no AMD GPU shown through amdsmi: libamd_smi.so not found" in done.stderr


def test_driver_not_loaded_says_so_in_one_line():
    done = gputop("snapshot", amd="none:driver_not_loaded")
    assert done.returncode == 0
    assert "AMD: amdgpu driver not loaded" in done.stdout


def test_record_then_report_an_mi300x(tmp_path):
    trace = tmp_path / "amd.json"
    done = gputop("record", "--out", str(trace), "--interval", "0.2", "--duration", "2", amd="MI300X")
    assert done.returncode == 0, done.stderr
    events = json.loads(trace.read_text())
    tracks = {e["name"] for e in events if e.get("ph") == "C"}
    assert {"power_w", "gpu_util_pct", "mem_busy_pct", "temp_hotspot_c", "xgmi_read_bytes_per_s"} <= tracks
    assert "temp_c" not in tracks  # MI300X has no edge sensor: no track, not zeros
    samples = to_samples(load(trace))  # what replay draws: the AMD words follow the vendor kept
    assert samples[-1].gpus[0].info.vendor == "amd" and samples[-1].gpus[0].info.runtime_index == 0
    assert samples[-1].gpus[0].temp_hotspot_c == 68.0 and samples[-1].gpus[0].temp_c is None
    report = gputop("report", str(trace))
    assert report.returncode == 0, report.stderr
    assert "MI300X" in report.stdout
    assert "GPU 0   n/a (no SM activity: an AMD GPU gives none" in report.stdout and "GPM" not in report.stdout
    assert "GPU 0 CUs busy % (GFX activity)" in report.stdout


def test_serve_exports_amd_gpus_under_the_same_names():
    served = Served("--port", "0", fake="H100_SXM", amd="MI300X")
    try:

        def scrape() -> str | None:
            try:
                with urllib.request.urlopen(served.url, timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                return None
            return text if 'gpu="1"' in text else None

        text = wait_for(scrape, 60, "gputop serve answering with both GPUs")
    finally:
        served.stop()
    assert 'vendor="amd"' in text and 'vendor="nvidia"' in text
    lines = text.splitlines()
    power = [line for line in lines if line.startswith("gputop_gpu_power_watts{")]
    assert len(power) == 2 and any('name="AMD Instinct MI300X"' in line for line in power)
    assert any(line.startswith("gputop_gpu_hotspot_temperature_celsius{") for line in lines)
    assert not any(line.startswith("gputop_gpu_temperature_celsius{") and 'gpu="1"' in line for line in lines)


T0 = 1_800_000_000 * 10**9


def test_energy_per_step_on_the_hip_device(tmp_path, fake_amdsmi):
    """A ROCm job's cuda:0 under HIP_VISIBLE_DEVICES=1 is the second MI300X: its steps get that
    device's energy (read from the fake's counter through the real amdsmi), not the first's."""
    fake = fake_amdsmi("MI300X*2")
    source = AmdSource.open(clock=fake.now)
    job = tmp_path / "job.py"
    job.write_text(
        textwrap.dedent(f"""\
        import json, os
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        def emit(**e):
            os.write(fd, (json.dumps(e) + "\\n").encode())
        emit(event="start", ts_ns={T0}, name="rocm", device="cuda:0", batch_size=4)
        for k in (1, 2, 3):
            emit(event="step", step=k, samples=4, loss=None, wall_s=0.5, ts_ns={T0} + k * 10**9)
        """)
    )
    wl = Workload(str(job), env=dict(os.environ, HIP_VISIBLE_DEVICES="1"))
    wl.start()
    deadline = time.monotonic() + 60
    state = wl.poll()
    while state.running:
        assert time.monotonic() < deadline, state.output_tail
        time.sleep(0.02)
        state = wl.poll()
    cpu = CpuSample(50.0, (50.0,), (None,), None, 1, 2, None)
    energy, first_gpu = [], []
    try:
        for t in range(5):
            gpus = source.sample()
            energy.append(gpus[1].energy_j)
            first_gpu.append(gpus[0].energy_j)
            state = wl.poll(Sample(ts_ns=T0 + t * 10**9, cpu=cpu, gpus=gpus))
            fake.advance(1.0)
    finally:
        source.close()
    expected = [0.5 * (energy[k] - energy[k - 1]) for k in (1, 2, 3)]  # each step: half its second
    assert [s.joules for s in state.recent_steps] == [pytest.approx(e, rel=1e-6) for e in expected]
    wrong = [0.5 * (first_gpu[k] - first_gpu[k - 1]) for k in (1, 2, 3)]
    assert all(abs(e - w) > 1.0 for e, w in zip(expected, wrong))  # the devices' power differs by phase


def test_the_fake_reaches_a_script_as_users_write_it(tmp_path):
    """A child that imports amdsmi itself (as a user's script would) sees the fake's GPUs."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import amdsmi\n"
        "amdsmi.amdsmi_init()\n"
        "hs = amdsmi.amdsmi_get_processor_handles()\n"
        "print(len(hs), amdsmi.amdsmi_get_gpu_asic_info(hs[0])['market_name'])\n"
    )
    done = subprocess.run([sys.executable, str(script)], env=fake_env(None, "MI300X*8"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8 AMD Instinct MI300X"
    assert fakeamdsmi.MI300X.compute_units == 304
