"""The live view over the real Sampler and AmdSource (the real amdsmi over the libamd_smi fake),
beside an NVIDIA GPU from the NVML fake: each panel in its vendor's words."""

from __future__ import annotations

import pytest

from gputop.sampler import Sampler
from gputop.sources.amd import AmdSource
from gputop.sources.cpu import CpuSource
from gputop.sources.gpu import GpuSources
from gputop.sources.nvml import NvmlSource
from tui_fixtures import make_app, screen_text, started, until

pytestmark = pytest.mark.tui


async def test_both_vendors_in_the_live_view(fake_nvml, fake_amdsmi) -> None:
    fake_nvml("H100_SXM")
    amd = fake_amdsmi("MI300X", real_time=True)
    nvml = NvmlSource.open()
    sampler = Sampler(CpuSource(), GpuSources([nvml, AmdSource.open(first_index=1, clock=amd.now)]))
    app = make_app(sampler, 0.2)
    try:
        async with app.run_test(size=(160, 60)) as pilot:
            await started(pilot, 2)
            # both panels drawn with a second GPU read (GPM's pair, XGMI's rate): waited for, not timed
            await until(pilot, lambda: "SMs active" in screen_text(app) and "XGMI read" in screen_text(app), timeout_s=60)
            text = screen_text(app)
    finally:
        sampler.close()
    assert "GPU0 H100" in text and "GPU1 Instinct MI300X" in text
    assert "SMs active" in text  # NVIDIA's panel as it was
    assert "CUs busy" in text and "UMC activity, not bandwidth" in text
    assert "hotspot 68 °C" in text and "temp edge n/a" in text  # MI300X: no edge sensor
    assert "XGMI" in text


async def test_eight_mi300x_a_row_each_in_amd_s_words(fake_amdsmi) -> None:
    amd = fake_amdsmi("MI300X*8", real_time=True)
    sampler = Sampler(CpuSource(), AmdSource.open(clock=amd.now))
    app = make_app(sampler, 0.2)
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await started(pilot, 2)
            text = screen_text(app)
    finally:
        sampler.close()
    rows = [line for line in text.splitlines() if "Instinct MI300X" in line and "CUs busy" in line]
    assert len(rows) >= 7  # the selected GPU is drawn in full, the others a row each
    assert all("UMC" in r and "hotspot 68 °C" in r and "SMs n/a" not in r for r in rows)
