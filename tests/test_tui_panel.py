"""Panel.wrap: the fast split gives exactly what rich's Text.wrap gives, and falls back to it.
StyleMemo: the styles it keeps are the ones Textual computes afresh, after a hover, a class and a
theme change."""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.text import Text
from textual.dom import DOMNode

from gputop.feed import LiveFeed
from gputop.tui.app import GputopApp, SelfCpu
from gputop.tui.widgets.gpu import GpuPanel
from gputop.tui.widgets.panel import StyleMemo, flow, wrap
from gputop.tui.widgets.status import StatusBar
from tui_fixtures import FakeSampler, make_sample


def _lines(lines: list[Text]) -> list[tuple[str, object, list[object]]]:
    return [(line.plain, line.style, list(line.spans)) for line in lines]


def _texts() -> list[Text]:
    styled = Text("93 of 132 SMs active (70 %)   NVML util 77 %\n" + "■" * 40 + "\npower 469 W\n", style="bold")
    styled.stylize("red", 3, 10)
    fields = [[Text("load 1.52"), Text("RAM 12 GiB / 31 GiB", style="dim")], [Text("temp 46 °C")]]
    return [
        styled,
        flow(fields, 30),
        Text("a line far longer than the width it is given, so wrap must divide it into pieces"),
        Text("tab\there\nand more"),
        Text("right justified\nshort", justify="right"),
        Text("wide ■■■ cells 温度温度温度"),
        Text(""),
        Text("ends with a newline\n"),
    ]


@pytest.mark.parametrize("width", [12, 30, 80])
def test_wrap_is_rich_wrap(width: int) -> None:
    console = Console(width=200)
    for text in _texts():
        assert _lines(wrap(text, console, width)) == _lines(list(text.wrap(console, width))), text.plain


async def test_kept_styles_are_textuals_after_hover_class_and_theme() -> None:
    feed = LiveFeed(FakeSampler(lambda t: make_sample(1, t)), 1.0, host="h")
    app = GputopApp(feed, self_cpu=SelfCpu(cpu_clock=lambda: 0.0, wall_clock=lambda: 0.0), frame_s=0.0)

    def fresh(widget: StyleMemo) -> tuple[object, object]:
        return DOMNode.rich_style.fget(widget), DOMNode.background_colors.fget(widget)  # type: ignore[attr-defined]

    def check() -> None:
        widgets = list(app.query(StyleMemo))
        assert len(widgets) >= 5  # the panels, the charts, the process table
        for widget in widgets:
            assert (widget.rich_style, widget.background_colors) == fresh(widget), widget

    async with app.run_test(size=(160, 50)) as pilot:
        while app.samples_taken < 1:
            await pilot.pause(0.01)
        await pilot.pause()
        check()
        panel = app.query_one(GpuPanel)
        before = panel.rich_style
        await pilot.hover(GpuPanel)  # GpuPanel:hover has a background of its own
        await pilot.pause()
        assert panel.rich_style != before
        check()
        await pilot.hover(StatusBar)
        app.action_toggle_pause()  # StatusBar.-paused: another background
        await pilot.pause()
        check()
        app.theme = "textual-light" if app.theme != "textual-light" else "nord"
        await pilot.pause()
        check()
