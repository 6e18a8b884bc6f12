"""Workload events, read: one JSON line each, parsed and checked into WorkloadStep and WorkloadMark.

The writing side is ``gputop.workloads.events`` (standard library only, so a user's script can copy
it); the names of the environment and of the events come from there, so the two cannot drift.
A line that is not a valid event of a known kind is counted, never raised.

Steps come from two sources: the workload's own events (``source`` absent or ``"events"``) and
gputop's hooks in a launched script (``"source": "auto"``, gputop/workload/inject), whose steps
may lack ``samples`` and carry ``data_wait_s`` and ``waits``. A script that reports its own
steps is taken at its word: once it has, the detected ones are left out.

Every hooked process of a job says who it is first (``hello``: pid, ppid, rank, world size, ...;
kept in ``processes`` by pid, and a mark for the trace); the steps of a rank, or of any process but
the first, carry its ``pid`` and ``rank``; at exit it says how it ended (``bye``: its steps, and the
uncaught exception where there was one).
"""

from __future__ import annotations

import json
import math
from typing import Any

from gputop.model import WorkloadMark, WorkloadStep
from gputop.workloads.events import ENV_FD, ENV_FILE

__all__ = ["ENV_FD", "ENV_FILE", "EventReader"]

PEAK_SOURCES = ("table", "measured")
HELLO_NUMBERS = ("rank", "local_rank", "world_size", "group_rank", "restart_count")


def number(value: Any, *, positive: bool = False) -> float | None:
    """A finite JSON number (not a bool) as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if positive and value <= 0:
        return None
    return float(value)


def whole(value: Any, low: int = 0) -> int | None:
    """A JSON integer (not a bool) of at least ``low``, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        return None
    return value


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class EventReader:
    """Parses event lines one by one and keeps what they establish: the ``start`` facts, the
    ``end`` word, the phases now open. ``read`` counts valid events, ``ignored`` the rest."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start: dict[str, Any] = {}
        self.end: dict[str, Any] | None = None
        self.phases: list[str] = []  # open phases, innermost last
        self.read = 0
        self.ignored = 0
        self.reported = False  # the workload wrote its own start or step events
        self.steps_source: str | None = None  # of the steps taken: "events" or "auto"
        self.processes: dict[int, dict[str, Any]] = {}  # pid -> its hello's facts
        self.ended: dict[int, dict[str, Any]] = {}  # pid -> its bye's facts

    def feed(self, line: bytes) -> WorkloadStep | WorkloadMark | None:
        """The step or mark ``line`` holds; None for a blank line or one that is not an event."""
        if not line.strip():
            return None
        try:
            record = json.loads(line)
        except ValueError:
            self.ignored += 1
            return None
        if not isinstance(record, dict):
            self.ignored += 1
            return None
        kind, ts_ns = record.get("event"), whole(record.get("ts_ns"), 1)
        item: WorkloadStep | WorkloadMark | None = None
        if ts_ns is not None:
            if kind == "step":
                item = self._step(record, ts_ns)
            elif kind == "start":
                item = self._start(record, ts_ns)
            elif kind == "phase":
                item = self._phase(record, ts_ns)
            elif kind == "end":
                item = self._end(record, ts_ns)
            elif kind == "hello":
                item = self._hello(record, ts_ns)
            elif kind == "bye":
                item = self._bye(record, ts_ns)
        if item is None:
            self.ignored += 1
        else:
            self.read += 1
        return item

    def _step(self, e: dict[str, Any], ts_ns: int) -> WorkloadStep | None:
        auto = e.get("source") == "auto"
        step, samples, wall = whole(e.get("step")), whole(e.get("samples")), number(e.get("wall_s"))
        loss = e.get("loss")
        if step is None or (samples is None and not (auto and e.get("samples") is None)):
            return None
        if wall is None or wall < 0 or (loss is not None and number(loss) is None):
            return None
        if not auto:
            self.reported = True
        elif self.reported:  # the workload reports its own steps: those are the truth
            return None
        wait = number(e.get("data_wait_s")) if auto else None
        backward = number(e.get("backward_s")) if auto else None
        self.steps_source = "auto" if auto else "events"
        return WorkloadStep(
            step=step,
            samples=samples,
            loss=number(loss),
            wall_s=wall,
            ts_ns=ts_ns,
            source="auto" if auto else "events",
            data_wait_s=wait if wait is None or wait >= 0 else None,
            waits=_waits(e.get("waits")) if auto else (),
            pid=whole(e.get("pid"), 1),
            rank=whole(e.get("rank")),
            backward_s=backward if backward is None or backward >= 0 else None,
            alloc_retries=whole(e.get("alloc_retries")) if auto else None,
        )

    def _hello(self, e: dict[str, Any], ts_ns: int) -> WorkloadMark | None:
        pid = whole(e.get("pid"), 1)
        if pid is None:
            return None
        facts: dict[str, Any] = {"pid": pid, "ppid": whole(e.get("ppid")), "root": e.get("root") is True}
        for key in HELLO_NUMBERS:
            facts[key] = whole(e.get(key))
        for key in ("run_id", "device", "device_name", "device_uuid"):
            facts[key] = text(e.get(key))
        self.processes[pid] = facts
        return WorkloadMark("hello", ts_ns, name=self.name, args={k: v for k, v in facts.items() if v is not None})

    def _bye(self, e: dict[str, Any], ts_ns: int) -> WorkloadMark | None:
        """How a hooked process ended: its steps, and the uncaught exception (exit status 1) where
        there was one. A process that ends without a bye was killed (or left by ``os._exit``)."""
        pid = whole(e.get("pid"), 1)
        if pid is None:
            return None
        facts = {"pid": pid, "steps": whole(e.get("steps")), "error": text(e.get("error")), "exitcode": whole(e.get("exitcode"))}
        self.ended[pid] = facts
        return WorkloadMark("bye", ts_ns, name=self.name, args={k: v for k, v in facts.items() if v is not None})

    def _start(self, e: dict[str, Any], ts_ns: int) -> WorkloadMark | None:
        if e.get("source") == "auto":
            if self.reported:
                return None
            self.start = {**self.start, **{k: v for k, v in self._facts(e).items() if v is not None}}
            return WorkloadMark(
                "start", ts_ns, name=self.name, args={"source": "auto", **{k: v for k, v in self.start.items() if v is not None}}
            )
        self.reported = True
        self.start = self._facts(e)
        return WorkloadMark(
            "start", ts_ns, name=self.name, args={"source": "events", **{k: v for k, v in self.start.items() if v is not None}}
        )

    def _facts(self, e: dict[str, Any]) -> dict[str, Any]:
        source = e.get("peak_flops_source")
        return {
            "device": text(e.get("device")),
            "device_name": text(e.get("device_name")),
            "device_uuid": text(e.get("device_uuid")),
            "precision": text(e.get("precision")),
            "batch_size": whole(e.get("batch_size"), 1),
            "sample_unit": text(e.get("sample_unit")) or "samples",
            "tokens_per_sample": whole(e.get("tokens_per_sample"), 1),
            "flops_per_step": number(e.get("flops_per_step"), positive=True),
            "peak_flops": number(e.get("peak_flops"), positive=True),
            "peak_flops_source": source if source in PEAK_SOURCES else None,
            "steps_planned": whole(e.get("steps_planned"), 1),
        }

    def _phase(self, e: dict[str, Any], ts_ns: int) -> WorkloadMark | None:
        name, ph = text(e.get("name")), e.get("ph")
        if name is None or ph not in ("B", "E"):
            return None
        if ph == "B":
            self.phases.append(name)
        elif name in self.phases:
            del self.phases[len(self.phases) - 1 - self.phases[::-1].index(name)]
        return WorkloadMark("phase", ts_ns, name=name, ph=ph)

    def _end(self, e: dict[str, Any], ts_ns: int) -> WorkloadMark | None:
        status = e.get("status")
        if status not in ("ok", "error"):
            return None
        error = e.get("error") if isinstance(e.get("error"), str) else None
        self.end = {"status": status, "error": error, "steps": whole(e.get("steps"))}
        args = {"status": status, **({"error": error} if error else {})}
        return WorkloadMark("end", ts_ns, name=self.name, args=args)


def _waits(value: Any) -> tuple[tuple[int, int], ...]:
    """``[[begin_ns, dur_ns], ...]`` as checked pairs (anything else is left out)."""
    if not isinstance(value, list):
        return ()
    out = []
    for pair in value[:16]:
        if isinstance(pair, list) and len(pair) == 2:
            begin, dur = whole(pair[0], 1), whole(pair[1])
            if begin is not None and dur is not None:
                out.append((begin, dur))
    return tuple(out)
