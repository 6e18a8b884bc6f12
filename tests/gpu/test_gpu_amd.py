"""On a real AMD GPU (ROCm's libamd_smi.so): what gputop shows crossed with amdsmi's own answers
taken right after, and the readings the fake (tests/fakeamdsmi.py) gives in kind. Skipped on every
other machine (conftest: machine.no_amd_gpu_reason); today only NVIDIA machines are lent, so this
has not yet run on AMD hardware."""

from __future__ import annotations

import json
import sys
import time

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.gpu]  # on the real hardware: never in the fast loop
VENDOR = "amd"


def test_snapshot_matches_amdsmi(runner, figure):
    import amdsmi

    proc = runner.run("amd-snapshot", [sys.executable, "-m", "gputop", "snapshot", "--json"], timeout=60)
    assert proc.rc == 0, proc.stderr
    gpus = [g for g in json.loads(proc.stdout)["gpus"] if g["info"]["vendor"] == "amd"]
    assert gpus, "gputop showed no AMD GPU where amdsmi finds one"
    amdsmi.amdsmi_init()
    try:
        handles = amdsmi.amdsmi_get_processor_handles()
        assert len(handles) == len(gpus)
        for gpu, h in zip(gpus, handles):
            total = amdsmi.amdsmi_get_gpu_memory_total(h, amdsmi.AmdSmiMemoryType.VRAM)
            figure(f"GPU {gpu['info']['index']} {gpu['info']['name']}: VRAM total (bytes)", gpu["mem_total_bytes"], str(total))
            assert gpu["mem_total_bytes"] == total
            assert gpu["info"]["sm_count"] == amdsmi.amdsmi_get_gpu_asic_info(h)["num_compute_units"]
            if gpu["power_w"] is not None:  # MI250X's odd die: n/a
                assert 0 < gpu["power_w"] <= 1.5 * (gpu["power_limit_w"] or 2000)
            for key in ("gpu_util_pct", "mem_busy_pct"):
                assert gpu[key] is None or 0 <= gpu[key] <= 100
    finally:
        amdsmi.amdsmi_shut_down()


def test_energy_counter_moves_with_power(runner, figure):
    from gputop.sources.amd import AmdSource

    source = AmdSource.open()
    try:
        first = source.sample()
        time.sleep(2.0)
        last = source.sample()
    finally:
        source.close()
    for a, b in zip(first, last):
        if a.energy_j is None or b.energy_j is None or b.power_w is None:
            continue
        watts = (b.energy_j - a.energy_j) / 2.0
        figure(f"GPU {a.info.index}: energy counter over 2 s (W)", round(watts, 1), f"near {b.power_w} W")
        assert watts >= 0
