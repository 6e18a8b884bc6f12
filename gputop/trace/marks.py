"""A recorded workload's marks, typed once: its ``start`` and ``end`` events and the recorder's
``exit`` instant, read from a trace's JSON (a file anyone may have edited) into frozen records
whose every field was checked as it was read. A value that is missing or not of its kind is
None (never 0, never a guess); report, replay's timeline and the insight use the fields as they
are, with no checks of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


def text(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def count(value: Any) -> int | None:
    """A positive whole number (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def whole(value: Any) -> int | None:
    """A whole number of any sign (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def positive(value: Any) -> float | None:
    """A positive finite number (not a bool) as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if value > 0 else None


@dataclass(frozen=True)
class WorkloadStart:
    """The workload's ``start`` event: what it runs on and what a step is worth."""

    said: bool  # the event carried any field at all (a start with no fields says nothing)
    device: str | None = None
    device_uuid: str | None = None
    device_name: str | None = None
    precision: str | None = None
    batch_size: int | None = None
    sample_unit: str | None = None
    tokens_per_sample: int | None = None
    steps_planned: int | None = None
    flops_per_step: float | None = None
    peak_flops: float | None = None
    peak_flops_source: str | None = None

    @classmethod
    def of(cls, args: Mapping[str, Any] | None) -> WorkloadStart:
        """The start event's ``args`` (None: no start recorded)."""
        a = args or {}
        return cls(
            said=bool(a),
            device=text(a.get("device")),
            device_uuid=text(a.get("device_uuid")),
            device_name=text(a.get("device_name")),
            precision=text(a.get("precision")),
            batch_size=count(a.get("batch_size")),
            sample_unit=text(a.get("sample_unit")),
            tokens_per_sample=count(a.get("tokens_per_sample")),
            steps_planned=count(a.get("steps_planned")),
            flops_per_step=positive(a.get("flops_per_step")),
            peak_flops=positive(a.get("peak_flops")),
            peak_flops_source=text(a.get("peak_flops_source")),
        )


@dataclass(frozen=True)
class WorkloadEnd:
    """The workload's own ``end`` event: ``ok`` or ``error``, and its message."""

    status: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, args: Mapping[str, Any] | None) -> WorkloadEnd:
        a = args or {}
        return cls(status=text(a.get("status")), error=text(a.get("error")))


LOSSES = ("events_ignored", "pending_dropped", "steps_trimmed", "steps_out_of_order", "phases_unmatched")


@dataclass(frozen=True)
class WorkloadExit:
    """The recorder's ``exit`` instant: how the process ended, and what did not reach the trace
    as it was sent (``losses``: (name, count) of the LOSSES that are positive counts, in order)."""

    status: str | None = None
    returncode: int | None = None
    error: str | None = None
    signal: str | None = None
    stopped_by: str | None = None
    losses: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, args: Mapping[str, Any] | None) -> WorkloadExit:
        a = args or {}
        losses = tuple((k, n) for k in LOSSES if (n := count(a.get(k))) is not None)
        return cls(
            status=text(a.get("status")),
            returncode=whole(a.get("returncode")),
            error=text(a.get("error")),
            signal=text(a.get("signal")),
            stopped_by=text(a.get("stopped_by")),
            losses=losses,
        )
