"""Colours: every text on screen stays readable in the light themes (contrast measured on the
colours the terminal is sent, not on the stylesheet)."""

from __future__ import annotations

import pytest

from tui_fixtures import FakeSampler, contrast, make_app, make_sample, started, text_contrasts, with_gpu

LIGHT_THEMES = ("textual-light", "solarized-light", "catppuccin-latte", "rose-pine-dawn", "atom-one-light")
MIN_CONTRAST = 3.0  # WCAG's floor for large or bold text; every gputop text clears it


@pytest.mark.unit
def test_contrast_is_the_wcag_ratio():
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast((255, 255, 255), (255, 255, 255)) == pytest.approx(1.0)
    assert contrast((255, 255, 255), (224, 224, 224)) == pytest.approx(1.32, abs=0.01)


@pytest.mark.tui
async def test_t_goes_from_the_default_theme_to_the_light_one():
    app = make_app(FakeSampler(lambda t: make_sample(1, t)))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        assert app.theme == "textual-dark"
        await pilot.press("t")
        assert app.theme == "textual-light"


def _trap(t: int):
    return with_gpu(make_sample(8, t, cores=8), 0, gpu_util_pct=100.0, sm_active_pct=8.0)


@pytest.mark.tui
@pytest.mark.parametrize("theme", LIGHT_THEMES)
@pytest.mark.parametrize(
    "make, size, paused",
    [
        (lambda t: make_sample(1, t, cores=8), (120, 40), False),  # one full GPU panel, live
        (_trap, (160, 50), True),  # compact rows, a warning, the PAUSED badge
        (lambda t: make_sample(0, t, cores=8), (80, 24), False),  # no GPU
    ],
    ids=["1gpu-live", "8gpu-paused", "0gpu"],
)
async def test_every_text_is_readable_in_the_light_themes(theme, make, size, paused):
    app = make_app(FakeSampler(make), paused=True)
    async with app.run_test(size=size) as pilot:
        app.theme = theme
        for t in range(30):
            app.ingest(make(t))
        if not paused:
            app.paused = False
            app.workers.cancel_group(app, "sampling")  # "live" in the header, no new ticks
        await pilot.pause()
        runs = text_contrasts(app)
        assert len(runs) > 20
        faint = sorted({(round(r, 2), y, text) for r, y, text in runs if r < MIN_CONTRAST})
        assert not faint, f"text under {MIN_CONTRAST}:1 in {theme}: {faint[:8]}"
