"""Synthetic, deterministic samples and a fake sampler for the TUI tests (no GPU, no psutil), the
live view under Pilot (``make_app``, ``until``, ``screen_text``) and a fake launched workload.

Every value is a function of a tick number ``t``, so a chart over ticks 0..n looks the same on
every run and snapshot SVGs are stable.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
import time
from dataclasses import replace
from typing import Callable, Sequence

from rich.console import Console

from gputop.model import CpuSample, GpuInfo, GpuProcess, GpuSample, RankRow, Sample
from gputop.tui.app import GputopApp, SelfCpu
from gputop.view.feed import LiveFeed
from gputop.workload import WorkloadState

T0_NS = 1_700_000_000_000_000_000


def h100(index: int = 0) -> GpuInfo:
    return GpuInfo(
        index=index,
        name="NVIDIA H100 80GB HBM3",
        uuid=f"GPU-h100-{index:04d}",
        pci_bus_id=f"00000000:{0x18 + index:02X}:00.0",
        architecture="Hopper",
        sm_count=132,
        mem_bus_width_bits=5120,
        max_mem_clock_mhz=2619,
        peak_dram_bw_bytes_per_s=3.35e12,
        driver_version="550.54.15",
        cuda_version="12.4",
        gpm_supported=True,
        pcie_link_gen=5,
        pcie_link_width=16,
        pcie_link_gen_max=5,
        pcie_link_width_max=16,
    )


def a100(index: int = 0) -> GpuInfo:
    """An Ampere board: no GPM, so SM activity and DRAM bandwidth are None (n/a)."""
    return GpuInfo(
        index=index,
        name="NVIDIA A100-SXM4-40GB",
        uuid=f"GPU-a100-{index:04d}",
        pci_bus_id=f"00000000:{0x18 + index:02X}:00.0",
        architecture="Ampere",
        sm_count=108,
        mem_bus_width_bits=5120,
        max_mem_clock_mhz=1215,
        peak_dram_bw_bytes_per_s=1.555e12,
        driver_version="550.54.15",
        cuda_version="12.4",
        gpm_supported=False,
    )


def _wave(t: int, phase: float, lo: float, hi: float, period: float = 17.0) -> float:
    """A smooth deterministic value between lo and hi, rounded so text is stable."""
    x = 0.5 + 0.5 * math.sin(2 * math.pi * t / period + phase)
    return round(lo + (hi - lo) * x, 1)


def cpu_sample(t: int = 0, cores: int = 2, power_w: float | None = 38.0) -> CpuSample:
    util = tuple(_wave(t, 1.3 * i, 5.0, 98.0) for i in range(cores))
    return CpuSample(
        cpu_util_pct=round(sum(util) / cores, 1),
        core_util_pct=util,
        core_freq_mhz=tuple(2000.0 + 100 * (i % 12) for i in range(cores)),
        cpu_power_w=power_w,
        ram_used_bytes=12_345 * 1024**2,
        ram_total_bytes=31_900 * 1024**2,
        load1=1.52,
    )


def processes(index: int, n: int = 2) -> tuple[GpuProcess, ...]:
    return tuple(
        GpuProcess(
            pid=4242 + 100 * index + k,
            gpu_index=index,
            kind="compute",
            gpu_mem_bytes=(30 - 5 * k) * 1024**3,
            sm_util_pct=80.0 - 30 * k,
            name="python",
            user="alice" if k == 0 else "bob",
            command=f"python train.py --gpu {index}" if k == 0 else "python eval.py",
            cpu_pct=99.0 - 40 * k,
        )
        for k in range(n)
    )


def gpu_sample(info: GpuInfo, t: int = 0, **overrides) -> GpuSample:
    phase = 0.7 * info.index
    gpm = info.gpm_supported
    sm = _wave(t, phase, 40.0, 95.0) if gpm else None
    bw_pct = _wave(t, phase + 1.0, 20.0, 85.0) if gpm else None
    peak = info.peak_dram_bw_bytes_per_s
    values = dict(
        gpu_util_pct=100.0 if gpm else 97.0,
        mem_busy_pct=_wave(t, phase, 10.0, 60.0),
        sm_active_pct=sm,
        sm_occupancy_pct=None if sm is None else round(sm * 0.6, 1),
        tensor_active_pct=None if sm is None else round(sm * 0.4, 1),
        dram_bw_util_pct=bw_pct,
        dram_bw_bytes_per_s=None if bw_pct is None else bw_pct / 100 * peak,
        mem_used_bytes=61_234 * 1024**2,
        mem_total_bytes=81_559 * 1024**2,
        power_w=_wave(t, phase + 2.0, 250.0, 650.0),
        power_limit_w=700.0,
        energy_j=1_000_000.0 + 500.0 * t,
        sm_clock_mhz=1980,
        mem_clock_mhz=2619,
        temp_c=64.0,
        fan_pct=None,
        pstate=0,
        clock_event_reasons=("sw_power_cap",),
        pcie_tx_bytes_per_s=1.2e9,
        pcie_rx_bytes_per_s=3.4e9,
        nvlink_tx_bytes_per_s=None,
        nvlink_rx_bytes_per_s=None,
        processes=processes(info.index),
    )
    values.update(overrides)
    return GpuSample(info=info, **values)


def make_sample(n_gpus: int = 1, t: int = 0, cores: int = 2, gpu_unavailable: str | None = "NVIDIA driver not loaded") -> Sample:
    gpus = tuple(gpu_sample(h100(i), t) for i in range(n_gpus))
    return Sample(ts_ns=T0_NS + t * 1_000_000_000, cpu=cpu_sample(t, cores), gpus=gpus, gpu_unavailable=None if gpus else gpu_unavailable)


def lost(gpu: GpuSample) -> GpuSample:
    return GpuSample(info=gpu.info, lost=True)


def with_gpu(sample: Sample, index: int, **overrides) -> Sample:
    """``sample`` with GPU ``index``'s fields replaced."""
    gpus = tuple(replace(g, **overrides) if g.info.index == index else g for g in sample.gpus)
    return replace(sample, gpus=gpus)


class FakeSampler:
    """``sample()`` returns ``make(t)`` for t = 0, 1, 2, ...; counts calls (thread-safe)."""

    def __init__(self, make: Callable[[int], Sample] | Sequence[Sample] | Sample) -> None:
        if isinstance(make, Sample):
            fixed = make
            make = lambda t: fixed  # noqa: E731
        elif not callable(make):
            seq = list(make)
            make = lambda t: seq[min(t, len(seq) - 1)]  # noqa: E731
        self._make = make
        self._lock = threading.Lock()
        self.calls = 0

    def sample(self) -> Sample:
        with self._lock:
            t = self.calls
            self.calls += 1
        return self._make(t)


def contrast(fg: tuple[int, int, int], bg: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours: 1 (same) to 21 (black on white)."""

    def luminance(rgb: tuple[int, int, int]) -> float:
        def channel(v: int) -> float:
            c = v / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = rgb
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)

    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_contrasts(app) -> list[tuple[float, int, str]]:
    """(contrast, row, text) of every run of text on the app's screen as drawn (the colours a
    terminal gets); runs without a letter or digit (borders, chart dots, bars) are left out."""
    out = []
    for y, strip in enumerate(app.screen._compositor.render_strips()):
        for segment in strip:
            style = segment.style
            if style is None or not any(ch.isalnum() for ch in segment.text):
                continue
            assert style.color is not None and style.bgcolor is not None, (y, segment)
            fg, bg = style.color.get_truecolor(), style.bgcolor.get_truecolor()
            out.append((contrast(tuple(fg), tuple(bg)), y, segment.text.strip()))
    return out


# -------------------------------------------------------- the live view under Pilot


def frozen_self_cpu() -> SelfCpu:
    return SelfCpu(cpu_clock=lambda: 0.0, wall_clock=lambda: 0.0)  # shows "n/a": deterministic


def make_app(
    sampler, interval_s: float = 1.0, *, host: str = "testhost", paused: bool = False, workload=None, history=None, **kwargs
) -> GputopApp:
    """The live view over a LiveFeed of ``sampler`` (app options in ``kwargs``)."""
    kwargs.setdefault("self_cpu", frozen_self_cpu())
    kwargs.setdefault("frame_s", 0.0)  # every ingested sample drawn at once (see test_frames_*)
    feed = LiveFeed(sampler, interval_s, host=host, paused=paused, workload=workload, history=history)
    return GputopApp(feed, **kwargs)


async def until(pilot, condition, timeout_s: float = 5.0) -> None:
    """Let the app run until ``condition()`` holds (sampling runs in a worker thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.01)
    await pilot.pause()


async def started(pilot, samples: int = 1) -> None:
    await until(pilot, lambda: pilot.app.samples_taken >= samples)


def screen_text(app: GputopApp, styles: bool = False) -> str:
    """The visible screen as plain text (what a user reads); with ``styles``, colours included
    (what a terminal shows)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=styles)


# ------------------------------------------------------------------ a launched workload


def silent(**overrides) -> WorkloadState:
    """A user's script that writes no events: only its process and output are known."""
    values = dict(
        name="train.py",
        argv=("python", "train.py"),
        pid=4242,
        status="running",
        returncode=None,
        started_ns=time.time_ns() - 5 * 10**9,
        ended_ns=None,
        events=False,
        device=None,
        device_name=None,
        precision=None,
        batch_size=None,
        sample_unit="samples",
        flops_per_step=None,
        peak_flops=None,
        peak_flops_source=None,
        steps_planned=None,
        step=None,
        samples_per_s=None,
        tflops=None,
        mfu_pct=None,
        loss=None,
        losses=(),
        joules_per_step=None,
        recent_steps=(),
        error=None,
        pids=frozenset({4242}),
        output_tail=("epoch 1 done",),
    )
    values.update(overrides)
    return WorkloadState(**values)


class FakeWorkload:
    """``poll`` returns the next of ``states`` (then the last one again); counts ``stop`` calls."""

    def __init__(self, *states: WorkloadState) -> None:
        self.states = list(states)
        self.polled: list[object] = []
        self.stops = 0
        self.stacks: list[dict] = []  # what capture_stacks answers

    def capture_stacks(self, timeout_s: float = 5.0) -> list[dict]:
        return self.stacks

    def poll(self, sample=None) -> WorkloadState:
        self.polled.append(sample)
        return self.states[min(len(self.polled) - 1, len(self.states) - 1)]

    def stop(self, grace_s: float = 5.0) -> None:
        self.stops += 1


def workload_app(workload, n_gpus: int = 1, **kwargs):
    return make_app(FakeSampler(lambda t: make_sample(n_gpus, t)), workload=workload, **kwargs)


def rank_row(rank: int, **kw) -> RankRow:
    """One rank's row of the live ranks table, with typical values; ``kw`` overrides them."""
    values = dict(
        rank=rank,
        pid=700 + rank,
        device="cpu",
        device_uuid=None,
        steps=120,
        steps_per_s=48.5,
        step_p50_s=0.0206,
        data_wait_share=0.05,
        last_step_age_s=0.1,
        state="stepping",
    )
    values.update(kw)
    return RankRow(**values)
