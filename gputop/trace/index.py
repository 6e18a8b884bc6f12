"""A recording's samples by index, without holding them: one pass over the file records each
sample's timestamp (8 bytes a sample) and, every ``BLOCK`` samples or so, a checkpoint (the byte
offset of a line and the decoder's state there); a sample is then decoded on demand with the
block around it, from its checkpoint, and the last few blocks are kept.

The pass runs in a thread of its own (``start``), so a replay shows its first samples at once
while the rest is indexed: ``len()`` grows until ``done``. ``SampleIndex`` is a read-only
``Sequence[Sample]`` (what ``feed.ReplayFeed`` takes), ``ts`` the timestamps so far.
"""

from __future__ import annotations

import copy
import threading
from array import array
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, overload

from gputop.model import Sample
from gputop.trace.decode import SampleDecoder
from gputop.trace.schema import CounterRun, TraceError
from gputop.trace.stream import TraceStream, WorkloadEvents, decoder_for

BLOCK = 256  # samples between checkpoints, at least (a checkpoint falls between two read runs)
CACHED_BLOCKS = 16


@dataclass(frozen=True)
class _Checkpoint:
    index: int  # of the first sample decoded from here
    offset: int  # of the item the decoding starts at
    state: dict[str, Any]  # the decoder's state before that item


_STATE = ("late", "_groups", "_done_ns", "_newest_ns", "_in_order", "_reasons", "_lost", "_carried", "_last", "_gpus", "_slow", "_freqs")


def _snapshot(decoder: SampleDecoder) -> dict[str, Any]:
    state = {name: copy.copy(getattr(decoder, name)) for name in _STATE}
    state["_groups"] = copy.deepcopy(decoder._groups)  # the open group is still being filled
    return state


def _restore(decoder: SampleDecoder, state: dict[str, Any]) -> None:
    for name, value in state.items():
        setattr(decoder, name, copy.deepcopy(value) if name == "_groups" else copy.copy(value))


class SampleIndex(Sequence[Sample]):
    """The samples of the trace at ``stream``'s path, by index (see the module's docstring)."""

    def __init__(self, stream: TraceStream, workload: WorkloadEvents | None = None) -> None:
        self.stream = stream
        self.header = stream.header
        self.workload = workload
        self.ts: array[int] = array("q")
        self.done = False
        self.read = 0  # bytes of the file indexed so far
        self._stop = False
        self.error: str | None = None  # why the pass stopped early, where it did
        self.unreadable = 0  # events left out for a time stamp that is no time (after the pass)
        self.first_energy: dict[int, float] = {}  # each GPU's first energy reading (since start)
        self._checkpoints: list[_Checkpoint] = []
        self._starts: list[int] = []  # the checkpoints' first sample index, for bisect
        self._cache: OrderedDict[int, list[Sample]] = OrderedDict()
        self._lock = threading.Lock()  # the cache, between the drawing thread and the pass
        self._whole: list[Sample] | None = None
        self._thread: threading.Thread | None = None
        self._go = threading.Event()  # the pass holds after the first samples until released
        self._go.set()
        self.on_progress: Callable[[int], None] | None = None

    # -- the pass ---------------------------------------------------------------------------

    def _decoder(self) -> SampleDecoder:
        hooks: dict[str, Any] = {}
        if self.workload is not None:
            hooks = {"on_event": self.workload.event, "on_counter": self.workload.counter}
        return decoder_for(self.header, window=1, **hooks)  # a sample's lines are written together

    def build(self, until: int | None = None) -> None:
        """Index the file (to the end, or until ``until`` samples are indexed: then return and
        leave the rest to ``start``). Called by the thread; tests call it directly."""
        if self.done:
            return
        if self._whole is None and self.stream.whole is not None:  # not line by line: held whole
            self._whole = [s for s in self.stream.whole.samples()]
            self.ts.extend(s.ts_ns for s in self._whole)
            for s in self._whole:
                self._note_energy(s)
            self.done = True
            return
        self._build()

    def _build(self) -> None:
        decoder = self._decoder()
        next_checkpoint = 0
        count = 0
        try:
            for offset, item in self.stream.items():
                if self._stop:
                    return
                self.read = offset
                if count >= next_checkpoint:
                    self._checkpoints.append(_Checkpoint(count, offset, _snapshot(decoder)))
                    self._starts.append(count)
                    next_checkpoint = count + BLOCK
                out = decoder.run(item) if isinstance(item, CounterRun) else decoder.event(item)
                count += self._add(out)
                if count and not self._go.is_set():
                    self._go.wait()  # the first samples are in: the app draws them first
            count += self._add(decoder.finish())
            self.read = self.stream.size
            self.unreadable = decoder.unreadable
        except TraceError as exc:
            self.error = str(exc)
        finally:
            self.done = True

    def _add(self, samples: list[Sample]) -> int:
        for sample in samples:
            self._note_energy(sample)
        self.ts.extend(s.ts_ns for s in samples)  # after the samples' block can be decoded
        return len(samples)

    def _note_energy(self, sample: Sample) -> None:
        first = self.first_energy
        for gpu in sample.gpus:
            if gpu.energy_j is not None and gpu.info.index not in first:
                first[gpu.info.index] = gpu.energy_j

    def start(self, *, hold: bool = False) -> None:
        """Index in a daemon thread (the app draws meanwhile); with ``hold``, the thread stops
        after the first samples until ``release()`` (so that the first frame is drawn without
        sharing the interpreter with it)."""
        if hold:
            self._go.clear()
        if self._thread is None and not self.done:
            self._thread = threading.Thread(target=self.build, name="gputop-index", daemon=True)
            self._thread.start()

    def release(self) -> None:
        """Let a held pass go on."""
        self._go.set()

    def close(self) -> None:
        """Stop the pass (before its file is closed)."""
        self._stop = True
        self._go.set()
        if self._thread is not None:
            self._thread.join()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the pass is done (True) or ``timeout`` passed (False); releases a held pass."""
        self._go.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done

    # -- samples ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ts)

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Sample]: ...

    def __getitem__(self, i: int | slice) -> Sample | Sequence[Sample]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self.ts)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        if self._whole is not None:
            return self._whole[i]
        block = bisect_right(self._starts, i) - 1
        samples = self._block(block)
        return samples[i - self._starts[block]]

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def _block(self, block: int) -> list[Sample]:
        with self._lock:
            cached = self._cache.get(block)
            if cached is not None:
                self._cache.move_to_end(block)
                return cached
        mark = self._checkpoints[block]
        last = block + 1 >= len(self._starts)
        if last and not self.done:  # being indexed still: what is indexed of it, not kept
            return self._decode(mark, len(self.ts) - mark.index)
        out = self._decode(mark, None if last else self._starts[block + 1] - mark.index)
        with self._lock:
            self._cache[block] = out
            while len(self._cache) > CACHED_BLOCKS:
                self._cache.popitem(last=False)
        return out

    def _decode(self, mark: _Checkpoint, want: int | None) -> list[Sample]:
        """``want`` samples from ``mark`` (None: to the end of the file)."""
        decoder = decoder_for(self.header, window=1)
        _restore(decoder, mark.state)
        out: list[Sample] = []
        items = self.stream.items_at(mark.offset)
        for _, item in items:
            out += decoder.run(item) if isinstance(item, CounterRun) else decoder.event(item)
            if want is not None and len(out) >= want:
                break
        else:
            out += decoder.finish()
        items.close()  # type: ignore[attr-defined]  # a generator: its file is closed now
        return out if want is None else out[:want]
