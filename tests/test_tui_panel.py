"""Panel.wrap: the fast split gives exactly what rich's Text.wrap gives, and falls back to it."""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.text import Text

from gputop.tui.widgets.panel import flow, wrap


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
