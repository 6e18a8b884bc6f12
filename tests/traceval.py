"""A validator for trace files, encoding what the viewers' JSON importers accept.

Rules, with where each comes from:

- JSON Array Format: the text starts with ``[`` (catapult's trace_event_importer checks the very
  first character before it repairs a missing ``]``; Perfetto's json_trace_tokenizer picks the
  bare-array format from the first non-space character).
- A missing ``]`` at end of file is accepted (Perfetto: end of file inside the events array of
  a bare-array trace is OK, google/perfetto#926; catapult appends the ``]``). So is one trailing
  comma before the end or the ``]`` (Perfetto since google/perfetto#1822; catapult strips it).
  An incomplete last object is dropped by Perfetto (it waits for more input); catapult cannot
  parse it, so ``truncated_event`` is reported separately and a SIGKILL must never cause one.
- ``strict=True``: the whole text is strict JSON (what a clean close must give).
- Every event is an object with a string ``ph``; every event but ``ph: "M"`` has a numeric ``ts``
  (Perfetto counts a non-metadata event without ts as a tokenizer failure and drops it).
- ``pid`` and ``tid`` are integers and ``pid`` is not 0 (pid 0 is the idle task in Perfetto and
  the process gputop's devices must not share). No NaN or Infinity (not JSON).
- Counters (``ph: "C"``): ``args`` is an object with exactly one key, whose value is a number
  (Perfetto makes one track per arg named "<name> <key>" and counts a non-number as a parse
  failure; gputop's contract is one arg per counter).
- Complete events (``ph: "X"``): numeric ``dur`` >= 0, and on each (pid, tid) they nest: a slice
  that starts inside another ends inside it (Perfetto's slice tracker needs strict nesting).
- Duration events (``ph: "B"``/``"E"``), per (pid, tid) in file order: every ``E`` closes the
  innermost open ``B`` (with the same name, where the ``E`` names one) and is not earlier than it;
  Perfetto's slice tracker drops an ``E`` with nothing open and mis-nests one that names another
  slice. A ``B`` may stay open only in a trace cut off (no closing ``]``): a recording that ended
  cleanly closes what it opened.
- One ``process_name`` per pid and one ``thread_name`` per (pid, tid): two (a merge that names a
  process twice) leave the viewer to pick one.
- Instants: ``s``, where given, is one of "t", "p", "g".
- Metadata first: no ``ph: "M"`` event after the first data event (gputop's own rule, so a
  reader learns every device before its data); process/thread names carry ``args.name``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    events: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False  # the closing ] was there
    trailing_comma: bool = False
    truncated_event: bool = False  # an incomplete object at the end (Perfetto drops it)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(text: str, *, strict: bool = False) -> Report:
    report = Report()
    if not text.startswith("["):
        report.problems.append("does not start with '[' (JSON Array Format)")
        return report
    if strict:
        try:
            json.loads(text, parse_constant=_no_constants)
        except ValueError as exc:
            report.problems.append(f"not strict JSON: {exc}")
    _tokenize(text, report)
    _check_events(report)
    return report


def _tokenize(text: str, report: Report) -> None:
    pos, end = 1, len(text)
    first = True
    while True:
        pos = _skip(text, pos)
        if pos >= end:
            return
        if text[pos] == ",":
            if first:
                report.problems.append("comma before the first event")
            pos = _skip(text, pos + 1)
            if pos >= end:
                report.trailing_comma = True
                return
            if text[pos] == "]":
                report.trailing_comma = True
        elif not first and text[pos] != "]":
            report.problems.append(f"missing comma between events at offset {pos}")
        if text[pos] == "]":
            report.closed = True
            if text[pos + 1 :].strip():
                report.problems.append("data after the closing ']'")
            return
        try:
            event, pos = _DECODER.raw_decode(text, pos)
        except ValueError as exc:
            if "\n" in text[pos:].rstrip():
                report.problems.append(f"bad JSON at offset {pos}: {exc}")
            else:
                report.truncated_event = True
            return
        report.events.append(event)
        first = False


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _check_events(report: Report) -> None:
    problems = report.problems
    seen_data = False
    slices: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    open_: dict[tuple[int, int], list[tuple[Any, float, int]]] = {}  # (name, ts, event index)
    names: dict[tuple[Any, ...], int] = {}
    for i, e in enumerate(report.events):
        if not isinstance(e, dict):
            problems.append(f"event {i} is not an object")
            continue
        ph = e.get("ph")
        if not isinstance(ph, str) or not ph:
            problems.append(f"event {i} has no ph")
            continue
        pid, tid = e.get("pid"), e.get("tid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid == 0:
            problems.append(f"event {i} ({ph} {e.get('name')!r}): pid {pid!r} is not a nonzero integer")
        if tid is not None and (not isinstance(tid, int) or isinstance(tid, bool)):
            problems.append(f"event {i}: tid {tid!r} is not an integer")
        if ph == "M":
            if seen_data:
                problems.append(f"event {i}: metadata {e.get('name')!r} after data events")
            if e.get("name") in ("process_name", "thread_name"):
                if not isinstance((e.get("args") or {}).get("name"), str):
                    problems.append(f"event {i}: {e.get('name')} without args.name")
                key = (e.get("name"), pid) + ((tid if tid is not None else pid,) if e.get("name") == "thread_name" else ())
                if key in names:
                    problems.append(f"event {i}: a second {e.get('name')} for {key[1:]} (the first is event {names[key]})")
                names.setdefault(key, i)
            if e.get("name") in ("process_sort_index", "thread_sort_index"):
                if not isinstance((e.get("args") or {}).get("sort_index"), int):
                    problems.append(f"event {i}: {e.get('name')} without an integer args.sort_index")
            continue
        seen_data = True
        if not _is_number(e.get("ts")):
            problems.append(f"event {i} ({ph} {e.get('name')!r}): ts {e.get('ts')!r} is not a number")
            continue
        if ph == "C":
            args = e.get("args")
            if not isinstance(args, dict) or len(args) != 1:
                problems.append(f"event {i} counter {e.get('name')!r}: args {args!r} is not one key")
            elif not _is_number(next(iter(args.values()))):
                problems.append(f"event {i} counter {e.get('name')!r}: arg {args!r} is not a number")
        elif ph == "X":
            dur = e.get("dur")
            if not _is_number(dur) or dur < 0:
                problems.append(f"event {i} slice {e.get('name')!r}: dur {dur!r} is not a number >= 0")
            else:
                slices.setdefault((pid, tid if tid is not None else pid), []).append((float(e["ts"]), float(e["ts"]) + float(dur), i))
        elif ph in ("B", "E"):
            stack = open_.setdefault((pid, tid if tid is not None else pid), [])
            if ph == "B":
                stack.append((e.get("name"), float(e["ts"]), i))
            elif not stack:
                problems.append(f"event {i}: E {e.get('name')!r} on pid/tid {(pid, tid)} with no open B")
            elif e.get("name") is not None and e.get("name") != stack[-1][0]:
                problems.append(
                    f"event {i}: E {e.get('name')!r} on pid/tid {(pid, tid)} does not "
                    f"close the innermost open B {stack[-1][0]!r} (event {stack[-1][2]})"
                )
            elif float(e["ts"]) < stack[-1][1]:
                problems.append(f"event {i}: E {e.get('name')!r} is earlier than its B (event {stack[-1][2]})")
                stack.pop()
            else:
                stack.pop()
        elif ph in ("i", "I"):
            if e.get("s", "t") not in ("t", "p", "g"):
                problems.append(f"event {i} instant: scope {e.get('s')!r} is not t, p or g")
    if report.closed:
        for key, stack in open_.items():
            for name, _, i in stack:
                problems.append(f"event {i}: B {name!r} on pid/tid {key} never ends in a trace that was closed cleanly")
    for key, spans in slices.items():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[float, float, int]] = []
        for start, end, i in spans:
            while stack and stack[-1][1] <= start:
                stack.pop()
            if stack and end > stack[-1][1]:
                problems.append(f"event {i} slice on pid/tid {key} overlaps event {stack[-1][2]} without nesting in it")
            stack.append((start, end, i))


def assert_valid(text: str, *, strict: bool = False, allow_truncated_event: bool = False) -> Report:
    report = validate(text, strict=strict)
    assert report.ok, "\n".join(report.problems[:20])
    if not allow_truncated_event:
        assert not report.truncated_event, "the last event is cut off (chrome://tracing cannot load it)"
    return report
