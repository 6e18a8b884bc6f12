"""The workload's process: spawned in its own session and process group, reaped, and stopped as
a group. The only module of gputop that imports ``subprocess``.

On Linux the child asks the kernel for SIGTERM when its parent goes away (PR_SET_PDEATHSIG), so
even a SIGKILLed gputop leaves no orphan behind. The kernel sends that signal when the *thread*
that forked the child exits, so spawn from the main thread (or a thread that lives as long as
gputop). gputop also makes itself a child subreaper, so a grandchild orphaned by the workload
comes back to it and is reaped (where init does not reap, as in some containers, it would
otherwise stay a zombie in the group).

PR_SET_PDEATHSIG reaches the workload's main process only: its own children (DataLoader
workers, a ``multiprocessing.Process``, a ``subprocess.Popen``) would outlive a SIGKILLed gputop
(the OOM killer's way). So a watchdog, a ``/bin/sh`` in a session of its own, waits on a pipe
that only gputop holds: gputop says "done" once the group is gone; end of file without it means
gputop died, and the watchdog ends the group (SIGTERM, SIGKILL after the grace).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from typing import IO, Callable, Mapping, Sequence

from gputop.workload.targets import WorkloadError

_PR_SET_PDEATHSIG = 1
WATCHDOG_GRACE_S = 3.0  # after gputop's death, the group's SIGTERM before its SIGKILL
_PR_SET_CHILD_SUBREAPER = 36

Prctl = Callable[[int, int, int, int, int], int]
Child = subprocess.Popen[bytes]  # the main process of a workload


def _libc_prctl() -> Prctl | None:
    """libc's prctl, loaded in the parent: nothing may be dlopen()ed between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl: Prctl = libc.prctl
        return prctl
    except (OSError, AttributeError):
        return None


def _child_setup(prctl: Prctl | None, parent: int) -> Callable[[], None]:
    """The preexec function: runs between fork and exec, so the prctl call and little else. The
    child has inherited gputop's Python SIGTERM handler (record's StopSignals, the TUI's), which
    would swallow the parent-death signal until exec: SIGTERM goes back to its default first."""
    sigterm = int(signal.SIGTERM)

    def in_child() -> None:
        signal.signal(sigterm, signal.SIG_DFL)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    return in_child


# $0: the group, $1: the grace in seconds. A line read is gputop's "done"; end of file is its death.
_WATCHDOG = 'read -r line || { kill -TERM "-$0"; sleep "$1"; kill -KILL "-$0"; } 2>/dev/null'


class _Watchdog:
    """The shell that ends the group if gputop dies first (see the module's docstring)."""

    def __init__(self, pgid: int, grace_s: float) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        with contextlib.suppress(OSError):  # no /bin/sh: the main process still gets PDEATHSIG
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", _WATCHDOG, str(pgid), f"{grace_s:g}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    def release(self) -> None:
        """The group is gone: the watchdog leaves without a signal (its pgid may be reused now)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.write(b"done\n")
            proc.stdin.close()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ProcessGroup:
    """One child process leading its own group, with its stdout and stderr piped to us."""

    def __init__(self) -> None:
        self.proc: Child | None = None
        # the whole group was seen gone: its pgid may be handed to an unrelated group from now
        # on, so it is never signalled again
        self.gone = False
        self._watchdog: _Watchdog | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    @property
    def stdout(self) -> IO[bytes] | None:
        return None if self.proc is None else self.proc.stdout

    @property
    def stderr(self) -> IO[bytes] | None:
        return None if self.proc is None else self.proc.stderr

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None, pass_fds: Sequence[int] = ()) -> None:
        """Start the child; WorkloadError (one line) if it cannot be executed."""
        prctl = _libc_prctl()
        if prctl is not None:  # orphaned grandchildren come back to us, to be reaped
            prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=tuple(pass_fds),
                start_new_session=True,
                preexec_fn=_child_setup(prctl, os.getpid()),
                env=dict(env),
                cwd=cwd,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise WorkloadError(f"cannot start {' '.join(argv[:3])}: {reason}") from None
        self._watchdog = _Watchdog(self.proc.pid, WATCHDOG_GRACE_S)

    def poll(self) -> int | None:
        """The main process's exit status once it has exited (reaping it), else None."""
        return None if self.proc is None else self.proc.poll()

    def reap(self) -> None:
        """Reap members of the group that were orphaned and came back to us."""
        pgid = self.pid  # start_new_session: the child leads its own group
        if pgid is None:
            return
        while True:
            try:
                pid, _ = os.waitpid(-pgid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def alive(self) -> bool:
        """Whether any process of the group is left."""
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def note_gone(self) -> None:
        """Look once more: an empty group is never signalled again."""
        self.gone = self.gone or not self.alive()
        if self.gone and self._watchdog is not None:
            self._watchdog.release()

    def signal(self, sig: int) -> None:
        if self.gone or self.pid is None:  # the pgid is no longer the workload's
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def wait(self, timeout_s: float) -> bool:
        """Wait until the main process has exited and the group is empty; True if it did.
        Group members are reaped only once Popen has reaped the main process (waitpid(-pgid)
        would otherwise take its exit status away from Popen)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                self.reap()
                if not self.alive():
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def terminate(self, grace_s: float) -> None:
        """SIGTERM to the whole group, SIGKILL after ``grace_s`` if anything of it is left."""
        self.signal(signal.SIGTERM)
        if not self.wait(grace_s):
            self.signal(signal.SIGKILL)
            if self.proc is not None:
                self.proc.wait()
            self.wait(2.0)
