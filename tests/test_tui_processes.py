"""The process table in the live view: cursor keys and scrolling, the cursor kept on its process,
mouse clicks on rows and headers, changed values and themes drawn (its lines are cached)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gputop import format as fmt
from gputop.tui.widgets.processes import ProcessTable
from tui_fixtures import FakeSampler, make_app, make_sample, screen_text, with_gpu

pytestmark = pytest.mark.tui


async def shown(pilot, sample) -> ProcessTable:
    pilot.app.ingest(sample)
    await pilot.pause()
    return pilot.app.query_one(ProcessTable)


def pids(table: ProcessTable) -> list[int]:
    return [int(table.cells_at(i)[0]) for i in range(table.row_count)]


def line(app, table: ProcessTable, y: int) -> str:
    """The table's line ``y`` on screen (0: the header)."""
    return screen_text(app).splitlines()[table.content_region.y + y]


async def test_keys_move_the_cursor_and_keep_it_in_view():
    app = make_app(FakeSampler(make_sample(8)), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        table = await shown(pilot, make_sample(8))
        table.focus()
        rows = table.scrollable_content_region.height - 1  # below the header
        assert table.row_count == 16 and 2 < rows < 16
        order = pids(table)
        await pilot.press("down", "down")
        assert table.cursor_row == 2 and table.selected_process.pid == order[2]
        await pilot.press("end")
        assert table.cursor_row == 15 and table.scroll_y == 16 - rows
        assert line(app, table, rows).split()[0] == str(order[15])  # the last row, at the bottom
        assert line(app, table, 0).split()[0] == "pid"  # the header stays
        await pilot.press("home")
        assert table.cursor_row == 0 and table.scroll_y == 0
        assert line(app, table, 1).split()[0] == str(order[0])
        await pilot.press("pagedown")
        assert table.cursor_row == rows and table.scroll_y > 0
        await pilot.press("pagedown", "pagedown")
        assert table.cursor_row == 15
        await pilot.press("pageup", "pageup", "pageup", "up")
        assert table.cursor_row == 0 and table.scroll_y == 0
        assert table.selected_process.pid == order[0]


async def test_the_cursor_stays_on_its_process_when_rows_move():
    sample = make_sample(8)
    app = make_app(FakeSampler(sample), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        table = await shown(pilot, sample)
        table.focus()
        await pilot.press("down", "down", "down")
        pid = table.selected_process.pid
        gpu = table.selected_process.gpu_index
        # that process now holds the most memory: it sorts first
        procs = sample.gpus[gpu].processes
        grown = tuple(replace(p, gpu_mem_bytes=70 * 1024**3) if p.pid == pid else p for p in procs)
        table = await shown(pilot, with_gpu(sample, gpu, processes=grown))
        assert pids(table)[0] == pid and table.cursor_row == 0 and table.selected_process.pid == pid
        await pilot.press("s")  # SM %: the rows move again
        assert table.selected_process.pid == pid and pids(table)[table.cursor_row] == pid
        # it ends: the cursor goes to the first row
        gone = tuple(p for p in grown if p.pid != pid)
        table = await shown(pilot, with_gpu(sample, gpu, processes=gone))
        assert pid not in pids(table) and table.cursor_row == 0


async def test_a_click_selects_a_row_and_a_header_click_sorts():
    app = make_app(FakeSampler(make_sample(2)), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        table = await shown(pilot, make_sample(2))
        top = table.content_region.y - table.region.y  # below the border
        await pilot.click(ProcessTable, offset=(3, top + 1 + 2))
        assert table.cursor_row == 2 and table.selected_process.pid == pids(table)[2]
        header = line(app, table, 0)
        await pilot.click(ProcessTable, offset=(header.index("SM %"), top))
        await pilot.pause()
        assert table.sort_key == "sm" and "SM % ▼" in line(app, table, 0)
        assert "sort SM %" in screen_text(app)  # the status bar heard of it
        assert [table.cells_at(i)[4] for i in range(4)] == ["80 %", "80 %", "50 %", "50 %"]
        await pilot.click(ProcessTable, offset=(150, top))  # right of the last header: no column
        await pilot.pause()
        assert table.sort_key == "sm"
        await pilot.click(ProcessTable, offset=(line(app, table, 0).index("pid"), top))
        await pilot.pause()
        assert table.sort_key == "pid" and "pid ▲" in line(app, table, 0)
        assert pids(table) == sorted(pids(table)) and "sort pid" in screen_text(app)


async def test_a_changed_value_and_a_new_theme_are_drawn():
    sample = make_sample(1)
    app = make_app(FakeSampler(sample), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        table = await shown(pilot, sample)
        assert " 99 %" in line(app, table, 1)
        busier = tuple(replace(p, cpu_pct=12.0) if p.pid == 4242 else p for p in sample.gpus[0].processes)
        table = await shown(pilot, with_gpu(sample, 0, processes=busier))
        assert " 12 %" in line(app, table, 1) and " 99 %" not in line(app, table, 1)
        assert " 59 %" in line(app, table, 2)  # the other row as it was

        def header_background():
            return next(iter(table.render_line(0))).style.bgcolor

        dark = header_background()
        app.theme = "textual-light"
        await pilot.pause()
        assert header_background() != dark


async def test_zebra_rows_and_the_cursor_have_their_own_backgrounds():
    app = make_app(FakeSampler(make_sample(2)), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        table = await shown(pilot, make_sample(2))

        def background(row):
            return next(iter(table.render_line(row + 1))).style.bgcolor

        assert table.cursor_row == 0
        assert len({background(0), background(1), background(2)}) == 3  # cursor, odd, even
        assert background(1) == background(3)
        assert background(0) == table.get_component_rich_style("table--cursor").bgcolor


async def test_a_row_below_the_view_that_changes_is_drawn_when_scrolled_to_and_keeps_the_rest_kept():
    """Only the rows shown are repainted when values change (a line marked dirty below the view
    would stay dirty, and the table's lines would be painted afresh every frame); scrolled to,
    the changed row shows its new value."""
    from textual.geometry import Region
    from textual.widget import Widget

    app = make_app(FakeSampler(make_sample(8)), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        sample = make_sample(8)
        table = await shown(pilot, sample)
        rows = table.scrollable_content_region.height - 1
        assert table.row_count > rows + 1
        last = table.row_count - 1
        gpu, pid = (int(x) for x in table.row_keys[last].split(":"))  # the bottom row, off screen
        procs = tuple(replace(p, cpu_pct=12.5) if p.pid == pid else p for p in sample.gpus[gpu].processes)
        table = await shown(pilot, with_gpu(sample, gpu, processes=procs))
        crop = Region(0, 0, *table.size)
        first = table.render_lines(crop)
        assert table.render_lines(crop) is first  # kept: nothing off screen left marked dirty
        table.focus()
        await pilot.press("end")
        drawn = table.render_lines(crop)
        table._styles_cache.clear()
        assert drawn == Widget.render_lines(table, crop)  # what Textual draws afresh
        bottom = line(app, table, rows).split()
        assert bottom[0] == str(pid) and fmt.pct(12.5) in " ".join(bottom)
