"""The terminal a full-screen view draws on: which stream, and never outliving the terminal.

``TerminalDriver`` is the driver every gputop app runs with (``terminal_driver``): Textual's Linux
driver, with these changes (the Textual privates they touch are in ``gputop.tui.compat``).

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
from textual.constants import ESCAPE_DELAY
from textual.drivers.linux_driver import LinuxDriver

from gputop import console
from gputop.signals import Interrupted, StopSignals
from gputop.tui import compat, is_tty

if TYPE_CHECKING:
    from textual.app import App
    from textual.driver import Driver

log = logging.getLogger(__name__)

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


class TerminalDriver(compat.HookedDriver):
    """Textual's Linux driver, drawing on a guarded stream and watching its terminal (see the
    module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        drawn_on = self.drawn_on()
        if not is_tty(sys.__stderr__) and is_tty(sys.__stdout__) and sys.__stdout__ is not None:
            drawn_on = sys.__stdout__
        self.draw_on(GuardedStream(drawn_on, self._terminal_gone))  # what the writer thread draws on
        self._gone = threading.Event()
        self._suspended = False
        self._watcher: threading.Thread | None = None
        self._wake_r = self._wake_w = -1  # the key thread's wake pipe, while application mode runs
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
        parser = self.key_parser()  # Textual's own parser; another Textual's loop where it moved
        if parser is None:
            return super().run_input_thread()
        KeyLoop(self, self._wake_r, *parser).run()

    def close(self) -> None:
        super().close()
        fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def suspending(self) -> None:
        self._suspended = True

    def resuming(self) -> bool:
        return self._suspended and not self._gone.is_set() and os.isatty(self.fileno)

    def resumed(self) -> None:
        # after `bg` Textual's restart gives up (the terminal is not ours to draw on) and the
        # process stops again: still suspended, so that `fg`'s SIGCONT resumes it
        self._suspended = not self.drawing()

    def write(self, data: str) -> None:
        # to a writer thread that has stopped (suspended, or a resume that gave up), a write
        # would wait in its queue, and the 31st block the app for ever: dropped instead (the
        # whole screen is repainted on resume)
        if self.drawing():
            super().write(data)

    def start_application_mode(self) -> None:
        if self._wake_r < 0:  # (Textual closes the driver at Ctrl+Z and starts it again at fg)
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        super().start_application_mode()  # type: ignore[no-untyped-call]
        # started in the background (gputop &), Textual's first tcsetattr stopped the process
        # and its start gave up; an fg that came meanwhile (its SIGCONT handled inside that
        # start, before it gave up) would otherwise leave it waiting for another
        for _ in range(FG_RETRIES):
            if self.drawing() or not console.is_foreground(self.fileno):
                break
            super().start_application_mode()  # type: ignore[no-untyped-call]
        if not self.drawing():  # in the background still: the next fg (Ctrl+Z's path: resuming) starts it
            self._suspended = True
            self.repaint_at_next_start()
        if self._watcher is None:  # once: start_application_mode runs again after Ctrl+Z
            self._watcher = threading.Thread(target=self._watch, name="gputop-terminal", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        main = threading.main_thread()
        while main.is_alive():
            main.join(WATCH_S)
            if self.drawing() and not os.isatty(self.fileno):  # not while suspended
                self._terminal_gone("it is no longer a terminal")
        self.exit_event.set()  # the key thread's loop ends, and the interpreter can exit

    def _terminal_gone(self, why: str) -> None:
        if self._gone.is_set():
            return
        self._gone.set()
        log.warning("the terminal is gone (%s): stopping", why)
        try:
            self.call_in_loop(self.owner.exit)
        except RuntimeError:  # the loop is closed: the app has ended already
            pass


class KeyLoop:
    """The key thread of ``TerminalDriver``: Textual's loop, but asleep until a key or a wake
    (see the module's docstring)."""

    def __init__(self, driver: TerminalDriver, wake_fd: int, parser: Any, parse_error: type[Exception]) -> None:
        self.driver = driver
        self.wake_fd = wake_fd
        self.parser = parser
        self.parse_error = parse_error
        self.decode = getincrementaldecoder("utf-8")().decode
        self.selector = selectors.SelectSelector()  # (as Textual's: macOS's kqueue cannot watch a tty)
        self.timeout: float | None = None  # None: nothing pending, sleep until a key or a wake
        self.awake_until = 0.0  # after a key, rounds of at most ESCAPE_DELAY until then

    def run(self) -> None:
        driver = self.driver
        self.selector.register(driver.fileno, selectors.EVENT_READ)
        self.selector.register(self.wake_fd, selectors.EVENT_READ)
        try:
            while not driver.exit_event.is_set():
                keyed = self._read(self.selector.select(self.timeout))
                for event in self.parser.tick():  # a lone Escape, once ESCAPE_DELAY has passed
                    driver.process_message(event)
                now = time.monotonic()
                if keyed:
                    self.awake_until = now + QUIET_ROUNDS * ESCAPE_DELAY
                self.timeout = None if now >= self.awake_until else min(ESCAPE_DELAY, self.awake_until - now)
        finally:
            self.selector.close()
            try:
                for _ in self.parser.feed(""):  # end of input (what the parser held is dropped, as Textual does)
                    pass
            except (EOFError, self.parse_error):
                pass

    def _read(self, ready: list[tuple[selectors.SelectorKey, int]]) -> bool:
        """Read what ``select`` said is there; whether a key came."""
        keyed = False
        for key, _ in ready:
            if key.fd == self.wake_fd:
                _drain(key.fd)
            elif self._read_keys():
                keyed = True
        return keyed

    def _read_keys(self) -> bool:
        fd = self.driver.fileno
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:  # (a non-blocking stdin said readable, then had nothing)
            return False
        except OSError:  # (EIO: hung up)
            data = b""
        if not data:  # end of input (a hung-up terminal): the watcher or a write ends the app
            self.selector.unregister(fd)
            return False
        text = self.decode(data)
        if text:  # ("": a character cut between two reads; an empty feed is end-of-file)
            for event in self.parser.feed(text):
                self.driver.process_message(event)
        return True


def terminal_driver(default: type[Driver]) -> type[Driver]:
    """The driver to run an app with: ``TerminalDriver`` in place of Textual's Linux driver;
    another platform's driver, or a test's headless one, as it is."""
    compat.require_app()
    if not issubclass(default, LinuxDriver):
        return default
    if default is LinuxDriver:
        return TerminalDriver
    return type("TerminalDriver", (TerminalDriver, default), {})  # (TEXTUAL_DRIVER named a subclass)


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
        loop.call_soon_threadsafe(compat.once_mounted, app, app.exit)  # (not while it composes)

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
