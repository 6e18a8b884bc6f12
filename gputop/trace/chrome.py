"""Any Chrome trace JSON document (a profiler's: ``{"traceEvents": [...], ...}``, or a bare
array of events) read as a stream: its events one at a time, in bounded memory, whatever the
file's length or layout (one line or pretty-printed).

The file is read in 1 MB chunks into a text buffer; each event is decoded where it starts by
``json.JSONDecoder.raw_decode`` (in C), and the buffer is refilled when an event runs past its
end. The document's other keys (``baseTimeNanoseconds``, ``deviceProperties``, ...), before or
after the array, are decoded whole into ``ChromeEvents.keys`` as they are met. A file that is
not JSON, or cut off, is a ``ChromeTraceError`` with one line; one that is JSON but has no
array of event objects is one as well (``not_trace`` set).
"""

from __future__ import annotations

import codecs
import json
import os
import re
from typing import Any, BinaryIO, Iterator

CHUNK = 1 << 20
LARGEST = 64 << 20  # an event (or another key's value) bigger than this is refused
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")  # what may follow the part of a number that was read


class ChromeTraceError(ValueError):
    """One line for the user; ``not_trace``: the file is JSON, but not a Chrome trace."""

    def __init__(self, message: str, *, not_trace: bool = False) -> None:
        super().__init__(message)
        self.not_trace = not_trace


class _Buffer:
    """The text of a file, read on as it is consumed (``pos``: where reading is)."""

    def __init__(self, f: BinaryIO, path: str) -> None:
        self.f, self.path = f, path
        self.text, self.pos, self.eof = "", 0, False
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def more(self) -> bool:
        """Read the next chunk (the text before ``pos`` is dropped); False at the end."""
        if self.eof:
            return False
        data = self.f.read(CHUNK)
        self.eof = not data
        self.text = self.text[self.pos :] + self._utf8.decode(data, final=self.eof)
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end of the file)."""
        while True:
            match = _WHITESPACE.match(self.text, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise self.not_json()
        self.pos += 1

    def ends(self, close: str) -> bool:
        """After a member: True at ``close`` (taken), False at a comma (taken), else not JSON."""
        after = self.peek()
        if after not in (close, ","):
            raise self.not_json()
        self.pos += 1
        return after == close

    def value(self) -> Any:
        """The JSON value that starts here."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                if len(self.text) - self.pos > LARGEST:
                    raise ChromeTraceError(f"{self.path}: a value larger than {LARGEST >> 20} MB") from None
                if not self.more():
                    raise self.not_json() from None
                continue
            # a number cut by the chunk's end ("1.", "1.5e", "12") may go on in the next chunk:
            # raw_decode took what it could ("1") and stopped before the rest
            if isinstance(value, (int, float)) and not isinstance(value, bool) and _NUMBER_TAIL.fullmatch(self.text, end) and self.more():
                continue
            self.pos = end
            return value

    def not_json(self) -> ChromeTraceError:
        return ChromeTraceError(f"{self.path} is not JSON (was the profiler trace written completely?)")


class ChromeEvents:
    """A Chrome trace file: ``events()`` its events, one at a time (each call reads the file
    again, from the start); ``keys`` the document's other top-level keys, filled in as
    ``events()`` meets them (all of them once it is exhausted); ``array``: the file is a bare
    array of events."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.keys: dict[str, Any] = {}
        self.array = False

    def events(self) -> Iterator[dict[str, Any]]:
        try:
            f = open(self.path, "rb")
        except OSError as exc:
            raise ChromeTraceError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        with f:
            buf = _Buffer(f, self.path)
            first = buf.peek()
            if first == "[":
                self.array = True
                yield from self._array(buf)
            elif first == "{":
                yield from self._object(buf)
            else:
                raise buf.not_json()
            if buf.peek() != "":
                raise buf.not_json()  # data after the document

    def _object(self, buf: _Buffer) -> Iterator[dict[str, Any]]:
        buf.take("{")
        found = False
        if buf.peek() == "}":
            buf.pos += 1
        else:
            while True:
                key = buf.value()
                if not isinstance(key, str):
                    raise buf.not_json()
                buf.take(":")
                if key == "traceEvents" and buf.peek() == "[":
                    if found:
                        raise ChromeTraceError(f"{self.path} has two traceEvents arrays", not_trace=True)
                    found = True
                    yield from self._array(buf)
                else:
                    self.keys[key] = buf.value()
                if buf.ends("}"):
                    break
        if not found:
            raise self._not_trace()

    def _array(self, buf: _Buffer) -> Iterator[dict[str, Any]]:
        buf.take("[")
        if buf.peek() == "]":
            buf.pos += 1
            return
        while True:
            event = buf.value()
            if not isinstance(event, dict):
                raise self._not_trace()
            yield event
            if buf.ends("]"):
                return

    def _not_trace(self) -> ChromeTraceError:
        return ChromeTraceError(f"{self.path} is JSON but not a chrome trace (no traceEvents array)", not_trace=True)
