"""The key footer, fitted to the terminal's width: Textual's Footer, tighter and with fewer keys
where the full row does not fit (``?`` always stays: the help lists every key).

Textual's footer cuts its row at the right edge: at 80 columns the live view read
"... k kill  t th" beside "^p palette". Here, when the keys do not fit in Textual's spacing,
they are drawn compact (one space apart); if that is still too wide, the command palette's key
goes (ctrl+p still opens it), then keys from the end of the row, help excepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar, cast

from textual.widget import Widget
from textual.widgets import Footer

from gputop.tui.compat import PALETTE_CLASS, born_compact, is_footer_key
from gputop.tui.widgets.panel import KeptLines

HELP_ACTION = "help"
# cells a key takes besides its key and description text, as Textual's footer CSS draws it:
# " k kill " (padding 1 either side of the key, 1 after the description), or compact
# "k kill " (one space between, a margin of one after)
SPACING = 3
COMPACT_SPACING = 2
PALETTE_EXTRA = 2  # its left border and right padding


class Key(Protocol):
    """What a footer key (Textual's FooterKey, not exported) carries."""

    key_display: str
    description: str
    action: str


def key_cells(key: Key, compact: bool) -> int:
    return len(key.key_display) + len(key.description) + (COMPACT_SPACING if compact else SPACING)


K = TypeVar("K", bound=Key)


def fit(keys: list[K], palette: K | None, width: int) -> tuple[bool, list[K], bool]:
    """(compact, the keys shown, whether the palette key is shown) for a row ``width`` wide."""
    palette_cells = 0 if palette is None else key_cells(palette, False) + PALETTE_EXTRA
    if sum(key_cells(k, False) for k in keys) + palette_cells <= width:
        return False, keys, palette is not None
    shown = list(keys)
    while sum(key_cells(k, True) for k in shown) > width:
        droppable = [k for k in shown if k.action != HELP_ACTION]
        if not droppable:
            break
        shown.remove(droppable[-1])
    return True, shown, False


class KeyFooter(Footer, KeptLines):
    """``Footer`` that fits its keys to the width it is given (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fitted: tuple[bool, int] | None = None  # (compact, keys shown) as last composed

    def _fit(self) -> tuple[list[Widget], tuple[bool, list[Widget], bool]] | None:
        children = list(super().compose())
        if not all(is_footer_key(c) for c in children):
            return None  # binding groups: Textual's own layout
        keys = [cast(Key, c) for c in children if not c.has_class(PALETTE_CLASS)]
        palette = next((cast(Key, c) for c in children if c.has_class(PALETTE_CLASS)), None)
        compact, shown, with_palette = fit(keys, palette, self.size.width or self.app.size.width)
        return children, (compact, [cast(Widget, k) for k in shown], with_palette)

    def compose(self) -> Iterable[Widget]:
        fitted = self._fit()
        if fitted is None:
            yield from super().compose()
            return
        children, (compact, shown, with_palette) = fitted
        self._fitted = (compact, len(shown))
        self.compact = compact
        for key in shown:
            born_compact(key, compact)
        yield from shown
        if with_palette:
            yield from (c for c in children if c.has_class(PALETTE_CLASS))

    def on_resize(self) -> None:
        """Compose again only where the fit changes (a recompose rebuilds every key)."""
        if self._fitted is None:
            return
        fitted = self._fit()
        if fitted is not None and (fitted[1][0], len(fitted[1][1])) != self._fitted:
            self.call_after_refresh(self.recompose)
