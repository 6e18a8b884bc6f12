"""The events socket every process of a launched job can reach by name: an AF_UNIX stream socket
in a private directory (``tempfile.mkdtemp``: mode 0700, this user's only), named to the job in
``GPUTOP_EVENTS_SOCK``. A launcher may close the descriptors its ranks inherit (torchrun, spawn),
so the hooks in each process connect at their first step instead. Each connection's peer is checked
(``SO_PEERCRED``: the same uid as gputop, else it is closed unread) and handed, as a descriptor,
to the events reader, which drains it on a thread of its own into the one queue of event lines.

Requests go the other way on the same connections (``ask``): a line such as ``{"request":
"stacks", "reply": PATH}``, which a thread of the hooks' own in each process reads and answers on a
new connection to PATH, a socket in the same private directory listening for that request's
answers alone (``capture_stacks``)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
from typing import Any, Callable, Mapping

ENV_SOCK = "GPUTOP_EVENTS_SOCK"  # _gputop_autostep.ENV_SOCK
BACKLOG = 64
MAX_ANSWER = 4 << 20  # bytes of one process's answer read at most
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket; None where it cannot be read."""
    try:
        _, uid, _ = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except (OSError, AttributeError, struct.error):
        return None
    return int(uid)


def _read_answer(conn: socket.socket, deadline: float) -> dict[str, Any] | None:
    """One JSON object, the whole of what the peer sends before it closes; None where it is not."""
    data = b""
    with conn:
        while len(data) <= MAX_ANSWER:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            conn.settimeout(left)
            try:
                chunk = conn.recv(65536)
            except OSError:
                return None
            if not chunk:
                break
            data += chunk
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


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
        self._asked: list[socket.socket] = []  # each accepted connection (a duplicate), for requests
        self._requests = 0
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
                with contextlib.suppress(OSError):
                    self._asked.append(socket.socket(fileno=os.dup(fd)))
                sink = self._sink
                if sink is None:
                    self._early.append(fd)
            if sink is not None:
                sink(fd)

    def ask(self, request: dict[str, Any]) -> int:
        """``request`` as one line on every connection still open; how many it reached (a
        connection whose process has gone is dropped)."""
        line = json.dumps(request).encode() + b"\n"
        reached = []
        with self._lock:
            for conn in self._asked:
                try:  # never blocks (a peer that reads nothing): the flag is this call's alone, since a
                    # timeout would make the descriptor the events reader shares non-blocking
                    if conn.send(line, socket.MSG_DONTWAIT) != len(line):
                        raise OSError("request cut short")
                except OSError:
                    conn.close()
                    continue
                reached.append(conn)
            self._asked = reached
        return len(reached)

    def capture_stacks(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every connected process's answer to a ``stacks`` request (its pid, rank and each
        thread's Python stack), within ``timeout_s``: those that answered in time."""
        self._requests += 1
        path = os.path.join(self.dir, f"stacks-{self._requests}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout_s
        answers: list[dict[str, Any]] = []
        try:
            listener.bind(path)
            listener.listen(BACKLOG)
            asked = self.ask({"request": "stacks", "reply": path})
            while len(answers) < asked and (left := deadline - time.monotonic()) > 0:
                listener.settimeout(left)
                try:
                    conn, _ = listener.accept()
                except OSError:  # the time is up
                    break
                if peer_uid(conn) != os.getuid():
                    conn.close()
                    continue
                answer = _read_answer(conn, deadline)
                if answer is not None:
                    answers.append(answer)
        except OSError:  # the directory has gone (the job ended): what came so far
            pass
        finally:
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
        return answers

    def close(self) -> None:
        """Stop accepting and remove the directory (connections already accepted read on)."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        with self._lock:
            for conn in self._asked:
                conn.close()
            self._asked = []
        shutil.rmtree(self.dir, ignore_errors=True)


def stacks_text(answer: Mapping[str, Any]) -> str:
    """One process's answer to a ``stacks`` request as text: each thread's stack, the main thread's
    first (as the hooks list them)."""
    threads = [t for t in answer.get("threads") or () if isinstance(t, dict)]
    return "".join(f"Thread {t.get('thread')}{' (main)' if t.get('main') else ''}:\n{t.get('stack') or ''}" for t in threads)
