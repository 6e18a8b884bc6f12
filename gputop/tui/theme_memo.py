"""An App base that looks its current theme up once per theme, not once per painted line.

Textual asks ``App.current_theme`` for every line it paints (``ansi_theme`` for the colour
filter, twice a line) and for console options, and each ask builds a copy of the dict of every
registered theme (``available_themes``) to find one by name: ~80 asks a frame at 160x50, a few
per cent of a 1 Hz frame by py-spy. The answer only changes when the theme's name does or a theme
is (un)registered, so it is kept until then.
"""

from __future__ import annotations

from textual.app import App, ReturnType
from textual.theme import Theme


class ThemeMemoApp(App[ReturnType]):
    """``App`` with ``current_theme`` remembered for the theme name it was found for."""

    _theme_memo: tuple[str, Theme] | None = None

    @property
    def current_theme(self) -> Theme:
        name = self.theme
        memo = self._theme_memo
        if memo is None or memo[0] != name:
            memo = self._theme_memo = (name, super().current_theme)
        return memo[1]

    def register_theme(self, theme: Theme) -> None:
        self._theme_memo = None
        super().register_theme(theme)

    def unregister_theme(self, theme_name: str) -> None:
        self._theme_memo = None
        super().unregister_theme(theme_name)
