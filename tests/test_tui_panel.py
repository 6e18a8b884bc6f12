"""Panel.wrap: the fast split gives exactly what rich's Text.wrap gives, and falls back to it.
StyleMemo: the styles it keeps are the ones Textual computes afresh, after a hover, a class and a
theme change. Lines of pieces: the strips are the segments Rich rendered for the same Text, and a
line whose value or theme changed is drawn anew while the unchanged ones keep their strips."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.dom import DOMNode
from textual.reactive import reactive

from gputop.tui.app import GputopApp, SelfCpu
from gputop.tui.widgets.gpu import GpuPanel
from gputop.tui.widgets.panel import Line, Panel, Rows, StyleMemo, cells, flow, item, line_strip, pack, plain, wrap
from gputop.tui.widgets.status import StatusBar
from gputop.view.feed import LiveFeed
from tui_fixtures import FakeSampler, lost, make_sample


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


@pytest.mark.unit
@pytest.mark.parametrize("width", [12, 30, 80])
def test_wrap_is_rich_wrap(width: int) -> None:
    console = Console(width=200)
    for text in _texts():
        assert _lines(wrap(text, console, width)) == _lines(list(text.wrap(console, width))), text.plain


@pytest.mark.tui
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


# --- lines of pieces: the segments Rich gave, and no stale line kept -------------------------

BASE = Style(color="#e0e0e0", bgcolor="#121212")
LABEL, VALUE, WARN = Style(color="#949494"), Style(bold=True), Style(color="#ffa62b", bold=True)


def _rich_strip(text: Text, width: int) -> list[Segment]:
    """What Panel drew for a Rich line before pieces: render, the panel's style, padded."""
    console = Console(width=200)
    return Segment.adjust_line_length(list(Segment.apply_style(text.render(console), BASE)), width, BASE)


def _assembled(line: Line) -> Text:  # the Text the widgets built for these pieces before
    return Text.assemble(*((t, s) if s else t for t, s in line))


LINES: list[Line] = [
    item(("DRAM ", LABEL), ("1.73 TB/s", VALUE), " 52 % of 3.35 TB/s", "   ", ("memory ", LABEL), ("58 GiB", VALUE)),
    item(("■" * 30, VALUE), ("·" * 10, LABEL)),  # glyphs, two styles
    item(("a", VALUE), ("b", VALUE), "c", "d"),  # equal styles stay apart, unstyled runs merge
    item(("⚠ util 100 % but only 8 of 132 SMs busy", WARN)),
    item("live", "   ", ("every ", LABEL)),
    item(("温度", LABEL), " 47 °C"),  # wide cells
    (),  # a blank line
]


@pytest.mark.unit
@pytest.mark.parametrize("width", [60, 48])  # 48: the first line fills it, no padding
def test_a_line_of_pieces_is_the_strip_rich_gave(width: int) -> None:
    for line in LINES:
        assert cells(line) <= width
        assert list(line_strip(line, width, BASE)) == _rich_strip(_assembled(line), width), line
        assert list(line_strip(line, width, BASE, {}, cells(line))) == _rich_strip(_assembled(line), width)


@pytest.mark.unit
def test_pack_places_the_pieces_as_flow_did() -> None:
    f_item = [
        item(("load ", LABEL), ("1.52", VALUE)),
        item(("RAM ", LABEL), ("12 GiB", VALUE), " / 31 GiB"),
        item(("temp ", LABEL), ("46 °C", VALUE)),
        item(("package power ", LABEL), ("n/a", VALUE), "  "),
    ]
    grid = [item(("■" * 8, VALUE), ("·" * 4, LABEL)), item(("·" * 12, LABEL))]
    for width in (12, 20, 30, 50, 200):
        lines = pack([f_item[:2], Rows(grid), f_item[2:]], width)
        texts = [[_assembled(i) for i in f_item[:2]], [Text("\n").join(_assembled(r) for r in grid)], [_assembled(i) for i in f_item[2:]]]
        expected = flow(texts, width).split("\n")
        assert [plain(line) for line in lines] == [t.plain for t in expected], width
        for line, text in zip(lines, expected):
            assert list(line_strip(line, 200, BASE)) == _rich_strip(text, 200)


class _Lines(Panel):
    """Lines of (label, value) or plain text, styled as the panels style them, in build."""

    content: reactive[tuple[tuple[str, str] | str, ...]] = reactive((), repaint=False)

    def render_key(self) -> tuple:
        return (self.content,)

    def build(self, width: int) -> list[Line]:
        return [item(c) if isinstance(c, str) else self.item(*c) for c in self.content]

    def watch_content(self) -> None:
        self.update_lines()


class _LinesApp(App[None]):
    CSS = "_Lines { height: auto; width: 40; } _Lines > .panel--value { color: $accent; text-style: bold; }"

    def compose(self):  # type: ignore[no-untyped-def]
        yield _Lines()


@pytest.mark.tui
async def test_a_changed_line_is_drawn_anew_the_others_kept_and_a_theme_restyles_all() -> None:
    app = _LinesApp()
    async with app.run_test(size=(60, 10)) as pilot:
        panel = app.query_one(_Lines)
        panel.content = (("power", "520 W"), "throttle none", "x " * 30)  # the last: wider than 40
        await pilot.pause()
        before = [panel.render_line(y) for y in range(panel.content_size.height)]
        assert [s.text.rstrip() for s in before[:2]] == ["power 520 W", "throttle none"]
        assert len(before) == 4  # Rich divided the long line in two
        assert all(s.cell_length == 40 for s in before)

        panel.content = (("power", "521 W"), "throttle none", "x " * 30)
        await pilot.pause()
        after = [panel.render_line(y) for y in range(panel.content_size.height)]
        assert after[0].text.rstrip() == "power 521 W"
        assert after[1] is before[1] and after[2] is before[2]  # unchanged: the very strip kept
        assert app.screen._compositor.render_strips()[0].text.startswith("power 521 W")  # and on screen

        old_style = next(s.style for s in after[0] if s.text == "521 W")
        app.theme = "textual-light" if app.theme != "textual-light" else "nord"
        await pilot.pause()
        themed = [panel.render_line(y) for y in range(panel.content_size.height)]
        new_style = next(s.style for s in themed[0] if s.text == "521 W")
        assert new_style != old_style
        assert new_style == panel.rich_style + panel.get_component_rich_style("panel--value")
        assert all(seg.style == panel.rich_style for seg in themed[1] if seg.text.strip() in ("", "throttle none"))


@pytest.mark.tui
async def test_a_lost_gpu_reads_in_the_lost_style() -> None:
    feed = LiveFeed(FakeSampler(lambda t: make_sample(1, t)), 1.0, host="h", paused=True)
    app = GputopApp(feed, self_cpu=SelfCpu(cpu_clock=lambda: 0.0, wall_clock=lambda: 0.0), frame_s=0.0)
    async with app.run_test(size=(160, 50)) as pilot:
        sample = make_sample(1, 3)
        app.ingest(replace(sample, gpus=(lost(sample.gpus[0]),)))
        await pilot.pause()
        panel = app.query_one(GpuPanel)
        seg = next(s for s in panel.render_line(0) if s.text.startswith("lost"))
        assert seg.style == panel.rich_style + panel.get_component_rich_style("panel--lost")
        assert seg.style != panel.rich_style


@pytest.mark.tui
async def test_kept_lines_are_those_textual_draws_afresh_after_samples_keys_and_a_theme():
    """KeptLines hands the compositor its last lines while none is marked dirty: after every
    change (samples, the table's cursor, a theme) they must equal a render from scratch."""
    from textual.geometry import Region
    from textual.widget import Widget

    from gputop.tui.widgets.panel import KeptLines
    from gputop.tui.widgets.processes import ProcessTable

    def fresh(widget: Widget, crop: Region) -> list:
        widget._styles_cache.clear()
        return Widget.render_lines(widget, crop)

    feed = LiveFeed(FakeSampler(lambda t: make_sample(1, t)), 1.0, host="h", paused=True)
    app = GputopApp(feed, self_cpu=SelfCpu(cpu_clock=lambda: 0.0, wall_clock=lambda: 0.0), frame_s=0.0)
    async with app.run_test(size=(160, 50)) as pilot:
        kept = [w for w in app.screen.walk_children() if isinstance(w, KeptLines)]
        assert {type(w).__name__ for w in kept} >= {"ProcessTable", "KeyFooter", "GpuList", "HistoryCharts"}
        steps = [
            lambda: None,
            lambda: app.query_one(ProcessTable).focus(),
            lambda: None,
            lambda: setattr(app, "theme", "textual-light"),
            lambda: None,
        ]
        for t, step in enumerate(steps):
            step()
            app.ingest(make_sample(1, t, cores=2))
            await pilot.pause()
            if t == 2:
                await pilot.press("down")
                await pilot.pause()
            for widget in kept:
                crop = Region(0, 0, *widget.size)
                first = widget.render_lines(crop)
                assert widget.render_lines(crop) is first  # kept: nothing was marked dirty
                assert first == fresh(widget, crop), (type(widget).__name__, t)
