"""The events socket every process of a launched job can reach by name: an AF_UNIX stream socket
in a private directory (``tempfile.mkdtemp``: mode 0700, this user's only), named to the job in
``GPUTOP_EVENTS_SOCK``. A launcher may close the descriptors its ranks inherit (torchrun, spawn),
so the hooks in each process connect at their first step instead. Each connection's peer is checked
(``SO_PEERCRED``: the same uid as gputop, else it is closed unread) and handed, as a descriptor,
to the events reader, which drains it on a thread of its own into the one queue of event lines."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import tempfile
import threading
from typing import Callable

ENV_SOCK = "GPUTOP_EVENTS_SOCK"  # _gputop_autostep.ENV_SOCK
BACKLOG = 64
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket; None where it cannot be read."""
    try:
        _, uid, _ = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except (OSError, AttributeError, struct.error):
        return None
    return int(uid)


class EventSocket:
    """The listening socket and its accepting thread; ``attach(sink)`` names what takes each
    accepted connection's descriptor (those accepted before are handed over then)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="gputop-events-")
        self.path = os.path.join(self.dir, "events.sock")
        self.refused = 0  # connections from another uid, closed unread
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(self.path)
            self._listener.listen(BACKLOG)
        except OSError:
            self.close()
            raise
        self._lock = threading.Lock()
        self._sink: Callable[[int], None] | None = None
        self._early: list[int] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name="workload-events-socket")
        self._thread.start()

    def attach(self, sink: Callable[[int], None]) -> None:
        with self._lock:
            self._sink, early, self._early = sink, self._early, []
        for fd in early:
            sink(fd)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            if peer_uid(conn) != os.getuid():
                self.refused += 1
                conn.close()
                continue
            fd = conn.detach()
            with self._lock:
                sink = self._sink
                if sink is None:
                    self._early.append(fd)
            if sink is not None:
                sink(fd)

    def close(self) -> None:
        """Stop accepting and remove the directory (connections already accepted read on)."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)
