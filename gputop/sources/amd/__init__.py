"""AMD GPUs through amdsmi (AMD's Python bindings over ROCm's libamd_smi.so): the only modules
that import amdsmi.

- ``library``: amdsmi imported quietly (stdout captured), the choke point every call goes
  through (an answer the device can't give is ``None``), why amdsmi would not start;
- ``info``: what a device is, read once at open (``GpuInfo``);
- ``source``: ``AmdSource``, devices probed once and read per tick.
"""

from gputop.sources.amd.library import AmdUnavailable
from gputop.sources.amd.source import AmdSource

__all__ = ["AmdSource", "AmdUnavailable"]
