"""GPU Performance Monitoring (Hopper and newer): SM activity, occupancy, tensor and FP pipes, DRAM.

NVML computes GPM metrics from a pair of samples of the device's counters. Each device keeps two
sample buffers and swaps them every tick: the newer sample of one pair is the older of the next.
A pair closer than ~100 ms (MIN_PAIR_S less PAIR_SLACK_S) is too short to mean much, so a tick
that comes sooner takes no sample and keeps the values of the last pair.

Only ``gputop.sources.nvml`` uses this module; every NVML call goes through the ``query``
function it passes in (its one choke point for errors and lost devices).
"""

from __future__ import annotations

from typing import Any, Callable

import pynvml

MIN_PAIR_S = 0.1
# a pair this much shorter still counts: the sampler reads the GPUs ~0.09-0.1 s apart at fast
# intervals (gputop.sampler.DUE_EARLY_S), and each metric is computed over the pair's own
# interval, so a 90 ms pair measures as well as a 100 ms one
PAIR_SLACK_S = 0.015

# (GpuSample field, GPM metric id)
METRICS: tuple[tuple[str, int], ...] = (
    ("sm_active_pct", pynvml.NVML_GPM_METRIC_SM_UTIL),
    ("sm_occupancy_pct", pynvml.NVML_GPM_METRIC_SM_OCCUPANCY),
    ("tensor_active_pct", pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL),
    ("dram_bw_util_pct", pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL),
    ("fp16_active_pct", pynvml.NVML_GPM_METRIC_FP16_UTIL),
    ("fp32_active_pct", pynvml.NVML_GPM_METRIC_FP32_UTIL),
    ("fp64_active_pct", pynvml.NVML_GPM_METRIC_FP64_UTIL),
)
NO_VALUES: dict[str, float | None] = {name: None for name, _ in METRICS}

Query = Callable[..., Any]


class Gpm:
    """GPM metrics of one device. ``open`` returns None where sample buffers can't be had."""

    def __init__(self, handle: Any, query: Query, samples: list[Any]) -> None:
        self._handle = handle
        self._query = query
        self._samples = samples
        self._current = 0  # index of the buffer the next sample goes into
        self._previous_t: float | None = None  # when the other buffer was filled
        self._values = NO_VALUES
        # One request struct per device, reused every tick (it holds room for every GPM metric).
        self._request = pynvml.c_nvmlGpmMetricsGet_t()
        self._request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        for i, (_, metric_id) in enumerate(METRICS):
            self._request.metrics[i].metricId = metric_id

    @classmethod
    def open(cls, handle: Any, query: Query) -> Gpm | None:
        samples: list[Any] = []
        for _ in range(2):
            sample = query(pynvml.nvmlGpmSampleAlloc)
            if sample is None:
                for allocated in samples:
                    query(pynvml.nvmlGpmSampleFree, allocated)
                return None
            samples.append(sample)
        return cls(handle, query, samples)

    def read(self, now: float) -> dict[str, float | None]:
        """The latest metrics; all None until two samples ~100 ms apart exist."""
        if self._previous_t is not None and now - self._previous_t < MIN_PAIR_S - PAIR_SLACK_S:
            return self._values
        current = self._samples[self._current]
        if self._query(pynvml.nvmlGpmSampleGet, self._handle, current) is None:
            self._previous_t, self._values = None, NO_VALUES  # a failed sample breaks the pair
            return self._values
        if self._previous_t is not None:
            self._values = self._metrics(self._samples[1 - self._current], current)
        self._previous_t = now
        self._current = 1 - self._current
        return self._values

    def _metrics(self, older: Any, newer: Any) -> dict[str, float | None]:
        request = self._request
        request.numMetrics = len(METRICS)
        request.sample1 = older
        request.sample2 = newer
        if self._query(pynvml.nvmlGpmMetricsGet, request) is None:
            return NO_VALUES
        # the array fetched once: each attribute of pynvml's structs is a Python call (theirs)
        ok, metrics = pynvml.NVML_SUCCESS, request.metrics
        return {name: metric.value if metric.nvmlReturn == ok else None for (name, _), metric in zip(METRICS, metrics)}

    def close(self) -> None:
        for sample in self._samples:
            self._query(pynvml.nvmlGpmSampleFree, sample)
        self._samples = []
