"""The one place a workload's rates are computed from its steps: samples/s, TFLOP/s, MFU and
energy per step or per sample. The live view, ``compare`` and ``report`` all call these.

A rate over several steps is total work over total wall time (not a mean of per-step rates, which
would weigh a short step like a long one); ``report`` gives medians of per-step rates, also made
here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from gputop.model import WorkloadStep

RATE_WINDOW_S = 3.0  # the live rates are over the last steps adding up to this much step time


@dataclass(frozen=True, slots=True)
class Rates:
    samples_per_s: float | None = None
    tflops: float | None = None  # achieved TFLOP/s, from the workload's FLOPs per step
    mfu_pct: float | None = None  # achieved / peak FLOP/s x 100


def over(steps: Sequence[WorkloadStep], flops_per_step: float | None, peak_flops: float | None) -> Rates:
    """The rates over ``steps`` taken together; all None without steps or wall time (and
    samples/s None where a step's samples are not known)."""
    counts = [s.samples for s in steps]
    samples = None if None in counts else sum(c for c in counts if c is not None)
    return _rates(len(steps), sum(s.wall_s for s in steps), samples, flops_per_step, peak_flops)


def _rates(steps: int, wall_s: float, samples: int | None, flops_per_step: float | None, peak_flops: float | None) -> Rates:
    if not steps or wall_s <= 0:
        return Rates()
    samples_per_s = None if samples is None else samples / wall_s
    if not flops_per_step:
        return Rates(samples_per_s)
    rate = flops_per_step * steps / wall_s
    return Rates(samples_per_s, rate / 1e12, 100.0 * rate / peak_flops if peak_flops else None)


@dataclass(slots=True)
class RunTotals:
    """The whole run's steps summed as they come (step 1 left out, as in ``window``), so that a
    finished job's rates are its whole run's, not its last window's, in bounded memory."""

    steps: int = 0
    wall_s: float = 0.0
    samples: int | None = 0  # None once a step's samples are unknown
    first: WorkloadStep | None = None  # step 1, counted only where it is the only step
    joules: float = 0.0  # of the steps (step 1 aside) whose energy became known
    joules_steps: int = 0

    def add(self, step: WorkloadStep) -> None:
        if step.step == 1 and self.steps == 0:
            self.first = step
            return
        self.steps += 1
        self.wall_s += step.wall_s
        self.samples = None if self.samples is None or step.samples is None else self.samples + step.samples

    def add_joules(self, step: WorkloadStep, joules: float) -> None:
        """A step's energy, known once the energy curve covers it (after the step itself)."""
        if step.step != 1:
            self.joules += joules
            self.joules_steps += 1

    @property
    def joules_per_step(self) -> float | None:
        """The mean energy of the steps whose energy is known, as ``joules_per_step``."""
        return self.joules / self.joules_steps if self.joules_steps else None

    def rates(self, flops_per_step: float | None, peak_flops: float | None) -> Rates:
        if self.steps == 0:
            return over((self.first,), flops_per_step, peak_flops) if self.first is not None else Rates()
        return _rates(self.steps, self.wall_s, self.samples, flops_per_step, peak_flops)


def per_step(step: WorkloadStep, flops_per_step: float | None, peak_flops: float | None) -> Rates:
    """One step's own rates (None where its wall time is 0)."""
    return over((step,), flops_per_step, peak_flops) if step.wall_s > 0 else Rates()


def window(steps: Iterable[WorkloadStep], seconds: float = RATE_WINDOW_S) -> list[WorkloadStep]:
    """The recent steps the live rates are taken over: the last ones adding up to ``seconds`` of
    step time, leaving out step 1 (allocation, autotuning, compiling) once there are more."""
    all_steps = list(steps)
    chosen = [s for s in all_steps if s.step != 1] or all_steps
    out: list[WorkloadStep] = []
    total = 0.0
    for s in reversed(chosen):
        if out and total >= seconds:
            break
        out.append(s)
        total += s.wall_s
    return out


def joules_per_step(steps: Iterable[WorkloadStep]) -> float | None:
    """The mean energy of the steps whose energy is known."""
    energies = [s.joules for s in steps if s.joules is not None]
    return sum(energies) / len(energies) if energies else None


def joules_per_sample(steps: Sequence[WorkloadStep]) -> float | None:
    """Energy over samples, only where every step's energy is known (a part would flatter it)."""
    if not steps or any(s.joules is None or s.samples is None for s in steps):
        return None
    samples = sum(s.samples for s in steps if s.samples is not None)
    return sum(s.joules for s in steps if s.joules is not None) / samples if samples else None


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of sorted values, linear between ranks."""
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float | None]) -> float | None:
    """The median of the finite values; None where there is none."""
    present = sorted(v for v in values if v is not None and math.isfinite(v))
    return percentile(present, 50) if present else None


def data_wait_share(steps: Sequence[WorkloadStep]) -> float | None:
    """The share (0..1) of the steps' wall time spent waiting for the DataLoader; None where no
    step was timed against one."""
    timed = [s for s in steps if s.data_wait_s is not None]
    wall = sum(s.wall_s for s in timed)
    if not timed or wall <= 0:
        return None
    return min(1.0, sum(s.data_wait_s for s in timed if s.data_wait_s is not None) / wall)


def step_time_percentiles(steps: Sequence[WorkloadStep]) -> tuple[float | None, float | None]:
    """(p50, p95) of the steps' wall times; None, None without steps."""
    walls = sorted(s.wall_s for s in steps)
    if not walls:
        return None, None
    return percentile(walls, 50), percentile(walls, 95)
