"""The terminal a full-screen view draws on: which stream, and never outliving the terminal.

``terminal_driver(default)`` is the driver class every gputop app runs with: Textual's Linux
driver, with these changes.

* It draws on stdout when stderr is not a terminal. Textual draws on stderr (so that an app can
  print a result on stdout), so ``gputop 2>err.log`` drew the whole screen into the file and left
  the terminal blank.
* It notices when the terminal is gone: a window closed, ``tmux kill-server``, an ssh session
  dropped, with or without a SIGHUP reaching gputop (a process in a session of its own gets
  none). On a hung-up terminal a write fails with EIO and a read returns end-of-file at once,
  every time. Left to itself, Textual's writer thread died on the first failed write, the app
  then blocked for ever on its full write queue, and the key thread, whose select kept saying
  "readable", spun at 100 % of a core. Here a failed write is dropped, and a failed write or a
  terminal that is no longer a tty (checked every ``WATCH_S``) asks the app to exit, as ``q``
  does: the workload is stopped and a recording closed on the way out.
* Started in the background (``gputop &``), it starts again at ``fg``: Textual's start gave up
  when its first terminal call stopped the process, and the SIGCONT of an ``fg`` came while it
  was giving up (the view waited for ever, drawing nothing).
* It resumes only what Ctrl+Z suspended. Textual's driver restarts its application mode on every
  SIGCONT, and the kernel sends one with the SIGHUP of a hang-up: a second writer and key thread
  were started on the dead terminal while the app was stopping, and the restart, outside the
  event loop by then, raised RuntimeError (exit status 1).
* A write is dropped while no writer thread runs (suspended, or a resume given up after ``bg``):
  queued to a stopped writer, the 31st blocked the app for ever.
* The key thread never outlives the main thread. It is not a daemon thread, and it stops only
  when the driver stops; a stop signal raised where Textual could not stop its driver left the
  interpreter waiting on it for ever after ``main`` had returned. A watcher thread (a daemon)
  sets the key thread's exit event once the main thread has ended.
* Where gputop.cli's first frame (gputop.firstframe) is on the terminal, it does not switch to
  the alternate screen again at its first start: the screen is on it already, and xterm and VTE
  clear it at every ``?1049h``, which blanked that frame until the app's first paint.
* The key thread sleeps until a key comes. Textual's woke every 0.1 s (``select(0.1)``) to look
  at its exit event and at the key parser's escape timeout: ten wakes a second, about a sixth of
  the live view's CPU at 1 Hz (benchmarks/README.md). Here setting the exit event wakes it
  (through a pipe), and it waits with a timeout only while a key sequence may be pending, as
  long as a lone Escape takes to report (``ESCDELAY``). A terminal that hangs up says
  end-of-file at once, every time: it is no longer read from, rather than spun on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import selectors
import sys
import threading
import time
from codecs import getincrementaldecoder
from typing import TYPE_CHECKING, Any, Callable, TextIO

from textual.binding import Binding

from gputop import console
from gputop.signals import Interrupted, StopSignals
from gputop.tui import is_tty

if TYPE_CHECKING:
    from textual.app import App
    from textual.driver import Driver

log = logging.getLogger(__name__)

ALTERNATE_SCREEN = "\x1b[?1049h"
FG_RETRIES = 3  # starts tried again at once where a start in the background gave up and gputop is in front now
WATCH_S = 1.0  # how often the watcher looks at the terminal: one ioctl a second
QUIET_ROUNDS = 2  # after a key, the key thread wakes every ESCAPE_DELAY for this many of them, then sleeps


class WakingEvent(threading.Event):
    """An Event whose ``set`` also calls ``wake`` (writes to the pipe the key thread selects on)."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake()


class GuardedStream:
    """The stream Textual's writer thread draws on, where a failed write (EIO on a hung-up
    terminal, EPIPE) is dropped and reported once to ``on_gone`` instead of ending the thread."""

    def __init__(self, stream: TextIO, on_gone: Callable[[str], None]) -> None:
        self._stream = stream
        self._on_gone = on_gone

    def write(self, text: str) -> None:
        try:
            self._stream.write(text)
        except (OSError, ValueError) as exc:
            self._on_gone(f"writing to it failed: {exc}")

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._on_gone(f"writing to it failed: {exc}")

    def fileno(self) -> int:
        return self._stream.fileno()


def terminal_driver(default: type[Driver]) -> type[Driver]:
    """The driver to run an app with (see the module's docstring); another platform's driver,
    or a test's headless one, as it is."""
    from textual.drivers.linux_driver import LinuxDriver

    if not issubclass(default, LinuxDriver):
        return default
    to_stdout = not is_tty(sys.__stderr__) and is_tty(sys.__stdout__)

    class TerminalDriver(default):  # type: ignore[misc,valid-type]
        """``default``, drawing on a guarded stream and watching its terminal."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            drawn_on: TextIO = self._file  # type: ignore[has-type]  # LinuxDriver's: sys.__stderr__
            if to_stdout and sys.__stdout__ is not None:
                drawn_on = sys.__stdout__
            self._file = GuardedStream(drawn_on, self._terminal_gone)  # what the writer thread draws on
            self._gone = threading.Event()
            self._suspended = False
            self._watcher: threading.Thread | None = None
            self._wake_r = self._wake_w = -1  # the key thread's wake pipe, while application mode runs
            self._alternate_on = False  # already on the alternate screen: Textual's switch to it left out
            self._took = False  # the app has had the terminal (its driver's writer ran)
            self.exit_event = WakingEvent(self._wake_input)

        def _wake_input(self) -> None:
            if self._wake_w < 0:  # closed: no key thread left to wake
                return
            try:
                os.write(self._wake_w, b"w")
            except OSError:  # full: it is awake anyway
                pass

        def run_input_thread(self) -> None:
            """Read keys until the exit event is set, asleep in between (see the module's docstring)."""
            try:  # Textual's own parser and escape delay; another Textual's loop where they moved
                from textual._parser import ParseError
                from textual._xterm_parser import XTermParser
                from textual.constants import ESCAPE_DELAY
            except ImportError:
                return super().run_input_thread()  # type: ignore[no-any-return]
            parser = XTermParser(self._debug)
            decode = getincrementaldecoder("utf-8")().decode
            selector = selectors.SelectSelector()  # (as Textual's: macOS's kqueue cannot watch a tty)
            selector.register(self.fileno, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            timeout: float | None = None  # None: nothing pending, sleep until a key or a wake
            awake_until = 0.0  # after a key, rounds of at most ESCAPE_DELAY until then
            try:
                while not self.exit_event.is_set():
                    keyed = False
                    for key, _ in selector.select(timeout):
                        if key.fd == self._wake_r:
                            _drain(self._wake_r)
                            continue
                        try:
                            data = os.read(self.fileno, 4096)
                        except BlockingIOError:  # (a non-blocking stdin said readable, then had nothing)
                            continue
                        except OSError:  # (EIO: hung up)
                            data = b""
                        if not data:  # end of input (a hung-up terminal): the watcher or a write ends the app
                            selector.unregister(self.fileno)
                            continue
                        keyed = True
                        text = decode(data)
                        if text:  # ("": a character cut between two reads; an empty feed is end-of-file)
                            for event in parser.feed(text):
                                self.process_message(event)
                    for event in parser.tick():  # a lone Escape, once ESCAPE_DELAY has passed
                        self.process_message(event)
                    now = time.monotonic()
                    if keyed:
                        awake_until = now + QUIET_ROUNDS * ESCAPE_DELAY
                    timeout = None if now >= awake_until else min(ESCAPE_DELAY, awake_until - now)
            finally:
                selector.close()
                try:
                    for _ in parser.feed(""):  # end of input (what the parser held is dropped, as Textual does)
                        pass
                except (EOFError, ParseError):
                    pass

        def close(self) -> None:
            super().close()
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
            for fd in fds:
                if fd >= 0:
                    os.close(fd)

        def _sigtstp_application(self, *args: Any) -> None:
            self._suspended = True
            super()._sigtstp_application(*args)

        def _sigcont_application(self, *args: Any) -> None:
            if self._suspended and not self._gone.is_set() and os.isatty(self.fileno):
                super()._sigcont_application(*args)
                # after `bg` Textual's restart gives up (the terminal is not ours to draw on) and
                # the process stops again: still suspended, so that `fg`'s SIGCONT resumes it
                self._suspended = not self._drawing()

        def write(self, data: str) -> None:
            # to a writer thread that has stopped (suspended, or a resume that gave up), a write
            # would wait in its queue, and the 31st block the app for ever: dropped instead (the
            # whole screen is repainted on resume)
            if self._alternate_on and data == ALTERNATE_SCREEN:  # (LinuxDriver: a write of its own)
                self._alternate_on = False
                return
            if self._drawing():
                super().write(data)

        def _drawing(self) -> bool:
            writer = self._writer_thread  # LinuxDriver's: a new one each time application mode starts
            return writer is not None and writer.is_alive()

        def start_application_mode(self) -> None:
            # gputop.cli's first frame (gputop.firstframe) may have put the terminal on the
            # alternate screen already: until the app has drawn once, Textual's own switch is left
            # out (xterm and VTE clear the screen at it: a blank flash)
            self._alternate_on = not self._took and bool(getattr(self._app, "first_frame_drawn", False))
            if self._wake_r < 0:  # (Textual closes the driver at Ctrl+Z and starts it again at fg)
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_r, False)
                os.set_blocking(self._wake_w, False)
            super().start_application_mode()
            # started in the background (gputop &), Textual's first tcsetattr stopped the process
            # and its start gave up; an fg that came meanwhile (its SIGCONT handled inside that
            # start, before it gave up) would otherwise leave it waiting for another
            for _ in range(FG_RETRIES):
                if self._drawing() or not console.is_foreground(self.fileno):
                    break
                super().start_application_mode()
            if self._drawing():  # from here the terminal is the app's
                if not self._took:
                    self._took = True
                    took = getattr(self._app, "took_terminal", None)
                    if callable(took):
                        took()
            else:  # in the background still: the next fg (Ctrl+Z's path: _sigcont_application) starts it
                self._suspended = True
                self._must_signal_resume = True  # (and the app then repaints all of it)
            if self._watcher is None:  # once: start_application_mode runs again after Ctrl+Z
                self._watcher = threading.Thread(target=self._watch, name="gputop-terminal", daemon=True)
                self._watcher.start()

        def _watch(self) -> None:
            main = threading.main_thread()
            while main.is_alive():
                main.join(WATCH_S)
                if self._drawing() and not os.isatty(self.fileno):  # not while suspended
                    self._terminal_gone("it is no longer a terminal")
            self.exit_event.set()  # the key thread's loop ends, and the interpreter can exit

        def _terminal_gone(self, why: str) -> None:
            if self._gone.is_set():
                return
            self._gone.set()
            log.warning("the terminal is gone (%s): stopping", why)
            try:
                self._loop.call_soon_threadsafe(self._app.exit)
            except RuntimeError:  # the loop is closed: the app has ended already
                pass

    return TerminalDriver


class ErrorsNoted:
    """An app (mixed in before Textual's App) that notes whether it ended on an error: Textual
    sets a failing ``return_code`` for an exception in a handler, but not for ``panic`` (its key
    thread died), and a later ``exit()`` (a stop signal) sets it back to 0. ``before_errors``
    runs before the errors are printed (gputop.cli gives the normal screen back there, where its
    first frame's alternate screen is still on: an error while Textual gathers its stylesheets is
    printed before its driver starts). Textual 8.x's ``_print_error_renderables``; elsewhere
    nothing is noted."""

    failed = False
    before_errors: Callable[[], None] | None = None

    def _print_error_renderables(self) -> None:
        if getattr(self, "_exit_renderables", None):
            self.failed = True
            if self.before_errors is not None:
                self.before_errors()
        super()._print_error_renderables()  # type: ignore[misc]


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def run_full_screen(app: App[Any], before: Callable[[], object] | None = None) -> bool:
    """Run a full-screen view until q or a stop signal: SIGINT, SIGTERM and SIGHUP (the terminal
    closed) ask it to exit from inside its event loop, as q does; before it runs (``before``,
    e.g. a workload started) or after its loop has ended there is nothing to ask, and the signal
    is raised as Interrupted. Either is the view's clean way out, like q. False if the app
    failed (an error in it: Textual printed its traceback after the screen was given back)."""

    def exit_app(signum: int) -> None:
        try:
            # a signal handler runs in the main thread, inside the loop if one is running there
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise Interrupted(signum) from None
        loop.call_soon_threadsafe(app.exit)

    try:
        with StopSignals(on_first=exit_app):
            if before is not None:
                before()
            app.run()
    except Interrupted:
        pass
    return not app.return_code and not getattr(app, "failed", False)  # (None: it never ran; 1: it failed)


# in every app's BINDINGS: ctrl+z to the shell, as in htop or btop (Textual's action: SIGTSTP)
SUSPEND = Binding("ctrl+z", "suspend_process", "suspend", show=False)
# Ctrl+C quits as in top, htop and nvitop (the docs say so): Textual binds it to a "press ctrl+q"
# notice; priority, so that no focused widget takes it first.
QUIT_KEY = Binding("ctrl+c", "quit", "quit", show=False, priority=True)


def settle_heap() -> None:
    """Collect once, then leave what start-up built out of every later collection.

    A view's start-up leaves ~90,000 objects that live as long as it does (modules, Textual's
    stylesheet and widget tree, caches). Python's collector walks all of them at each oldest-
    generation pass, and each frame allocates enough to run it every few seconds: ~60 ms a pass
    at 160x50, about a sixth of the live view's CPU at 1 Hz (benchmarks/README.md). Frozen
    (``gc.freeze``), they are never walked again; what is made later is collected as usual. Called
    once, a while after the first frame, so the collection (~50 ms, holding the GIL) does not
    hold up the writer thread that puts it on screen. The collector, held off while the view
    started (``gputop.cli``), runs again from here."""
    gc.collect()
    gc.freeze()
    gc.enable()


def repaint_on_resume(app: App[Any]) -> None:
    """Repaint the whole screen after fg. The shell drew over it meanwhile, and Textual repaints
    only what changed since, so the footer and the table headers stayed blank."""
    app.app_resume_signal.subscribe(app, lambda _app: app.screen.refresh(repaint=True, layout=True))
