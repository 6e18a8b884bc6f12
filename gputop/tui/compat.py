"""Every use gputop makes of a Textual private name, in one place (Textual's underscore modules
and attributes "may change without notice"). Read from Textual 8.2 (pyproject pins ``<9``);
upgrading Textual is a change of that pin and a run of tests/test_compat.py, which checks each
name in ``PRIVATES`` against the installed Textual and fails naming the one that moved.

Each is either required (``loud``: without it gputop would misbehave quietly, drawing on the
wrong stream, hanging on a dead terminal, exiting 0 after a failure; a view refuses to start
instead, raising ``CompatError`` that names it) or feature-detected (a fallback to Textual's own
way, which costs only time or looks: its key loop, no kept lines, its footer layout).
No Rich private is used.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TextIO, cast

from textual.app import App
from textual.drivers.linux_driver import LinuxDriver
from textual.reactive import Reactive
from textual.widget import Widget

TEXTUAL_READ = "8.2"  # the Textual these names were read from


@dataclass(frozen=True)
class Private:
    """One private name: where it lives (``module:Class`` or ``module``), what gputop relies on,
    whether a view refuses to start without it, and for a method its parameters as read."""

    where: str
    name: str
    relies: str
    loud: bool
    params: tuple[str, ...] | None = None  # a method's (self excepted); None: not a method


_LINUX = "textual.drivers.linux_driver:LinuxDriver"
_DRIVER = "textual.driver:Driver"
PRIVATES: tuple[Private, ...] = (
    Private(_LINUX, "_file", "the stream its writer thread is started on at start_application_mode", True),
    Private(_LINUX, "_writer_thread", "None, or the WriterThread start_application_mode started (alive while it draws)", True),
    Private(_LINUX, "_must_signal_resume", "set, the next start_application_mode posts SignalResume", True),
    Private(_LINUX, "_sigtstp_application", "the SIGTSTP handler __init__ installs (suspends, then SIGSTOP)", True, ("_",)),
    Private(_LINUX, "_sigcont_application", "the SIGCONT handler __init__ installs (resumes application mode)", True, ("_",)),
    Private(_DRIVER, "_app", "the app the driver runs", True),
    Private(_DRIVER, "_loop", "the app's event loop", True),
    Private(_DRIVER, "_debug", "the debug flag the key parser is made with", True),
    Private("textual._xterm_parser", "XTermParser", "XTermParser(debug): feed(text) and tick() yield key messages", False),
    Private("textual._parser", "ParseError", "what feed('') may raise at the end of input", False),
    Private("textual.app:App", "_print_error_renderables", "called once as run() ends, to print _exit_renderables", True, ()),
    Private("textual.app:App", "_exit_renderables", "the errors the app ended on (a list; empty: none)", True),
    Private(
        "textual.message_pump:MessagePump",
        "_mounted_event",
        "an asyncio.Event the app sets once it has composed and mounted its screen (failed or not)",
        True,
    ),
    Private("textual.widget:Widget", "_styles_cache", "the widget's StylesCache", False),
    Private("textual._styles_cache:StylesCache", "_dirty_lines", "the set of lines refresh marked for repainting", False),
    Private("textual.widgets._footer:FooterKey", "compact", "a Reactive whose watcher sets the -compact class", False),
    Private("textual.widgets._footer:FooterKey", "key_display", "the key as drawn (with description and action)", False),
    Private("textual.widgets._footer", "-command-palette", "the class Footer.compose gives the palette's key", False),
)


class CompatError(RuntimeError):
    """A private name gputop needs is not in the installed Textual."""


def _moved(names: Iterable[str]) -> CompatError:
    version = importlib.metadata.version("textual")
    return CompatError(
        f"gputop needs Textual's {', '.join(names)}, which Textual {version} does not have "
        f"(read from Textual {TEXTUAL_READ}: see gputop/tui/compat.py)"
    )


def require(obj: object, *names: str) -> None:
    """Raise ``CompatError`` naming each of ``names`` that ``obj`` lacks."""
    missing = [name for name in names if not hasattr(obj, name)]
    if missing:
        raise _moved(missing)


# -- the terminal driver ------------------------------------------------------------------------


class HookedDriver(LinuxDriver):
    """Textual's Linux driver with its privates behind names of gputop's: ``suspending`` runs
    before Textual's Ctrl+Z handling, ``resuming`` decides whether a SIGCONT resumes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        require(self, "_file", "_writer_thread", "_must_signal_resume", "_app", "_loop", "_debug")

    def suspending(self) -> None:
        """Ctrl+Z: before Textual suspends application mode and stops the process."""

    def resuming(self) -> bool:
        """SIGCONT: whether Textual resumes application mode."""
        return True

    def resumed(self) -> None:
        """After a SIGCONT that ``resuming`` let resume."""

    def _sigtstp_application(self, *args: Any) -> None:
        self.suspending()
        super()._sigtstp_application(*args)

    def _sigcont_application(self, *args: Any) -> None:
        if self.resuming():
            super()._sigcont_application(*args)
            self.resumed()

    def drawn_on(self) -> TextIO:
        """The stream the writer thread draws on (LinuxDriver's: ``sys.__stderr__``)."""
        return cast(TextIO, self._file)

    def draw_on(self, stream: Any) -> None:
        """Have the writer thread draw on ``stream`` (anything with write, flush and fileno)."""
        self._file = stream

    def drawing(self) -> bool:
        """Whether a writer thread runs (a new one each time application mode starts)."""
        writer = self._writer_thread
        return writer is not None and writer.is_alive()

    def repaint_at_next_start(self) -> None:
        """The next start of application mode tells the app it resumed (which repaints it all)."""
        self._must_signal_resume = True

    @property
    def owner(self) -> App[Any]:
        return self._app

    def call_in_loop(self, callback: Callable[[], object]) -> None:
        """``callback`` in the app's event loop, from any thread (RuntimeError: it is closed)."""
        self._loop.call_soon_threadsafe(callback)

    def key_parser(self) -> tuple[Any, type[Exception]] | None:
        """Textual's key parser for this driver and what its last feed may raise, or None where
        they moved (the caller then runs Textual's own key loop)."""
        try:
            from textual._parser import ParseError
            from textual._xterm_parser import XTermParser
        except ImportError:
            return None
        return XTermParser(self._debug), ParseError


# -- the app ------------------------------------------------------------------------------------


class ErrorsNoted:
    """An app (mixed in before Textual's App) that notes whether it ended on an error: Textual
    sets a failing ``return_code`` for an exception in a handler, but not for ``panic`` (its key
    thread died), and a later ``exit()`` (a stop signal) sets it back to 0."""

    failed = False

    def _print_error_renderables(self) -> None:
        if self._exit_renderables:  # type: ignore[attr-defined]
            self.failed = True
        super()._print_error_renderables()  # type: ignore[misc]


def require_app() -> None:
    """Raise ``CompatError`` where App lacks what ``ErrorsNoted`` and ``once_mounted`` use."""
    require(App, "_print_error_renderables", "_mounted_event")


_waiting: set[asyncio.Task[None]] = set()  # (the loop keeps only a weak reference to a task)


def once_mounted(app: App[Any], callback: Callable[[], object]) -> None:
    """``callback()`` once ``app`` has composed and mounted its screen (at once if it has), in its
    event loop, from which this is called. An exit asked for while the app composes is carried
    out meanwhile: the screen's widgets are removed under their own on_mount (NoMatches), and
    the app ends failed (exit status 1) where it was asked to stop cleanly."""
    mounted: asyncio.Event = app._mounted_event
    if mounted.is_set():
        callback()
        return

    async def wait() -> None:
        await mounted.wait()
        callback()

    _waiting.add(task := asyncio.get_running_loop().create_task(wait()))
    task.add_done_callback(_waiting.discard)


# -- widgets ------------------------------------------------------------------------------------


def dirty_lines(widget: Widget) -> set[int] | None:
    """The lines Textual has marked for repainting in ``widget``'s styles cache; None where
    that set is not there (the caller keeps nothing)."""
    cache = getattr(widget, "_styles_cache", None)
    dirty = getattr(cache, "_dirty_lines", None)
    return dirty if isinstance(dirty, set) else None


PALETTE_CLASS = "-command-palette"  # the class Footer.compose gives the command palette's key
FOOTER_KEY_FIELDS = ("key_display", "description", "action")  # FooterKey's (not exported)


def is_footer_key(widget: Widget) -> bool:
    """Whether ``widget`` carries what a FooterKey does (where not, the footer is Textual's own)."""
    return all(hasattr(widget, name) for name in FOOTER_KEY_FIELDS)


def born_compact(key: Widget, compact: bool) -> None:
    """Give a new footer key, before it mounts, the compact state its data binding to the footer
    is about to set: Textual's keys are born compact and their watcher sets the class, so each
    key cost two style updates at every compose (add "-compact", then remove it), ~60 at
    start-up. Where the key has no such reactive, nothing is done (those updates happen)."""
    field = getattr(type(key), "compact", None)
    if isinstance(field, Reactive):
        key.set_reactive(field, compact)
        key.set_class(compact, "-compact", update=False)
