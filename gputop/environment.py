"""Environment: what a command runs with, built once by the CLI and handed to every command
(httpie's ``context.Environment`` is the model): the standard streams and whether each is a
terminal, the clock, the sampler factory, the program's name, and the one way a command says
an error (``gputop CMD: error: ...`` on stderr). Tests build one over fakes with ``of``.

It sits just under the commands (not in the base layer): its sampler factory's type and
default, ``sampler.open_real``, are the pipeline's (imported when first called).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TextIO

from gputop import console
from gputop.exitstatus import ExitStatus

if TYPE_CHECKING:  # (the sampler is imported when a command opens one: asyncio, subprocess, ...)
    from gputop.sampler import SamplerLike


def open_real(process_interval_s: float) -> SamplerLike:
    """The real sources (gputop.sampler.open_real), imported only when a command opens them:
    reading a trace imports no sampling machinery."""
    from gputop.sampler import open_real as real

    return real(process_interval_s)


@dataclass(frozen=True)
class Environment:
    """One command's collaborators. Build with ``Environment.of``, which fills in the process's
    own streams and asks each whether it is a terminal, once."""

    command: str | None  # "record", ...; None: the live view
    stdin: TextIO | None
    stdout: TextIO
    stderr: TextIO
    stdin_isatty: bool
    stdout_isatty: bool
    stderr_isatty: bool
    clock: Callable[[], float]  # monotonic seconds: durations, progress
    open_sampler: Callable[[float], SamplerLike]  # the real sources (process table interval, s)
    sampler: SamplerLike | None = None  # a sampler used as given, never closed: the caller's
    program: str = "gputop"

    @classmethod
    def of(
        cls,
        command: str | None = None,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        open_sampler: Callable[[float], SamplerLike] = open_real,
        sampler: SamplerLike | None = None,
    ) -> Environment:
        """The environment of ``command``: the process's streams where none are given."""
        stdin = sys.stdin if stdin is None else stdin
        stdout = sys.stdout if stdout is None else stdout
        stderr = sys.stderr if stderr is None else stderr
        return cls(
            command,
            stdin,
            stdout,
            stderr,
            console.isatty(stdin),
            console.isatty(stdout),
            console.isatty(stderr),
            clock,
            open_sampler,
            sampler,
        )

    @property
    def prog(self) -> str:
        """``gputop record``: how the command names itself in what it writes."""
        return self.program if self.command is None else f"{self.program} {self.command}"

    def error(self, message: str, status: ExitStatus = ExitStatus.FAILURE) -> ExitStatus:
        """``gputop CMD: error: MESSAGE`` on stderr, one line; ``status``, for the command to return."""
        self.stderr.write(f"{self.prog}: error: {message}\n")
        return status

    def say(self, message: str) -> None:
        """``gputop CMD: MESSAGE`` on stderr, if it can still be written: after a full-screen view,
        on a terminal that hung up (EIO), it cannot, and the exit status says enough."""
        try:
            self.stderr.write(f"{self.prog}: {message}\n")
            self.stderr.flush()
        except OSError:
            pass
