"""A base for the text panels: shared component classes so every colour lives in gputop.tcss."""

from __future__ import annotations

from typing import Iterable, Union

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.color import Color
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

from gputop.tui import compat
from gputop.view.lines import GAP, Item, Line, Piece, Rows, cells, item, load_style, pack, plain
from gputop.view.lines import field as field_item

__all__ = ["GAP", "Item", "Line", "Piece", "Rows", "cells", "item", "pack", "plain"]


class StyleMemo(Widget):
    """A widget whose ``rich_style`` and ``background_colors`` are kept until its styles change.

    Textual computes both by walking every ancestor's styles (~0.05-0.1 ms each time) and asks
    for them on every paint: ``background_colors`` once per widget per frame, ``rich_style`` on
    every painted line of a panel or of a table (together ~1.5 ms of a 1 Hz frame at
    160x50). They change only when some node's styles do, and Textual then re-applies the
    styles of that node and of every node under it, and says so (``notify_style_update``): a
    class or pseudo-class (hover, focus) toggled, the theme, the stylesheet. (No style of this
    app is animated, so no value changes between two such calls.)
    """

    _memo_style: Style | None = None
    _memo_background: tuple[Color, Color] | None = None
    _memo_components: dict[tuple[str, bool], Style] | None = None

    @property
    def rich_style(self) -> Style:
        if self._memo_style is None:
            self._memo_style = super().rich_style
        return self._memo_style

    @property
    def background_colors(self) -> tuple[Color, Color]:
        if self._memo_background is None:
            self._memo_background = super().background_colors
        return self._memo_background

    def component_style(self, name: str, partial: bool = False) -> Style:
        """``get_component_rich_style``, kept likewise: Textual drops its own copy at every
        refresh, one line's included, and finding it again walks every ancestor's styles
        (~0.05 ms a name)."""
        memo = self._memo_components
        if memo is None:
            memo = self._memo_components = {}
        style = memo.get((name, partial))
        if style is None:
            style = memo[name, partial] = self.get_component_rich_style(name, partial=partial)
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._memo_style = self._memo_background = self._memo_components = None


class KeptLines(Widget):
    """A widget whose ``render_lines`` gives the very lines it gave last while Textual has marked
    none of them for repainting and the crop, size and scroll are the same.

    The compositor asks every widget under the bounding box of a frame's changed lines for all
    its lines (live, the whole screen: the CPU panel at the top and the table at the bottom
    change), and Textual's styles cache then crops and filters each of them again, unchanged or
    not (~30 us a line: ~0.8 ms a frame for the table, the footer and the containers). A line
    changes only through a refresh, which marks it dirty in that cache (a style or theme change
    too: Textual refreshes the node); where that cache's dirty set is not there (``compat.dirty_lines``:
    another Textual), nothing is kept."""

    _kept: tuple[tuple[object, ...], list[Strip]] | None = None

    def render_lines(self, crop: Region) -> list[Strip]:
        dirty = compat.dirty_lines(self)
        key = (crop, self.region.size, self.scroll_offset)
        kept = self._kept
        if kept is not None and dirty is not None and not dirty and kept[0] == key:
            return kept[1]
        lines = super().render_lines(crop)
        self._kept = (key, lines) if dirty is not None else None
        return lines


Drawn = Union[Line, Text]  # a line as drawn: pieces, or (cut to the width by Rich) a Rich line


class Panel(StyleMemo):
    """A widget whose lines are styled through component classes (see gputop.tcss).

    Subclasses implement ``build(width)`` and ``render_key()`` (what the text depends on); the
    built content is cached per key and width, so a layout pass and the paint that follows it (or
    a hover) do not build it again. ``build`` returns either lines of pieces (``item``, ``pack``:
    turned into segments directly, the cheap way for panels redrawn every sample) or Rich Text.
    """

    COMPONENT_CLASSES = {
        "panel--label",
        "panel--value",
        "panel--warn",
        "panel--lost",
        "panel--dim",
        "load--na",
        "load--idle",
        "load--light",
        "load--busy",
        "load--hot",
        "sm--on",
        "sm--off",
    }

    _built: tuple[tuple, Text | list[Line]] | None = None
    _lines: tuple[object, int, list[Drawn], list[int]] | None = None  # (built, width, lines as drawn, their cells)
    _strips: tuple[object, int, Style, list[Strip], list[Drawn]] | None = None  # (.., the lines drawn)
    _paint: tuple[list[Strip], int, Style] | None = None  # (strips, width, style) during render_lines
    _on: tuple[Style, dict[Style, Style]] | None = None  # (base, each piece's style on it: base + style)

    def build(self, width: int) -> Text | list[Line]:
        raise NotImplementedError

    def render_key(self) -> tuple:
        return ()

    def text_for(self, width: int) -> Text | list[Line]:
        """What ``build`` gave for this width and the current key (built again only when the
        key, the width or the theme changed)."""
        key = (width, self.app.theme, *self.render_key())
        if self._built is None or self._built[0] != key:  # (a tuple's == tries `is` first)
            self._built = (key, self.build(width))
        return self._built[1]

    def plain_for(self, width: int) -> str:
        """The text as built for this width, without its styles, lines joined by newlines."""
        built = self.text_for(width)
        return built.plain if isinstance(built, Text) else "\n".join(plain(line) for line in built)

    def _wrapped(self, width: int, built: Text | list[Line] | None = None) -> list[Drawn]:
        """The content as built for this width, wrapped to it: once per built content."""
        if built is None:
            built = self.text_for(width)
        if self._lines is None or self._lines[0] is not built or self._lines[1] != width:
            console, width_ = self.app.console, max(width, 1)
            drawn: list[Drawn] = []
            used: list[int] = []  # each line's cells (-1: a Rich line)
            if isinstance(built, Text):
                drawn += wrap(built, console, width_)
                used += [-1] * len(drawn)
            else:
                for line in built or [()]:  # (as Text(""): one blank line)
                    n = cells(line)
                    if n <= width_ and not any("\t" in text for text, _ in line):
                        drawn.append(line)
                        used.append(n)
                    else:  # Rich divides it, as it would the Text of these pieces
                        rich_lines = wrap(as_text(line), console, width_)
                        drawn += rich_lines
                        used += [-1] * len(rich_lines)
            self._lines = (built, width, drawn, used)
        return self._lines[2]

    def render_lines(self, crop: Region) -> list[Strip]:
        """The strips are looked up once for all the lines of one paint, not once a line (the
        key, the width and the style each cost a few microseconds)."""
        width = self.content_size.width
        base = self.rich_style
        self._paint = (self._strips_for(width, base), width, base)
        try:
            return super().render_lines(crop)
        finally:
            self._paint = None

    def render_line(self, y: int) -> Strip:
        """Line API: the wrapped text as strips, made once per built text. (Returning the Text
        from ``render`` instead made Textual convert and wrap it again on every paint: ~0.5 ms
        for a one-line status bar, every frame.)"""
        if self._paint is not None:
            strips, width, base = self._paint
        else:
            width = self.content_size.width
            base = self.rich_style
            strips = self._strips_for(width, base)
        return strips[y] if y < len(strips) else Strip.blank(width, base)

    def _strips_for(self, width: int, base: Style) -> list[Strip]:
        """One strip per wrapped line; a line that reads as it did in the previous content keeps
        its strip (the very object: ``refresh_changed`` then skips it without comparing)."""
        built = self.text_for(width)
        old = self._strips
        if old is not None and old[0] is built and old[1] == width and old[2] == base:
            return old[3]
        console = self.app.console
        lines = self._wrapped(width, built)
        before, kept = (old[4], old[3]) if old is not None and old[1] == width and old[2] == base else ([], [])
        if self._on is None or self._on[0] != base:
            self._on = (base, {})
        on = self._on[1]
        used = self._lines[3] if self._lines is not None else []
        strips = [
            kept[y]
            if y < len(before) and _same_drawn(before[y], line)
            else (
                line_strip(line, width, base, on, used[y])
                if isinstance(line, tuple)
                else Strip(Segment.adjust_line_length(list(Segment.apply_style(line.render(console), base)), width, base), width)
            )
            for y, line in enumerate(lines)
        ]
        self._strips = (built, width, base, strips, lines)
        return strips

    def update_lines(self) -> None:
        """After the data changed (reactives declared ``repaint=False``): lay the screen out
        again if the height changed, else repaint only the lines whose text changed. A plain
        refresh repaints every line, borders included, through Textual's style cache; at 1 Hz
        that was a good part of a frame for lines that read the same."""
        if not self.is_mounted:
            return
        width, height = self.content_size  # (computed from the region each time it is asked)
        if not width:
            self.refresh()
            return
        base = self.rich_style
        old = self._strips
        new = self._strips_for(width, base)
        if self.styles.height is not None and self.styles.height.is_auto and len(new) != height:
            self.refresh(layout=True)
            return
        refresh_changed(self, old[3] if old is not None and old[1:3] == (width, base) else None, new, width)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """Lines of the text as built for this width (the flow packs fields to the width)."""
        return len(self._wrapped(width))

    def relayout_if_resized(self) -> None:
        """Repaint; and lay the screen out again only if the text's height changed (a layout pass
        re-renders every widget, so a tick that changes no height should not cost one)."""
        if not self.is_mounted or self.styles.height is None or not self.styles.height.is_auto:
            return
        width = self.content_size.width
        if width and self.get_content_height(self.size, self.size, width) != self.content_size.height:
            self.refresh(layout=True)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._built = None  # component colours may have changed
        self._on = None

    def style_of(self, name: str) -> Style:
        """A component class's style, cached until the styles change (a theme, a class toggled).

        The full style, not the partial one: Textual resolves an ``auto`` or alpha colour
        (``$text-muted`` is "auto 60%") against the widget's background only in the full style;
        the partial one drops the alpha and reads the auto colour against black, which drew
        labels white on the light themes' grey."""
        return self.component_style(name)

    def load_style(self, pct: float | None) -> Style:
        return load_style(self, pct)

    def field(self, label: str, value: str, *rest: str | tuple[str, Style]) -> Text:
        """ "label value ...": the label dim, the value emphasised, extra pieces as given."""
        text = Text.assemble((label + " " if label else "", self.style_of("panel--label")), (value, self.style_of("panel--value")))
        for piece in rest:
            text.append(piece) if isinstance(piece, str) else text.append(*piece)
        return text

    def item(self, label: str, value: str, *rest: str | tuple[str, Style]) -> Item:
        """``field`` as pieces: "label value ...", the label dim, the value emphasised."""
        return field_item(self, label, value, *rest)


def wrap(text: Text, console: Console, width: int) -> list[Text]:
    """``text.wrap(console, width)``: its lines split at newlines where each already fits, has no
    tab and the text no justification (what ``flow`` builds), which is what ``wrap`` would give;
    ``wrap`` itself otherwise. ``wrap`` divides, justifies and truncates every line: ~300 us
    for a GPU panel's text, against ~35 us to split it, every frame."""
    lines = text.split("\n", allow_blank=True)
    if text.justify in (None, "default") and all(line.cell_len <= width and "\t" not in line.plain for line in lines):
        return list(lines)
    return list(text.wrap(console, width))


def _same_line(a: Text, b: Text) -> bool:
    """Whether two lines draw the same (Text's own == leaves out the text-wide style)."""
    return a.style == b.style and a == b


def refresh_changed(widget: Widget, old: list[Strip] | None, new: list[Strip], width: int | None = None) -> None:
    """Repaint the lines of ``widget``'s content (``width`` wide: its content's width if not
    given) where ``new`` differs from ``old`` (all of it when there is no ``old`` of the same
    length)."""
    if old is None or len(old) != len(new):
        widget.refresh()
        return
    if width is None:
        width = widget.content_size.width
    changed = [Region(0, y, width, 1) for y, (a, b) in enumerate(zip(old, new)) if a is not b and a != b]
    if changed:
        widget.refresh(*changed)


def flow(blocks: Iterable[Iterable[Text]], width: int) -> Text:
    """Each block's fields on their own line(s), packed left to right with GAP while they fit."""
    out = Text()
    for block in blocks:
        line = Text()
        for one in block:
            if line.cell_len and line.cell_len + len(GAP) + one.cell_len > width:
                out.append_text(line)
                out.append("\n")
                line = Text()
            if line.cell_len:
                line.append(GAP)
            line.append_text(one)
        if line.cell_len:
            out.append_text(line)
            out.append("\n")
    out.rstrip()
    return out


def as_text(line: Line) -> Text:
    """The Rich Text of these pieces (each styled piece a span, as ``Text.assemble`` makes)."""
    return Text.assemble(*((text, style) if style else text for text, style in line))


def line_strip(line: Line, width: int, base: Style, on: dict[Style, Style] | None = None, used: int | None = None) -> Strip:
    """A line that fits as a strip ``width`` wide on ``base``: the segments Rich renders for its
    Text, without the Text (a segment per styled piece, one per run of unstyled ones, then the
    padding), which is what ``Text.render`` + ``Segment.apply_style`` + ``adjust_line_length``
    give. ``on`` keeps ``base + style`` per style (Rich's own cache of ``+`` is shared by all
    of Textual, and missed: ~10 us a piece); ``used``: the line's cells, where known."""
    if on is None:
        on = {}
    if used is None:
        used = cells(line)
    segments: list[Segment] = []
    run = ""
    for text, style in line:
        if style:
            if run:
                segments.append(Segment(run, base))
                run = ""
            combined = on.get(style)
            if combined is None:
                combined = on[style] = base + style
            segments.append(Segment(text, combined))
        else:
            run += text
    if run or not segments:  # (a blank line is an empty segment, as Rich renders one)
        segments.append(Segment(run, base))
    if used < width:
        segments.append(Segment(" " * (width - used), base))
    return Strip(segments, width)


def _same_drawn(a: Drawn, b: Drawn) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        return a == b
    return _same_line(a, b)
