"""Launch a workload (a bundled one or any script) under observation, read its events, stop it.

CONTRACT (written first so the launcher and the TUI's workload panel can be built side by side):
the TUI and ``gputop record --run`` only ever see ``WorkloadState`` snapshots from
``Workload.poll()``; they never touch the child process or its pipes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkloadStep:
    """One ``step`` event: the step ran from ``ts_ns - wall_s`` to ``ts_ns`` (time.time_ns clock)."""

    step: int
    samples: int
    loss: float | None
    wall_s: float
    ts_ns: int
    joules: float | None = None  # energy of the devices it ran on during this step, where known


@dataclass(frozen=True, slots=True)
class WorkloadState:
    """What a launched workload has reported so far, and how its process stands.

    ``None`` means "not reported": a script that writes no events still has a name, pid, status,
    pids and output, and every achievement field is None (shown as n/a, never 0).
    """

    name: str  # "cnn" for a bundled workload, else the script's file name
    argv: tuple[str, ...]  # the full command line of the child
    pid: int | None  # the main process; also its process group id. None before it started
    status: str  # "running" | "ok" (exit 0) | "failed" (non-zero exit or end status error) | "stopped" (by gputop)
    returncode: int | None  # None while running; negative: killed by that signal
    started_ns: int  # time.time_ns() when launched
    ended_ns: int | None
    events: bool  # True once any event was read
    device: str | None  # "cpu", "cuda", "cuda:1"
    device_name: str | None
    precision: str | None
    batch_size: int | None
    sample_unit: str  # "samples", "images", "tokens" (from start's extras; default "samples")
    flops_per_step: float | None
    peak_flops: float | None
    peak_flops_source: str | None  # "table" | "measured" | None
    steps_planned: int | None
    step: int | None  # the last step reported
    samples_per_s: float | None  # over the recent steps (a sliding window of wall time)
    tflops: float | None  # flops_per_step / step wall time, in TFLOP/s
    mfu_pct: float | None  # achieved / peak_flops x 100
    loss: float | None  # the last loss reported
    losses: tuple[float, ...]  # recent losses, oldest first (for a sparkline)
    joules_per_step: float | None  # GPU energy delta (or CPU package energy on CPU) per step
    recent_steps: tuple[WorkloadStep, ...]  # the last steps, oldest first
    error: str | None  # the end event's error; on a crash, the last line of stderr
    pids: frozenset[int]  # the main process and its live descendants (data-loader workers)
    output_tail: tuple[str, ...]  # the last lines of stdout and stderr, interleaved as they came

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def elapsed_s(self) -> float:
        import time
        end = self.ended_ns if self.ended_ns is not None else time.time_ns()
        return max(0.0, (end - self.started_ns) / 1e9)
