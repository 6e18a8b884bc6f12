"""Reading a trace as a stream: its events one at a time, in bounded memory, from a file of any
length, with the byte offset of each (for an index) and a callback for a progress bar.

gputop writes one event per line (docs/trace-format.md), so a file is read in 64 KB blocks of
whole lines; consecutive counter lines in the writer's own shape are taken apart all at once by
``bytes.split`` on ``,"`` (in C: no per-line regex or json), any other line goes through the
same JSON decoder as ``load``, and a cut or damaged line is told apart as ``load`` does. A file
that is not one event per line (the object form, or a JSON array laid out otherwise) is read
whole by ``reader.parse``, as before. Errors are ``TraceError``, one line, like ``load``'s.
"""

from __future__ import annotations

import json
import os
from array import array
from itertools import repeat
from typing import Any, BinaryIO, Callable, Generator, Iterator, Union

from gputop.model import Sample
from gputop.trace.decode import SampleDecoder, counter_value, ts_ns
from gputop.trace.reader import _trace, parse
from gputop.trace.recording import StreamedTrace, Trace
from gputop.trace.schema import CounterRun, TraceError, exact_float

_DECODER = json.JSONDecoder(parse_float=exact_float)
# 64 KB blocks: a block's pieces (about 10,000 small bytes objects) stay in the CPU's cache;
# 1 MB blocks made the same split and decode about 1.4x slower (benchmarks/README.md)
CHUNK = 1 << 16
_QUOTES = 18  # in a counter line as the writer writes it: see CounterRun


Item = Union[CounterRun, dict[str, Any]]
Progress = Callable[[int], None]  # called with the bytes read so far
_HEAD = b',{"ph":"C","name":"'  # how each counter line begins


def counter_run(offset: int, text: bytes, n: int) -> CounterRun | None:
    """The ``n`` lines of ``text`` as one CounterRun, or None where any of them is not a counter
    in the writer's shape (then each is read as JSON). The shape is checked by scans of the
    whole text (18 quotes a line, each line begins with ``_HEAD``, one ``"ts":`` and one
    ``"args":{`` a line), then by the pieces: five a line, names, pids and tids checked on each
    distinct one (a few dozen names, a pid or two), each stamp where the writer puts it (which
    leaves the args piece the fifth)."""
    if (
        text.count(b'"') != _QUOTES * n
        or not text.startswith(_HEAD)
        or text.count(b"\n" + _HEAD) != n - 1
        or text.count(b',"ts":') != n
        or text.count(b',"args":{"') != n
    ):
        return None  # (scans, before the split makes the pieces)
    pieces = text.split(b',"')
    if len(pieces) != 5 * n + 1:
        return None
    names, pids, stamps, values = pieces[1::5], pieces[2::5], pieces[4::5], pieces[5::5]
    for name in set(names):
        if not (name.startswith(b'name":"') and name.endswith(b'"') and name.count(b'"') == 3):
            return None
    if not (
        all(map(bytes.startswith, set(pids), repeat(b'pid":')))
        and all(map(bytes.startswith, set(pieces[3::5]), repeat(b'tid":')))
        and all(map(bytes.startswith, stamps, repeat(b'ts":')))
    ):  # (each: the scan does not place it)
        return None
    return CounterRun(offset, text, n, names, pids, stamps, values)


class TraceStream:
    """One gputop trace file opened for streaming: ``header`` (a ``Trace`` with the metadata
    events only) at once, then ``items()`` once: the events after the metadata, a CounterRun
    (consecutive counter lines) or a dict (any other event) at a time, each with its byte
    offset. ``complete`` is known once ``items()`` is exhausted.

    ``whole`` is set (and ``items()`` gives its events) where the file could not be streamed
    and was parsed whole instead."""

    def __init__(self, path: str | os.PathLike[str], progress: Progress | None = None) -> None:
        self.path = os.fspath(path)
        self.progress = progress
        try:
            self._file: BinaryIO = open(self.path, "rb")
            self.size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            raise TraceError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        self.complete = False
        self.whole: Trace | None = None
        self._pending: list[tuple[int, bytes]] = []  # lines read past the metadata
        self.meta: list[dict[str, Any]] = []
        try:
            self.header = self._open()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TraceStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> Trace:
        f = self._file
        first = f.readline()
        stripped = first.lstrip()
        if not stripped:
            rest = f.read(CHUNK)
            if not rest.strip():
                raise TraceError(f"{self.path} is empty (the recording stopped before its first sample?)")
            first, stripped = first + rest, (first + rest).lstrip()
        if not stripped.startswith(b"[{") or not self._is_event(stripped[1:]):
            return self._read_whole(first)
        offset = len(first)
        self.meta = [self._decode(stripped[1:], 1)]
        line_no = 1
        while True:  # the metadata events lead (the header first): keep them
            line = f.readline()
            if not line:
                break
            line_no += 1
            body = line.strip()
            if body.startswith(b',{"ph":"M"'):
                event = self._line(body, line_no, last=True)
                if event is not None:
                    self.meta.append(event)
                    offset += len(line)
                    continue
            self._pending.append((offset, line))
            line_no -= 1
            break
        self._line_no = line_no
        self._offset = offset
        return _trace(self.path, self.meta, False)

    def _is_event(self, body: bytes) -> bool:
        text = body.decode("utf-8", errors="replace")
        try:
            event, end = _DECODER.raw_decode(text)
        except json.JSONDecodeError:
            return False
        return isinstance(event, dict) and not text[end:].strip()  # one event, alone on its line

    def _read_whole(self, first: bytes) -> Trace:
        data = first + self._file.read()
        self.whole = parse(data, self.path)
        self.complete = self.whole.complete
        return self.whole

    def _decode(self, body: bytes, line_no: int) -> dict[str, Any]:
        text = body.decode("utf-8", errors="replace")
        try:
            event, end = _DECODER.raw_decode(text)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{self.path} is not JSON at line {line_no}: {exc.msg}") from None
        if text[end:].strip():
            raise TraceError(f"{self.path} is not JSON at line {line_no}: extra data")
        if not isinstance(event, dict):
            raise TraceError(f"{self.path} is JSON but not a trace: line {line_no} is not an object")
        return event

    def _line(self, body: bytes, line_no: int, *, last: bool) -> dict[str, Any] | None:
        """One line's event; None where it is the last line and was cut off mid-way."""
        if body.startswith(b","):
            body = body[1:].lstrip()
        try:
            return self._decode(body, line_no)
        except TraceError:
            if last:
                return None
            raise

    def items(self) -> Iterator[tuple[int, Item]]:
        """(byte offset, event) of every event after the metadata, in file order."""
        if self.whole is not None:
            for event in self.whole.events:
                if event.get("ph") != "M":
                    yield 0, event
            return
        carry = b"".join(line for _, line in self._pending)
        yield from self._items(self._file, self._offset, self._line_no, carry, self.progress)

    def items_at(self, offset: int) -> Iterator[tuple[int, Item]]:
        """``items()`` again from ``offset`` (one that ``items()`` gave), on a file handle of
        its own: for reading a part of the file again while ``items()`` goes on."""
        if self.whole is not None:
            yield from ((o, e) for o, e in self.items() if o >= offset)
            return
        with open(self.path, "rb") as f:
            f.seek(offset)
            yield from self._items(f, offset, 0, b"", None)

    def _items(self, f: BinaryIO, offset: int, line_no: int, carry: bytes, progress: Progress | None) -> Iterator[tuple[int, Item]]:
        held: int | None = None  # a line that did not parse (its number): the cut, unless more follow
        for block, after in _blocks(f, carry):
            whole = counter_run(offset, block, block.count(b"\n") + 1)
            if whole is not None:  # the usual block: every line a counter, taken apart at once
                self._refuse_held(held)
                yield offset, whole
                offset += len(block) + 1
                line_no += whole.lines
            else:
                offset, line_no, held, closed = yield from self._mixed(f, block, after, offset, line_no, held)
                if closed:
                    self.complete = True
                    self.end = offset
                    if progress is not None:
                        progress(offset)
                    return
            if progress is not None:
                progress(offset)
        self.end = offset

    def _mixed(
        self, f: BinaryIO, block: bytes, after: bytes, offset: int, line_no: int, held: int | None
    ) -> Generator[tuple[int, Item], None, tuple[int, int, int | None, bool]]:
        """A block with lines other than counters: its runs of counter lines taken apart at once,
        the others one by one. (offset, line number, held, whether the closing ] came) after it."""
        lines = block.split(b"\n")
        counts = list(map(bytes.count, lines, repeat(b'"')))
        odd = [i for i, c in enumerate(counts) if c != _QUOTES] if min(counts) != _QUOTES or max(counts) != _QUOTES else []
        start = 0
        for stop in [*odd, len(lines)]:
            run = counter_run(offset, b"\n".join(lines[start:stop]), stop - start) if stop > start else None
            if run is not None:
                self._refuse_held(held)
                yield offset, run
                offset += len(run.text) + 1
                line_no += run.lines
                start = stop
            for k, line in enumerate(lines[start : stop + 1]):
                offset, line_no, held, closed = yield from self._one(line, offset, line_no, held)
                if closed:
                    self._refuse_after_end(lines[start + k + 1 :], after, f)
                    return offset, line_no, held, True
            start = stop + 1
        return offset, line_no, held, False

    def _refuse_held(self, held: int | None) -> None:
        """A line that did not parse is an error once more lines follow it."""
        if held is not None:
            raise TraceError(f"{self.path} is not JSON at line {held}")

    def _refuse_after_end(self, rest: list[bytes], after: bytes, f: BinaryIO) -> None:
        """Nothing but blanks may follow the closing ]: in its block, the part line after the
        block (``after``), the file's next chunk."""
        if b"".join(rest).strip() or after.strip() or f.read(CHUNK).strip():
            raise TraceError(f"{self.path} is not JSON: data after the closing ']'")

    def _one(
        self, line: bytes, offset: int, line_no: int, held: int | None
    ) -> Generator[tuple[int, Item], None, tuple[int, int, int | None, bool]]:
        """One line read as JSON: (offset, line number, held, whether it was the closing ])
        after it."""
        line_no += 1
        start, offset = offset, offset + len(line) + 1
        body = line.strip()
        if not body:
            return offset, line_no, held, False
        if held is not None:
            raise TraceError(f"{self.path} is not JSON at line {held}")
        if body == b"]":
            return offset, line_no, held, True
        event = self._line(body, line_no, last=True)
        if event is None:
            return offset, line_no, line_no, False  # the last event cut off mid-way, if nothing follows
        yield start, event
        return offset, line_no, held, False


def _blocks(f: BinaryIO, carry: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(block, carry) of whole lines read CHUNK bytes at a time, ``carry`` (the part line after
    the block) put before the next read; the last block is the rest of the file."""
    while True:
        data = f.read(CHUNK)
        block = carry + data
        if data:
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a chunk: read on
                carry = block
                continue
            block, carry = block[: cut - 1], block[cut:]
        elif not block:
            return
        else:
            carry = b""
        yield block, carry
        if not data:
            return


def samples(stream: TraceStream, decoder: SampleDecoder) -> Iterator[Sample]:
    """Every sample of the stream, oldest first (``decoder`` built from its header), decoded
    as the file is read; ``stream.complete`` is set once this is exhausted."""
    run, event = decoder.run, decoder.event
    for _, item in stream.items():
        yield from (run(item) if type(item) is CounterRun else event(item))  # type: ignore[arg-type]
    yield from decoder.finish()


def decoder_for(trace: Trace, **hooks: Any) -> SampleDecoder:
    """A SampleDecoder for the devices a trace's header names."""
    return SampleDecoder(trace.gpus, trace.header.get("cpu_cores"), trace.gpu_unavailable, **hooks)


class WorkloadEvents:
    """Collects the launched workload's events from a stream (``SampleDecoder``'s hooks)."""

    def __init__(self, header: Trace) -> None:
        workload = header.workload
        self.pid = None if workload is None else workload["pid"]
        self.events: list[dict[str, Any]] = list(header.events)
        self.counters: dict[str, array[float]] = {}
        self.stamps: dict[str, array[int]] = {}  # each counter value's ts_ns (for a replay)
        self._names: dict[str, str | None] = {}

    def event(self, event: dict[str, Any]) -> None:
        if self.pid is None or event.get("pid") != self.pid:
            return
        if event.get("ph") == "C":
            parsed = counter_value(event)
            at = ts_ns(event.get("ts"))
            if parsed is not None and at is not None:
                self._add(parsed[0] if parsed[1] is None else str(event.get("name")), at, parsed[2])
            return
        self.events.append(event)

    def counter(self, pid: int, name: str, at: int, value: Any) -> None:
        if pid != self.pid:
            return
        if name not in self._names:
            parsed = counter_value({"name": name, "args": {"v": 0}})
            self._names[name] = None if parsed is None else name
        if self._names[name] is not None and not isinstance(value, bool):
            self._add(name, at, value)

    def _add(self, name: str, at: int, value: Any) -> None:
        values = self.counters.get(name)
        if values is None:
            values = self.counters[name] = array("d")
            self.stamps[name] = array("q")
        self.stamps[name].append(at)  # first: a reader in another thread goes by the values' length
        values.append(float(value))

    def trace(self, header: Trace, complete: bool) -> StreamedTrace:
        return StreamedTrace(
            path=header.path, header=header.header, events=tuple(self.events), complete=complete, gpus=header.gpus, counters=self.counters
        )
