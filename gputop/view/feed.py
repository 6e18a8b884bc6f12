"""Feeds: where the app's samples come from. One app draws whichever feed the CLI gives it.

- ``LiveFeed``: a sampler on a drift-free Ticker (sampling runs off the event loop; see
  gputop.sampler.run), and the workload launched beside it, if any.
- ``ReplayFeed``: a recording and a cursor into it, played at 0.25x to 256x its own pace; its
  samples a list, or a ``trace.index.SampleIndex`` that decodes them on demand while a thread
  indexes the file (its length grows until it is done); a recorded workload's state at the
  cursor from a ``timeline.WorkloadTimeline``.

Both keep the History the charts draw and the "energy since start" of each GPU, so the app
keeps no accounts of its own. Headless: nothing here imports textual.
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from gputop.model import Sample, WorkloadState
from gputop.sampler import SupportsSample, Ticker
from gputop.view.history import History, Value, flatten

if TYPE_CHECKING:  # imported by a replay only: the live view needs no trace code
    from gputop.trace.index import SampleIndex

HISTORY_POINTS = 3600  # the live view keeps an hour at 1 Hz
# A replay's history is rebuilt up to the cursor on every step back: it holds what the widest
# charts draw (two points a column), not the live view's hour, and the flattened points of
# recently shown samples are kept, so a step back re-records rather than re-flattens.
REPLAY_HISTORY_POINTS = 1200
CACHED_POINTS = 4 * REPLAY_HISTORY_POINTS
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)


class SupportsPoll(Protocol):
    """What a feed needs of a launched workload (``gputop.workload.Workload``)."""

    def poll(self, sample: Sample | None = None) -> WorkloadState: ...

    def stop(self, grace_s: float = ...) -> object: ...

    def capture_stacks(self, timeout_s: float = ...) -> list[dict[str, Any]]: ...


class EnergySinceStart:
    """Each GPU's energy counter less its first reading: what it used since the feed began."""

    def __init__(self, start: dict[int, float] | None = None) -> None:
        self._start: dict[int, float] = {} if start is None else start  # GPU index -> first reading

    def note(self, sample: Sample) -> None:
        for gpu in sample.gpus:
            if gpu.energy_j is not None:
                self._start.setdefault(gpu.info.index, gpu.energy_j)

    def of(self, sample: Sample) -> dict[int, float | None]:
        out: dict[int, float | None] = {}
        for gpu in sample.gpus:
            start = self._start.get(gpu.info.index)
            out[gpu.info.index] = None if gpu.energy_j is None or start is None else gpu.energy_j - start
        return out


class Guarded:
    """Runs ``sampler.sample()`` (in the sampling thread) and returns the exception it raised
    instead of raising it, so one failed tick does not end the sampling loop."""

    def __init__(self, sampler: SupportsSample) -> None:
        self.sampler = sampler

    def sample(self) -> Sample | Exception:
        try:
            return self.sampler.sample()
        except Exception as exc:  # shown to the user by the app, then the next tick is tried
            return exc


class LiveFeed:
    """Samples as they are taken. ``sampler`` may be None (a test that ingests by hand)."""

    kind = "live"
    now_label = "now"  # the charts' right edge

    def __init__(
        self,
        sampler: SupportsSample | None,
        interval_s: float = 1.0,
        *,
        workload: SupportsPoll | None = None,
        host: str | None = None,
        paused: bool = False,
        history: History | None = None,
    ) -> None:
        self.sampler = sampler
        self.guarded = None if sampler is None else Guarded(sampler)
        self.ticker = Ticker(interval_s)
        self.interval_s = interval_s
        self.workload = workload
        self.host = socket.gethostname() if host is None else host
        self.paused = paused  # at start: no sampling until unpaused
        self.history = history if history is not None else History(HISTORY_POINTS)
        self.energy = EnergySinceStart()
        self._first: Future[Sample | Exception] | None = None

    def prefetch(self) -> None:
        """Take the first sample now, in a thread, while the view is still being built
        (importing Textual and building the screen take ~0.3 s): the app's first frame then
        shows it, instead of a frame that waits for it. The sampling loop starts with it
        (``take_first``). Nothing while paused at start."""
        if self.guarded is None or self.paused or self._first is not None:
            return
        first: Future[Sample | Exception] = Future()
        guarded = self.guarded

        def take() -> None:
            try:
                first.set_result(guarded.sample())  # a failed sample comes back as its exception
            except BaseException as exc:  # pragma: no cover - not an Exception: still no hang
                first.set_exception(exc)

        threading.Thread(target=take, name="gputop-first-sample", daemon=True).start()
        self._first = first

    def take_first(self) -> Future[Sample | Exception] | None:
        """The prefetched first sample (once), if ``prefetch`` was called."""
        first, self._first = self._first, None
        return first

    def discard_first(self, timeout_s: float = 5.0) -> None:
        """Wait (at most ``timeout_s``) for a prefetched sample nobody took, before the sampler
        is closed under it."""
        first = self.take_first()
        if first is not None:
            concurrent.futures.wait([first], timeout=timeout_s)

    def set_interval(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.ticker.set_interval(interval_s)

    def push(self, sample: Sample, extra: dict[str, Value] | None = None) -> None:
        self.history.push(sample, extra=extra)
        self.energy.note(sample)


@dataclass(frozen=True, slots=True)
class ReplayPosition:
    index: int  # of the sample under the cursor, 0-based
    count: int
    offset_s: float  # from the first sample
    duration_s: float  # first to last sample
    ts_ns: int  # time.time_ns() stamp of the sample under the cursor
    speed: float
    complete: bool  # False: the recording was cut off (no closing ])


def nearest_speed(speed: float) -> int:
    return min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - speed))


class ReplayFeed:
    """A recording and a cursor (an index into its samples). The history always holds the samples
    up to the cursor, rebuilt when the cursor jumps back or far ahead. Playing follows the
    recording's own timestamps; ``advance()`` (called once a frame) moves the cursor to the last
    sample at or before the playback time, several samples at once at high speed and rate."""

    kind = "replay"
    now_label = "cursor"

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        host: str = "",
        complete: bool = True,
        speed: float = 1.0,
        playing: bool = True,
        history_points: int = REPLAY_HISTORY_POINTS,
        clock: Callable[[], float] = time.monotonic,
        workload: SupportsPoll | None = None,
    ) -> None:
        from gputop.trace.index import SampleIndex

        if not samples:
            raise ValueError("a replay needs at least one sample")
        self.index: SampleIndex | None = samples if isinstance(samples, SampleIndex) else None
        self.samples: Sequence[Sample] = samples if self.index is not None else list(samples)
        self.host = host
        self._complete = complete
        self.workload = workload
        self.speed = SPEEDS[nearest_speed(speed)]
        self.paused = not playing
        self.interval_s = 1.0  # shown in the status bar; a recording has its own pace
        self.cursor = -1
        self.history = History(history_points)
        self._ts: Sequence[int]
        if self.index is not None:  # "energy since start": the first readings, as indexed
            self.energy = EnergySinceStart(self.index.first_energy)
            self._ts = self.index.ts
        else:
            self.energy = EnergySinceStart()
            for sample in self.samples:  # "energy since start" counts from the recording's start
                self.energy.note(sample)
            self._ts = [s.ts_ns for s in self.samples]
        self._clock = clock
        self._anchor = (0.0, 0)  # (clock reading, recording ts_ns) when play last started
        self._points: OrderedDict[int, dict[str, Value]] = OrderedDict()

    @property
    def last(self) -> int:
        return len(self._ts) - 1

    def close(self) -> None:
        """Stop indexing and close the recording (a SampleIndex's); nothing for a list."""
        if self.index is not None:
            self.index.close()
            self.index.stream.close()

    @property
    def complete(self) -> bool:
        """False where the recording was cut off (no closing ]): known once it is all indexed."""
        if self.index is not None:
            return not self.index.done or self.index.stream.complete
        return self._complete

    @property
    def indexing(self) -> bool:
        """The index is still being built: the recording's end is not known yet."""
        return self.index is not None and not self.index.done

    def index_of(self, offset_s: float) -> int:
        """The last sample at or before ``offset_s`` seconds from the first (clamped; an offset
        past the end, 1e300 s say, is the end rather than an int() of an infinity)."""
        ts = self._ts
        offset_s = min(max(0.0, offset_s), (ts[-1] - ts[0]) / 1e9)
        return max(0, min(self.last, bisect_right(ts, ts[0] + int(offset_s * 1e9)) - 1))

    @property
    def sample(self) -> Sample:
        return self.samples[max(0, self.cursor)]

    def seek(self, index: int) -> bool:
        """Put the cursor on sample ``index`` (negative counts from the end). True where the
        history was replaced by a new one (the charts must be handed it)."""
        if index < 0:
            index += len(self._ts)
        index = max(0, min(self.last, index))
        if index == self.cursor:
            return False
        capacity = self.history.capacity
        rebuilt = False
        if self.cursor < index <= self.cursor + capacity:
            self._record(range(self.cursor + 1, index + 1))
        else:  # back, or far ahead: the history is the samples up to the cursor
            self.history = History(capacity)
            self._record(range(max(0, index - capacity + 1), index + 1))
            rebuilt = True
        self.cursor = index
        return rebuilt

    def _record(self, indices: range) -> None:
        cache = self._points
        for i in indices:
            points = cache.get(i)
            if points is None:
                points = cache[i] = flatten(self.samples[i])
                if len(cache) > CACHED_POINTS:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(i)
            self.history.record(self._ts[i], points)

    def position(self) -> ReplayPosition:
        i, ts = self.cursor, self._ts
        return ReplayPosition(
            index=i,
            count=len(ts),
            offset_s=(ts[i] - ts[0]) / 1e9,
            duration_s=(ts[-1] - ts[0]) / 1e9,
            ts_ns=ts[i],
            speed=self.speed,
            complete=self.complete,
        )

    def play(self) -> bool:
        """Start playing (from the start again at the end); True where that seek rebuilt the
        history."""
        rebuilt = self.seek(0) if self.cursor >= self.last else False
        self.paused = False
        self.reanchor()
        return rebuilt

    def pause(self) -> None:
        self.paused = True

    def reanchor(self) -> None:
        """Playback time continues from the cursor, now."""
        self._anchor = (self._clock(), self._ts[max(0, self.cursor)])

    def target(self) -> int:
        """The sample due now: the last at or before the playback time."""
        started, ts0 = self._anchor
        return bisect_right(self._ts, ts0 + (self._clock() - started) * self.speed * 1e9) - 1

    def change_speed(self, step: int) -> None:
        self.speed = SPEEDS[max(0, min(len(SPEEDS) - 1, nearest_speed(self.speed) + step))]
        if not self.paused:
            self.reanchor()
