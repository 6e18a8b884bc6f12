"""Reading a trace: ``load``/``parse`` give a ``Trace`` of every complete event, from a file closed
cleanly or cut off at any byte (the last partial event is dropped, as Perfetto does)."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import fields
from typing import Any, Mapping

from gputop import __version__
from gputop.model import GpuInfo
from gputop.trace.recording import Trace
from gputop.trace.schema import (
    HEADER,
    READS_VERSIONS,
    TraceError,
    exact_float,
    plain,
)

_DECODER = json.JSONDecoder(parse_float=exact_float)


def load(path: str | os.PathLike[str]) -> Trace:
    """Read a gputop trace, complete or cut off at any byte.

    A cut file yields every complete event before the cut. TraceError (one line) for a file
    that cannot be read, is empty, is not JSON, is not a trace or not gputop's, or has a
    trace version this gputop does not know.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(data, path)


def parse(data: bytes | str, name: str = "<trace>") -> Trace:
    """``load`` for text already in memory; ``name`` stands for the file in messages."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    events, complete = _events(name, text)
    return _trace(name, events, complete)


def _events(path: str, text: str) -> tuple[list[dict[str, Any]], bool]:
    start = len(text) - len(text.lstrip())
    if start == len(text):
        raise TraceError(f"{path} is empty (the recording stopped before its first sample?)")
    if text[start] == "{":
        return _object_form(path, text), True
    if text[start] != "[":
        try:
            json.loads(text)
        except ValueError:
            raise TraceError(f"{path} is not JSON (a trace starts with '[')") from None
        raise TraceError(f"{path} is JSON but not a trace (not an array of events)")
    events: list[dict[str, Any]] = []
    pos, end = start + 1, len(text)
    while True:
        pos = _skip_space(text, pos)
        if pos < end and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
        if pos >= end:
            return events, False  # cut off: no closing ]
        if text[pos] == "]":
            if text[pos + 1 :].strip():
                raise TraceError(f"{path} is not JSON: data after the closing ']'")
            return events, True
        try:
            event, pos = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if "\n" in text[pos:].rstrip():  # more lines follow: damage, not a cut
                raise TraceError(f"{path} is not JSON at line {exc.lineno}: {exc.msg}") from None
            return events, False  # the last event was cut off mid-way
        if not isinstance(event, dict):
            raise TraceError(f"{path} is JSON but not a trace: event {len(events)} is not an object")
        events.append(event)


def _skip_space(text: str, pos: int) -> int:
    end = len(text)
    while pos < end and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _object_form(path: str, text: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(text, parse_float=exact_float)
    except ValueError:
        raise TraceError(f"{path} is not JSON (or is an object-form trace cut off, which cannot be read)") from None
    events = doc.get("traceEvents") if isinstance(doc, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise TraceError(f"{path} is JSON but not a trace (no traceEvents array)")
    return events


def _trace(path: str, events: list[dict[str, Any]], complete: bool) -> Trace:
    header = next((e for e in events if e.get("ph") == "M" and e.get("name") == HEADER), None)
    if header is None:
        if not events:
            raise TraceError(f"{path} ends before gputop's header (cut off before the first sample)")
        raise TraceError(f"{path} is a trace, but not gputop's (no '{HEADER}' metadata event)")
    args = header.get("args")
    if not isinstance(args, dict) or "trace_version" not in args:
        raise TraceError(f"{path}: gputop header without a trace_version")
    version = args["trace_version"]
    if isinstance(version, bool) or version not in READS_VERSIONS:
        raise TraceError(
            f"{path} is gputop trace version {version!r}; this gputop ({__version__}) reads versions {', '.join(map(str, READS_VERSIONS))}"
        )
    raw_gpus = args.get("gpus") or []
    if not isinstance(raw_gpus, list) or not all(isinstance(g, dict) for g in raw_gpus):
        raise TraceError(f"{path}: unreadable GPU description in the header (gpus is not a list of objects)")
    try:
        gpus = tuple(_gpu_info(g) for g in raw_gpus)
    except (TypeError, ValueError) as exc:
        raise TraceError(f"{path}: unreadable GPU description in the header ({exc})") from None
    return Trace(path=path, header=plain(args), events=tuple(events), complete=complete, gpus=gpus)


_INFO_FIELDS = {f.name for f in fields(GpuInfo)}


def _gpu_info(doc: Mapping[str, Any]) -> GpuInfo:
    known = {k: plain(v) for k, v in doc.items() if k in _INFO_FIELDS}
    if isinstance(known.get("cpu_affinity"), list):
        known["cpu_affinity"] = tuple(known["cpu_affinity"])
    return GpuInfo(**known)


def recorder_running(trace: Trace, proc: str = "/proc") -> bool:
    """Whether the ``gputop record`` that wrote ``trace`` still runs (so a file without its
    closing ``]`` is still being written, not cut off): the header names this host, and its
    ``settings.pid`` is a live gputop process that started (this boot) before the first sample,
    not a later process given the same pid."""
    pid, start_ns = trace.settings.get("pid"), trace.header.get("start_ns")
    if (
        not isinstance(pid, int)
        or isinstance(pid, bool)
        or not isinstance(start_ns, int)
        or trace.header.get("host") != socket.gethostname()
    ):
        return False
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            if b"gputop" not in f.read():
                return False
        with open(f"{proc}/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
        with open(f"{proc}/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    started_s = boot + ticks / os.sysconf("SC_CLK_TCK")
    return started_s <= start_ns / 1e9 + 1.0  # btime is whole seconds
