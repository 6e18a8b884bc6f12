"""NVIDIA GPUs through NVML (pynvml): the source the sampler reads. Its modules are the only ones
that import pynvml:

- ``query``: the one choke point every NVML call goes through (a query the device or driver
  can't answer gives ``None``, never 0; a lost GPU raises ``GpuLost``; each call timed: gputop's
  own driver time), and the tables of what a tick asks a device;
- ``info``: what a device is, read once at open (``GpuInfo``), and why NVML could not start;
- ``gpm``: GPU Performance Monitoring (Hopper and newer) from pairs of counter samples;
- ``pcie``: PCIe throughput without byte counters (a 20 ms window per call) off the tick path;
- ``workers``: devices read side by side, on daemon threads;
- ``source``: ``NvmlSource``, devices probed once and read per tick.
"""

from gputop.sources.nvml.query import SLOW_INTERVAL_S, GpuUnavailable
from gputop.sources.nvml.source import NvmlSource

__all__ = ["GpuUnavailable", "NvmlSource", "SLOW_INTERVAL_S"]
