"""The exit statuses every gputop command returns: one table, so the same kind of ending gets the
same number whatever the command."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILURE = 1  # the command ran and could not do its job: unreadable input, a failed workload
    USAGE = 2  # what the user asked cannot be done as asked: bad arguments, no terminal
    INTERRUPTED = 130  # SIGINT (128 + 2), the shell's convention

    @staticmethod
    def signalled(signum: int) -> int:
        """128 + the signal's number: how a shell reports a process that a signal ended."""
        return 128 + int(signum)
