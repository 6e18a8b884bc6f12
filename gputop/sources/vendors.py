"""Every vendor's GPUs opened side by side: NVIDIA through NVML, then AMD through amdsmi (or,
without ROCm, the amdgpu driver's sysfs), AMD's indexes following NVIDIA's. Where none opens,
one line says why."""

from __future__ import annotations

import logging

from gputop.sources.gpu import GpuSource, combined

log = logging.getLogger("gputop.sources")


def open_gpus() -> tuple[GpuSource | None, str | None]:
    """(the GPUs as one source, None) or (None, why no GPU is shown).

    NVIDIA's reason is the line shown where neither vendor has a GPU; AMD's is added where its
    library was found (a machine with ROCm): without ROCm it is only logged, so an NVIDIA-only
    machine reads as it always has.
    """
    from gputop.sources.amd import AmdSource, AmdUnavailable
    from gputop.sources.nvml import GpuUnavailable, NvmlSource

    sources: list[GpuSource] = []
    nvidia_reason: str | None = None
    try:
        sources.append(NvmlSource.open())
    except GpuUnavailable as exc:
        nvidia_reason = exc.reason
        log.info("no NVIDIA GPU shown: %s", exc.reason)
    first = len(sources[0].devices) if sources else 0
    amd_reason: str | None = None
    try:
        sources.append(AmdSource.open(first_index=first))
    except AmdUnavailable as exc:
        log.info("no AMD GPU shown through amdsmi: %s", exc.reason)
        amd_reason = exc.reason if exc.library_found else None
        if not exc.library_found:  # no ROCm: what the amdgpu driver alone gives
            sources.extend(_sysfs(first))
    gpu = combined(sources)
    if gpu is not None:
        return gpu, None
    reason = nvidia_reason or "no NVIDIA GPU found"
    return None, reason if amd_reason is None else f"{reason}; AMD: {amd_reason}"


def _sysfs(first: int) -> list[GpuSource]:
    from gputop.sources.amd import AmdUnavailable
    from gputop.sources.amd.sysfs import SysfsSource

    try:
        return [SysfsSource.open(first_index=first)]
    except AmdUnavailable as exc:
        log.info("no AMD GPU shown from sysfs: %s", exc.reason)
        return []
