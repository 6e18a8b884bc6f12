"""Why a straggler's own work is slow, from its GPU beside the other ranks' GPUs (pure).

Each rank is tied to its GPU by the UUID its hello gave (else its ``cuda:N`` ordinal), never by
pid. Over the ranks' steps, each GPU's readings are taken as medians (``GpuWindow``); the
straggler's is set against the median of the others':

- its SM clock below theirs by CLOCK_SHORT or more: "GPU clocks", with what held them (power
  cap, too hot, ...: the driver's clock event reasons, the share of samples each held them; its
  temperature too where it is HOTTER_C above theirs);
- else its SM activity above theirs by BUSIER_POINTS or more: "GPU work" (its GPU does more per
  step: uneven batches, sequence lengths, a model split unevenly).

Nothing else is guessed: where neither holds, or a rank's GPU is not known (a CPU rank, a GPU
that gave no readings), the straggler's reason stays "compute" (its own work outside data wait).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from gputop import format as fmt
from gputop.model import Sample
from gputop.workload import insight, rates

CLOCK_SHORT = 0.10  # its SM clock below the others' median by this share
BUSIER_POINTS = 10.0  # its SM activity above the others' median by this many points
HOTTER_C = 5.0  # its temperature named beside its clocks where it is this much above the others'
HELD_SHARE = 0.2  # a clock event reason named where it held the clocks this share of samples


@dataclass(frozen=True, slots=True)
class GpuWindow:
    """One GPU over a window of samples: medians, and how often each reason held its clocks."""

    index: int
    samples: int
    sm_clock_mhz: float | None
    sm_active_pct: float | None
    temp_c: float | None
    power_w: float | None
    held: Mapping[str, float]  # clock event reason -> share of the samples that said it


def window(samples: Sequence[Sample], device: str | None, device_uuid: str | None, begin_ns: int, end_ns: int) -> GpuWindow | None:
    """The readings of the GPU a rank ran on (``device``, ``device_uuid``: its hello's) between
    ``begin_ns`` and ``end_ns``; None on the CPU or where that GPU gave no sample."""
    if device is None or not device.startswith("cuda"):
        return None
    mine = [g for g in (insight.job_gpu(s.gpus, device, device_uuid, {}) for s in samples if begin_ns <= s.ts_ns <= end_ns) if g]
    read = [g for g in mine if not g.lost]
    if not read:
        return None
    reasons = [g.clock_event_reasons for g in read if g.clock_event_reasons is not None]
    counts: dict[str, int] = {}
    for words in reasons:
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    held = {word: n / len(reasons) for word, n in counts.items()}
    return GpuWindow(
        index=read[0].info.index,
        samples=len(read),
        sm_clock_mhz=rates.median(g.sm_clock_mhz for g in read),
        sm_active_pct=rates.median(g.sm_active_pct for g in read),
        temp_c=rates.median(g.temp_c for g in read),
        power_w=rates.median(g.power_w for g in read),
        held=held,
    )


def rank_gpus(samples: Sequence[Sample], devices: Mapping[int, Mapping[str, Any]], begin_ns: int, end_ns: int) -> dict[int, GpuWindow]:
    """Each rank's GPU over the window (``devices``: rank -> its hello), where it is known."""
    out = {}
    for rank, hello in devices.items():
        device, uuid = hello.get("device"), hello.get("device_uuid")
        found = window(samples, device if isinstance(device, str) else None, uuid if isinstance(uuid, str) else None, begin_ns, end_ns)
        if found is not None:
            out[rank] = found
    return out


def gpu_cause(rank: int, mine: GpuWindow, others: Sequence[GpuWindow]) -> tuple[str, str] | None:
    """``(reason, evidence)`` where the straggler's GPU stands apart from the others' (see the
    module's doc); None where it does not, or cannot be told."""
    if not others:
        return None
    clock = rates.median(o.sm_clock_mhz for o in others)
    if mine.sm_clock_mhz is not None and clock and mine.sm_clock_mhz <= (1.0 - CLOCK_SHORT) * clock:
        held = sorted(((share, word) for word, share in mine.held.items() if share >= HELD_SHARE), reverse=True)
        why = ", ".join(f"{fmt.reasons((word,))} {100 * share:.0f} % of the time" for share, word in held) or "no reason the driver gave"
        temp = rates.median(o.temp_c for o in others)
        hotter = mine.temp_c is not None and temp is not None and mine.temp_c - temp >= HOTTER_C
        hot = f"; it runs at {fmt.celsius(mine.temp_c)} against {fmt.celsius(temp)}" if hotter else ""
        return (
            "GPU clocks",
            f"rank {rank}'s GPU {mine.index} runs its SMs at {fmt.mhz(mine.sm_clock_mhz)} against {fmt.mhz(clock)} "
            f"(median of the other ranks' GPUs), held by: {why}{hot}",
        )
    busy = rates.median(o.sm_active_pct for o in others)
    if mine.sm_active_pct is not None and busy is not None and mine.sm_active_pct - busy >= BUSIER_POINTS:
        return (
            "GPU work",
            f"rank {rank}'s GPU {mine.index} has its SMs active {fmt.pct(mine.sm_active_pct)} of the time against "
            f"{fmt.pct(busy)} (median of the other ranks' GPUs): more work a step (uneven batches or sequence lengths?)",
        )
    return None
