"""RowTable: a scrolling table of one-line text rows with a row cursor, drawn with the line API.

It looks and behaves as Textual's ``DataTable`` with ``cursor_type="row"`` and zebra stripes (the
same component styles under ``table--`` names, set in gputop.tcss from the same theme variables:
header, cursor focused or not, zebra rows, mouse hover), but a line is built straight from the
cells' strings as Segments, with the styles resolved once per style change, and is kept per row
until that row's cells, the cursor, the hover or a style change: building a changed row's line
costs ~0.04 ms where DataTable's Rich rendering of its 7 cells cost ~0.9 ms (benchmarks/
frame_cost.py, 160x50). Keys: up/down, page up/down, home/end (first/last row), left/right
scroll sideways; a click moves the cursor or, on the header, calls ``header_clicked``.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size, Spacing
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gputop.tui.widgets.panel import KeptLines, StyleMemo

PAD = 1  # blank cells either side of a cell's text


class RowTable(ScrollView, StyleMemo, KeptLines, can_focus=True):  # (ScrollView first: Textual reads CSS along the first bases)
    """Subclasses set RIGHT (per column: right-justified) and call ``set_header``/``set_rows``."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "table--header",
        "table--cursor",
        "table--even-row",
        "table--odd-row",
        "table--hover",
        "table--header-hover",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Cursor up", show=False),
        Binding("down", "cursor(1)", "Cursor down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,ctrl+home", "edge(0)", "First row", show=False),
        Binding("end,ctrl+end", "edge(1)", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]
    RIGHT: ClassVar[tuple[bool, ...]] = ()

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.row_keys: list[str] = []
        self._cells: list[tuple[str, ...]] = []
        self._labels: tuple[str, ...] = ()
        self._widths: list[int] = []  # each column's text width: only grows, as DataTable's do
        self._cursor = 0
        self._hover: int | None = None  # the row under the mouse (-1: the header) while shown
        self._lines: dict[int, tuple[tuple[object, ...], Strip]] = {}  # row (-1 header) -> (key, line)
        self._cell_styles: dict[tuple[object, ...], tuple[list[tuple[Style, Style]], Style]] = {}

    # -- what subclasses call --------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self._cells)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    def cells_at(self, index: int) -> tuple[str, ...]:
        """The cells of row ``index`` as shown."""
        return self._cells[index]

    def set_header(self, labels: tuple[str, ...], widths: tuple[int, ...]) -> None:
        """The column labels, each column at least ``widths`` wide."""
        self._labels = labels
        self._grow([max(w, cell_len(label)) for label, w in zip(labels, widths)])
        self.refresh_lines(0)

    def set_rows(self, keys: list[str], rows: list[tuple[str, ...]]) -> None:
        """Show ``rows`` (keyed by ``keys``); the cursor stays on the row of the same key, if any.
        Rows are repainted only where their cells changed while the keys are those shown."""
        same = keys == self.row_keys
        if not same:
            kept = self.row_keys[self._cursor] if self._cursor < len(self.row_keys) else None
        old, self._cells, self.row_keys = self._cells, rows, keys
        changed = [i for i, (a, b) in enumerate(zip(old, rows)) if a != b] if same else range(len(rows))
        grown = self._grow([max(cell_len(rows[i][c]) for i in changed) for c in range(len(rows[0]))] if changed else [])
        size = Size(self._table_width(), 1 + len(rows))
        if size != self.virtual_size:
            self.virtual_size = size
        if same and not grown:  # the rows shown only: a scroll repaints the rest (and a line
            # marked dirty below the view would stay so, and defeat KeptLines, until one)
            scroll_y, (width, height) = round(self.scroll_y), self.size
            regions = [Region(0, i + 1 - scroll_y, width, 1) for i in changed if 0 < i + 1 - scroll_y < height]
            if regions:
                self.refresh(*regions)  # (one refresh: each costs ~0.03 ms)
            return
        if not same:
            self._set_cursor(keys.index(kept) if kept in keys else 0)  # (DataTable went to row 0)
        self.refresh()

    def header_clicked(self, column: int) -> None:
        """Called for a click on column ``column``'s header."""

    def row_mark(self, index: int) -> Style | None:
        """The style of row ``index``'s text over its row style (None: none)."""
        return None

    # -- cursor, keys, mouse ---------------------------------------------------------------
    def _set_cursor(self, row: int) -> None:
        row = max(0, min(row, len(self._cells) - 1))
        if row != self._cursor:
            self.refresh_lines(self._cursor + 1)
            self._cursor = row
            self.refresh_lines(row + 1)
        self.scroll_to_region(
            Region(0, row + 1, 1, 1), spacing=Spacing(1, 0, 0, 0), animate=False, force=True, x_axis=False, immediate=True
        )

    def _set_hover(self, row: int | None) -> None:
        if row != self._hover:
            for old_new in (self._hover, row):
                if old_new is not None:
                    self.refresh_lines(old_new + 1)
            self._hover = row

    def refresh_lines(self, y_start: int, line_count: int = 1) -> None:
        """Repaint virtual lines from ``y_start`` (0: the header, which never scrolls)."""
        if y_start == 0:
            self.refresh(Region(0, 0, self.size.width, 1))
        else:
            super().refresh_lines(y_start, line_count)

    def action_cursor(self, step: int) -> None:
        self._set_hover(None)
        self._set_cursor(self._cursor + step)

    def action_page(self, direction: int) -> None:
        self._set_hover(None)
        height = self.scrollable_content_region.height - 1  # less the header
        self.scroll_relative(y=direction * height, animate=False, force=True, immediate=True)
        self._set_cursor(self._cursor + direction * height)

    def action_edge(self, end: int) -> None:
        self._set_hover(None)
        self._set_cursor(len(self._cells) - 1 if end else 0)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        self._set_hover(event.style.meta.get("row"))

    def on_leave(self, _: events.Leave) -> None:
        self._set_hover(None)

    def on_click(self, event: events.Click) -> None:
        meta = event.style.meta
        if "row" not in meta:
            return
        self._set_hover(meta["row"])
        if meta["row"] == -1:
            if not meta.get("out_of_bounds"):  # (right of the last header DataTable sorted by the first)
                self.header_clicked(meta["column"])
        else:
            self._set_cursor(meta["row"])
            event.stop()

    # -- drawing ---------------------------------------------------------------------------
    def _grow(self, widths: Sequence[int]) -> bool:
        if len(self._widths) < len(widths):
            self._widths += [0] * (len(widths) - len(self._widths))
        grown = False
        for i, w in enumerate(widths):
            if w > self._widths[i]:
                self._widths[i], grown = w, True
        if grown:
            self._lines.clear()
        return grown

    def _table_width(self) -> int:
        return sum(w + 2 * PAD for w in self._widths)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cell_styles.clear()
        self._lines.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = -1 if y == 0 else y - 1 + scroll_y
        width = self.size.width
        if row >= len(self._cells):
            return Strip.blank(width, self.rich_style)
        mark = None if row == -1 else self.row_mark(row)
        cells = self._labels if row == -1 else self._cells[row]
        key = (cells, row == self._cursor, row == self._hover, mark, scroll_x, width)
        cached = self._lines.get(row)
        if cached is not None and cached[0] == key:
            return cached[1]
        strip = self._build(row, cells, mark, scroll_x, width)
        self._lines[row] = (key, strip)
        return strip

    def _row_styles(self, row: int, mark: Style | None) -> tuple[list[tuple[Style, Style]], Style]:
        """Per cell of ``row`` (-1: the header) its style and its text's; the style after the
        cells. As DataTable draws them: the row's style, the cell's position (mouse metadata),
        the hover/cursor styles, the cell text's own style, their colours again over it."""
        cursor, hover = row == self._cursor, row == self._hover
        key = (row, cursor, hover, mark)
        cached = self._cell_styles.get(key)
        if cached is not None:
            return cached
        component = self.component_style
        if row == -1:
            row_style = component("table--header")
        else:
            row_style = component("table--odd-row" if row % 2 else "table--even-row")
        over = Style()
        if hover:
            over += component("table--hover")
            if row == -1:
                over += component("table--header-hover")
        if cursor:
            over += component("table--cursor")
        post = Style.from_color(over.color) + Style.from_color(bgcolor=over.bgcolor)
        cell_styles = []
        for column in range(len(self._widths)):
            pre = row_style + Style.from_meta({"row": row, "column": column}) + over
            cell_styles.append((pre + post, pre + mark + post if mark is not None else pre + post))
        rest = row_style + over + Style.from_meta({"row": row, "column": 0, "out_of_bounds": True})
        if len(self._cell_styles) > 4096:
            self._cell_styles.clear()
        self._cell_styles[key] = cached = (cell_styles, rest)
        return cached

    def _build(self, row: int, cells: tuple[str, ...], mark: Style | None, scroll_x: int, width: int) -> Strip:
        """One line as DataTable draws it, its segments merged as its Strip.simplify would."""
        cell_styles, rest_style = self._row_styles(row, mark)
        pad = " " * PAD
        segments: list[Segment] = []
        add = segments.append
        for column, (text, w, (plain, styled)) in enumerate(zip(cells, self._widths, cell_styles)):
            size = cell_len(text)
            if size > w:  # (widths only grow with the cells: not while they are as set)
                text, size = set_cell_size(text, w), w
            right = column < len(self.RIGHT) and self.RIGHT[column]
            if styled is plain:
                add(Segment(pad + " " * (w - size) + text + pad if right else pad + text + " " * (w - size) + pad, plain))
            elif right:  # Rich pads a right-justified text inside the text's own style
                segments += [Segment(pad, plain), Segment(" " * (w - size) + text, styled), Segment(pad, plain)]
            else:  # and a left one after it, in the cell's
                segments += [Segment(pad, plain), Segment(text, styled), Segment(" " * (w - size) + pad, plain)]
        table = self._table_width()
        if width > table:
            add(Segment(" " * (width - table), rest_style))
        if scroll_x or table > width:
            return Strip(segments).crop(scroll_x, scroll_x + width).adjust_cell_length(width, self.rich_style).simplify()
        return Strip(segments, width)
