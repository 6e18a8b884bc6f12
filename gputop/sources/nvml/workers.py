"""SideBySide: one function over several items at once, on daemon threads kept for the source's
life (a read of 8 GPUs at 10 Hz would otherwise start 80 threads a second).

Not concurrent.futures: its workers are joined at interpreter exit, so one NVML call hung in the
driver (a GPU that stopped answering) would hold gputop's exit forever; a daemon thread is left
to the exit, as the sampling thread is (gputop.sampler.CLOSE_WAIT_S).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Job(Generic[T, R]):
    def __init__(self, fn: Callable[[T], R], item: T) -> None:
        self.fn, self.item = fn, item
        self.done = threading.Event()
        self.value: R | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(self.item)
        except BaseException as exc:  # handed to the caller, raised there
            self.error = exc
        finally:
            self.done.set()

    def result(self) -> R:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class SideBySide:
    """``map(fn, items)``: ``fn`` over every item on ``workers`` daemon threads; the results in
    order (the first exception raised, once all are done). ``close()`` lets the threads end."""

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job[object, object] | None] = queue.SimpleQueue()
        self._workers = workers
        for i in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True).start()

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        jobs = [_Job(fn, item) for item in items]
        for job in jobs:
            self._jobs.put(job)  # type: ignore[arg-type]
        for job in jobs:
            job.done.wait()
        return [job.result() for job in jobs]

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job.run()

    def close(self) -> None:
        for _ in range(self._workers):
            self._jobs.put(None)
