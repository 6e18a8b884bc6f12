"""Launch a workload (a bundled one or any script) under observation, read its events, stop it.

The package, one module a concern:

- ``targets``: what ``--run`` names (``resolve``, ``BUNDLED``, ``WorkloadError``);
- ``process``: spawn in its own process group, reap, stop the group (the only ``subprocess`` user);
- ``pipes``: stdout/stderr and the events pipe, drained by threads;
- ``events``: event lines parsed and checked into steps and marks;
- ``energy``: the device's energy curve and each step's share;
- ``rates``: samples/s, TFLOP/s, MFU and J/step, for the live view, ``compare`` and ``report``;
- ``launcher``: the ``Workload`` facade over them.

The contract that views and recorders read, ``WorkloadState``, ``WorkloadStep`` and
``WorkloadMark``, lives in ``gputop.model``. ``Workload`` is imported on first use, so that
``gputop.workload.rates`` (used by ``report``) pulls in no ``subprocess``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gputop.model import WorkloadMark, WorkloadState, WorkloadStep
from gputop.signals import signal_name
from gputop.workload.targets import BUNDLED, WorkloadError, resolve

if TYPE_CHECKING:
    from gputop.workload.launcher import Workload


def __getattr__(name: str) -> object:
    if name == "Workload":
        from gputop.workload.launcher import Workload

        return Workload
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BUNDLED", "Workload", "WorkloadError", "WorkloadMark", "WorkloadState", "WorkloadStep", "resolve", "signal_name"]
