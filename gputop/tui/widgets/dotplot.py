"""A braille line plot kept as dot columns, so that scrolling it computes only the new columns.

The charts draw two points per character cell (braille has 2 x 4 dots a cell), newest point at
the right edge. Every new sample moves every point one dot column left, so at 1 Hz every cell
of every drawn row changes (the pairing of points into cells flips), and replotting the whole
chart each frame was most of its cost. Here each plot row is a ``bytearray`` with one byte per
dot column: the 4 dots that column sets in that row (bits 0-3, top to bottom) and the series
that drew it last (bits 4-7, 1-based in series order; 0 for none). A scroll deletes the oldest
bytes of every row and computes only the columns of the new points (and the new leftmost one,
which no longer joins a point before it). While the y scale, the size and the series stay the
same, ``advance`` gives exactly what ``fill`` gives; the tests compare the two.

A row's characters are made in C: its bytes read as UTF-16-BE are one code point per cell
(left column's byte, right column's byte), which ``str.translate`` maps to the cell's braille
character, and again to the kind (colour) of the series that drew the cell last. Code points
stay below the surrogates (0xD800) while there are at most MAX_SERIES series.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache
from typing import Mapping, NamedTuple, Sequence

from rich.segment import Segment
from rich.style import Style

BRAILLE = 0x2800
# dot bit for (column 0/1, row 0..3) inside one braille cell
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_CELL = (" ", *(chr(BRAILLE + bits) for bits in range(1, 256)))  # a cell's dots as its character
_LEFT = tuple(sum(_DOT[0][d] for d in range(4) if p >> d & 1) for p in range(16))
_RIGHT = tuple(sum(_DOT[1][d] for d in range(4) if p >> d & 1) for p in range(16))
# the dots from row a to row b (0..3, a <= b) of one cell column
_SPAN = tuple(tuple(((1 << (b + 1)) - 1) ^ ((1 << a) - 1) if a <= b else 0 for b in range(4)) for a in range(4))
MAX_SERIES = 12  # (12 << 4 | 15) << 8 is the highest code point: below 0xD800
_RUN = re.compile(r"(.)\1*", re.S)

Points = Sequence[float | None]


@lru_cache(maxsize=32)
def _tables(kinds: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """For every code point a row can decode to: the cell's character, and a character that
    stands for the kind of the series that drew the cell last ("\\0" for none; the same
    character for two series of one kind, whose cells are one run of one colour)."""
    kind_char: dict[str | None, str] = {None: "\0"}
    for kind in kinds:
        kind_char.setdefault(kind, chr(len(kind_char)))
    owner = ["\0", *(kind_char[k] for k in kinds)]
    owner += ["\0"] * (16 - len(owner))  # (no byte has an owner past the series)
    size = (len(kinds) + 1) << 12
    chars = [_CELL[_LEFT[cp >> 8 & 15] | _RIGHT[cp & 15]] for cp in range(size)]
    kinds_of = [owner[max(cp >> 12, cp >> 4 & 15)] for cp in range(size)]
    return chars, kinds_of


class DotPlot:
    """``plot_w`` x ``plot_h`` cells of braille over ``top``..``bottom``, for series of ``kinds``."""

    def __init__(self, plot_w: int, plot_h: int, top: float, bottom: float, kinds: Sequence[str]) -> None:
        if len(kinds) > MAX_SERIES:
            raise ValueError(f"at most {MAX_SERIES} series in one plot, got {len(kinds)}")
        self.plot_w, self.plot_h, self.top, self.bottom = plot_w, plot_h, top, bottom
        self.kinds = tuple(kinds)
        self.dots_w = 2 * plot_w
        self._span = (top - bottom) or 1.0
        self._last = 4 * plot_h - 1
        self.ys: list[list[int | None]] = [[None] * self.dots_w for _ in self.kinds]  # dot row per column
        self.rows = [bytearray(self.dots_w) for _ in range(plot_h)]
        self.scrolled = 0  # dot columns scrolled by since the plot was made
        self._made: list[list[_Made]] = [[] for _ in range(plot_h)]  # each row's last two segment lists
        self._style_of: tuple[Mapping[str | None, Style] | None, dict[str, Style]] = (None, {})
        self._chars, self._owners = _tables(self.kinds)
        self._kind_of: dict[str, str | None] = {"\0": None}  # a run's owner character: its kind
        for kind in self.kinds:
            if kind not in self._kind_of.values():
                self._kind_of[chr(len(self._kind_of))] = kind

    def y_of(self, value: float | None) -> int | None:
        """The dot row of ``value`` (0 at the top), clamped into the plot."""
        if value is None:
            return None
        bottom, top = self.bottom, self.top
        return round((1 - (min(max(value, bottom), top) - bottom) / self._span) * self._last)

    def fill(self, series: Sequence[Points]) -> None:
        """Draw each series' points (one list per kind), the newest at the right edge."""
        w, y_of = self.dots_w, self.y_of
        pad: list[int | None] = [None]
        self.ys = [pad * (w - len(points)) + [y_of(v) for v in points[-w:]] for points in series]
        for x in range(w):  # (every row's byte at x is set)
            self._column(x)
        self._made = [[] for _ in range(self.plot_h)]

    def advance(self, new: Sequence[Points]) -> None:
        """Scroll by the same number of new points in every series (fewer than ``dots_w``)."""
        k = len(new[0]) if new else 0
        if k == 0:
            return
        if k >= self.dots_w or any(len(points) != k for points in new):
            raise ValueError(f"advance takes 1 to {self.dots_w - 1} points a series, the same for each")
        y_of, blank = self.y_of, bytes(k)
        self.ys = [ys[k:] + [y_of(v) for v in points] for ys, points in zip(self.ys, new)]
        self.scrolled += k
        for row in self.rows:
            del row[:k]
            row += blank
        self._column(0)  # the oldest point drawn now joins nothing before it
        for x in range(self.dots_w - k, self.dots_w):
            self._column(x)

    def _column(self, x: int) -> None:
        """Set dot column ``x`` of every row from the series' points at ``x`` and ``x - 1`` (a
        point joins the one before it with a vertical run, so steep changes read as a line)."""
        codes: dict[int, int] = {}
        for owner, ys in enumerate(self.ys, 1):
            y = ys[x]
            if y is None:
                continue
            prev = ys[x - 1] if x else None
            lo, hi = (y, y) if prev is None else (min(prev, y), max(prev, y))
            for r in range(lo >> 2, (hi >> 2) + 1):
                base = r << 2
                dots = _SPAN[max(lo, base) - base][min(hi, base + 3) - base]
                codes[r] = owner << 4 | (codes.get(r, 0) & 15) | dots
        for r, row in enumerate(self.rows):
            row[x] = codes.get(r, 0)

    def row_runs(self, r: int) -> list[tuple[str, str | None]]:
        """Row ``r`` as runs of cells drawn last by series of one kind (or by none): (text, kind)."""
        text, owners = self._decoded(self.rows[r])
        kind_of = self._kind_of
        return [(text[m.start() : m.end()], kind_of[m.group(1)]) for m in _RUN.finditer(owners)]

    def row_segments(self, r: int, style_of: Mapping[str | None, Style]) -> list[Segment]:
        """``row_runs`` as segments, each in ``style_of[kind]`` (``style_of[None]``: no series).

        A scroll by an even number of points moves every cell of a row by whole cells, so the
        row's runs but those at its ends are those it had then, moved: where the cells between
        hold the same bytes as then (compared, not assumed), those segments are the same
        objects again, and only the cells of the runs at the ends are made into characters."""
        row = bytes(self.rows[r])
        if style_of is not self._style_of[0]:  # (one mapping for every row of a chart's frame)
            self._style_of = (style_of, {char: style_of[kind] for char, kind in self._kind_of.items()})
        styles = self._style_of[1]
        made = self._made[r]
        for old in made:
            shift = self.scrolled - old.scrolled
            if shift % 2 == 0 and old.styles == styles:
                moved = self._moved(old, shift // 2, row, styles)
                if moved is not None:
                    break
        else:
            moved = _runs(*self._decoded(row), styles, self.scrolled >> 1)
        made[:] = [*made[-1:], _Made(self.scrolled, row, styles, *moved)]
        return moved[0]

    def _moved(self, old: _Made, cells: int, row: bytes, styles: dict[str, Style]) -> tuple[list[Segment], list[int]] | None:
        """The row's segments from ``old``'s, ``cells`` to the left now; None where none fit."""
        w = self.plot_w
        if not 0 < cells < w - 2 or row[2 : 2 * (w - cells)] != old.row[2 * (cells + 1) :]:
            return None
        # old runs that start and end inside the cells that read the same (their ends are
        # ends now too): all but the last, from the first that starts past the new cell 1; the
        # runs before and after them are made anew. (Starts count cells from where the plot's
        # first cell was when it was made, so a moved run starts where it did.)
        base = self.scrolled >> 1
        starts = old.starts
        first, last = bisect_left(starts, base + 2), len(starts) - 2
        if first > last:
            return None
        a, b = starts[first] - base, starts[last + 1] - base
        head, head_starts = _runs(*self._decoded(row[: 2 * a]), styles, base)
        tail, tail_starts = _runs(*self._decoded(row[2 * b :]), styles, base + b)
        return [*head, *old.segments[first : last + 1], *tail], [*head_starts, *starts[first : last + 1], *tail_starts]

    def _decoded(self, row: bytes | bytearray) -> tuple[str, str]:
        """Cells' characters, and for each a character that stands for its kind."""
        cells = row.decode("utf-16-be")
        return cells.translate(self._chars), cells.translate(self._owners)


class _Made(NamedTuple):
    """A row's segments as made at ``scrolled``, from what (``starts``: each one's first cell,
    plus ``scrolled // 2``)."""

    scrolled: int
    row: bytes
    styles: dict[str, Style]
    segments: list[Segment]
    starts: list[int]


def _runs(text: str, owners: str, styles: Mapping[str, Style], offset: int) -> tuple[list[Segment], list[int]]:
    """One segment per run of one owner character, and the cell each starts at (+ ``offset``)."""
    segments: list[Segment] = []
    starts: list[int] = []
    for m in _RUN.finditer(owners):
        a, b = m.span()
        segments.append(Segment(text[a:b], styles[owners[a]]))
        starts.append(a + offset)
    return segments, starts
