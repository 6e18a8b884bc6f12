"""PCIe throughput where the driver has no PCIe byte counters: off the tick path.

``nvmlDeviceGetPcieThroughput`` samples the link over a 20 ms window inside the driver, once per
direction: two calls x 20 ms x 8 GPUs would hold a GPU read for a third of a second. So these
calls run on a thread of their own (``PcieWatch``), every device of a round side by side (the
windows overlap; the driver time is the same), on a schedule that keeps their driver time within
a budget that grows with the devices read (``BUDGET_S_PER_S_PER_GPU``, at most
``BUDGET_S_PER_S``: one GPU without byte counters costs the driver less than nvitop's reads of
it, 8 GPUs no more than before); a GPU read takes the latest values and never waits for a window.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from gputop.sources.nvml.query import GpuLost, Reader, read_all
from gputop.sources.nvml.workers import SideBySide

log = logging.getLogger("gputop.sources.nvml")

WINDOW_S = 0.02  # what one call waits in the driver (NVML's reference: a 20 ms sample)
# These calls' driver time, per second: 5 ms a GPU (a round of tx and rx every 8 s), 20 ms at most
# (from 4 GPUs on: every 16 s on 8). On one GPU a fixed 20 ms/s was three times the rest of the
# live view's driver time and made it cost more than nvitop's (benchmarks/README.md).
BUDGET_S_PER_S_PER_GPU = 0.005
BUDGET_S_PER_S = 0.02
MIN_INTERVAL_S = 1.0  # however few devices: a round a second at most
CLOSE_WAIT_S = 1.0  # close() waits this long for a round under way (a hung driver call is left)


def interval_for(calls: int, devices: int) -> float:
    """Seconds between rounds of ``calls`` throughput calls on ``devices`` GPUs, within the budget."""
    budget = min(BUDGET_S_PER_S, BUDGET_S_PER_S_PER_GPU * max(1, devices))
    return max(MIN_INTERVAL_S, calls * WINDOW_S / budget)


class PcieWatch:
    """Reads each device's PCIe throughput readers every ``interval_s``, devices side by side.

    ``readers``: per device index, its ``Reader``s (tx and rx). ``latest(index)``: the values of
    the last round that answered (an empty dict before the first).
    """

    def __init__(self, readers: dict[int, list[Reader]]) -> None:
        self._readers = {index: list(rs) for index, rs in readers.items() if rs}
        self.interval_s = interval_for(sum(len(rs) for rs in self._readers.values()), len(self._readers))
        self._values: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gputop-pcie", daemon=True)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(f for rs in self._readers.values() for r in rs for f in r.fields)

    def start(self) -> None:
        if self._readers:
            self._thread.start()

    def latest(self, index: int) -> dict[str, Any]:
        with self._lock:
            return self._values.get(index, {})

    def _run(self) -> None:
        pool = SideBySide(len(self._readers), "gputop-pcie")
        try:
            while not self._stop.is_set():
                for index, values in zip(self._readers, pool.map(self._read, self._readers.values())):
                    if values is not None:
                        with self._lock:
                            self._values[index] = values
                self._stop.wait(self.interval_s)
        finally:
            pool.close()

    @staticmethod
    def _read(readers: list[Reader]) -> dict[str, Any] | None:
        try:
            return read_all(readers)
        except GpuLost:  # the GPU read finds it lost too, and says so
            return None

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(CLOSE_WAIT_S)
            if self._thread.is_alive():
                log.warning("a PCIe throughput read has not returned for %.0f s", CLOSE_WAIT_S)
