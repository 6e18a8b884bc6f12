"""gputop's own driver time, shown: beside its own CPU in the live header, in ``snapshot`` and in
a recording; checked against what the NVML fake's cost model charged the same process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gputop.tui.app import SelfCpu
from helpers import fake_env
from tui_fixtures import FakeSampler, make_app, make_sample, screen_text

# calls gputop makes outside query's choke point (NVML's start, handles) or after it reads its figure (the close)
NOT_COUNTED = {"nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2", "nvmlGpmSampleFree", "nvmlInitWithFlags", "nvmlShutdown"}


def _run(argv: list[str], spec: str, stats: str) -> subprocess.CompletedProcess[str]:
    env = {**fake_env(spec), "GPUTOP_FAKE_NVML_STATS": stats}
    return subprocess.run([sys.executable, "-m", "gputop", *argv], capture_output=True, text=True, env=env, timeout=120)


def _model(stats: str, pid: int | None = None) -> dict:
    (name,) = [n for n in os.listdir(stats) if n.endswith(".json") and (pid is None or n == f"{pid}.json")]
    with open(os.path.join(stats, name)) as f:
        return json.load(f)


@pytest.mark.unit
def test_self_cpu_gives_driver_ms_per_s_over_the_same_window():
    clock = {"cpu": 0.0, "wall": 0.0, "driver": None}
    meter = SelfCpu(cpu_clock=lambda: clock["cpu"], wall_clock=lambda: clock["wall"], window_s=1.0, driver_clock=lambda: clock["driver"])
    assert meter.counts_driver and SelfCpu().counts_driver is False
    meter.read()
    clock.update(cpu=0.1, wall=2.0, driver=(0.5, 10))
    meter.read()
    assert meter.driver_ms_per_s is None  # no GPU source at the window's start: n/a, never 0
    clock.update(cpu=0.2, wall=4.0, driver=(0.54, 30))
    meter.read()
    assert meter.driver_ms_per_s == pytest.approx(20.0)  # 40 ms over 2 s


@pytest.mark.tui
async def test_the_live_header_shows_the_driver_time_beside_own_cpu():
    cpu, wall, driver = iter([5.0, 5.25]), iter([1.0, 2.0]), iter([(1.0, 5), (1.0125, 9)])
    meter = SelfCpu(cpu_clock=lambda: next(cpu), wall_clock=lambda: next(wall), window_s=1.0, driver_clock=lambda: next(driver))
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True, self_cpu=meter)
    async with app.run_test(size=(160, 40)) as pilot:
        app.ingest(make_sample(1, 0))
        await pilot.pause()
        assert "own CPU n/a" in screen_text(app) and "driver n/a" in screen_text(app)
        app.ingest(make_sample(1, 1))
        await pilot.pause()
        assert "own CPU 25.0 %   driver 12.5 ms/s" in screen_text(app)  # side by side


@pytest.mark.e2e
def test_snapshot_reports_at_least_the_driver_time_the_model_charged(tmp_path):
    stats = str(tmp_path)
    out = _run(["snapshot", "--json"], "H100_SXM*2:cost", stats)
    assert out.returncode == 0, out.stderr
    own = json.loads(out.stdout)["gputop_driver"]
    model = _model(stats)
    charged = sum(ns for name, ns in model["cost_ns"].items() if name not in NOT_COUNTED)
    calls = sum(n for name, n in model["calls"].items() if name not in NOT_COUNTED)
    assert 0 < own["calls"] <= calls  # its wrappers' calls (some make two C calls: a size, then the list)
    assert own["seconds"] * 1e9 >= charged  # a call's wall time holds at least its time in the driver
    text = _run(["snapshot"], "H100_SXM:cost", str(tmp_path / "text"))
    assert "GPU driver calls, taking this snapshot" in text.stdout


@pytest.mark.e2e
def test_a_100_hz_recording_says_its_read_intervals_and_driver_time_and_reads_no_process_lists(tmp_path):
    stats, trace = tmp_path / "stats", tmp_path / "t.json"
    stats.mkdir()
    out = _run(["record", "--out", str(trace), "--interval", "0.01", "--duration", "3"], "H100_SXM*2:cost:no_pcie_counters", str(stats))
    assert out.returncode == 0, out.stderr
    events = json.loads(trace.read_text())
    settings = events[0]["args"]["settings"]
    intervals = settings["read_every_s"]
    assert intervals["gpu"] == 0.1 and intervals["processes"] is None and intervals["temp_c"] == 0.5
    assert intervals["pcie_tx_bytes_per_s"] >= 1.0  # its own thread, its own schedule
    assert any(e.get("name") == "pcie_tx_bytes_per_s" for e in events)  # and still recorded
    (driver,) = [e for e in events if e.get("cat") == "gputop.driver"]
    assert driver["args"]["driver_ms_per_s"] > 0 and driver["args"]["calls_per_s"] > 0
    model = _model(str(stats))
    # the process lists answered at the probe (a size call, then the list, per device) and never again
    assert model["calls"]["nvmlDeviceGetComputeRunningProcesses_v3"] == 2 * 2
