"""The live view's CPU per frame, headless, with a cProfile of where it goes.

Run by hand:  .venv/bin/python benchmarks/frame_cost.py [--frames 200] [--size 160x50] [--profile N]
              [--breakdown]

The app (GputopApp over a paused LiveFeed, so no sampling thread) runs under Textual's headless
driver at the given size. The samples come from the real Sampler (psutil, /proc) over one
simulated H100 of tests/fakenvml.py on a manual clock: before each frame the fake's clock and the
sampler's move on 1 s, so the GPU values, the GPM pairs and the process scans (every 2 s) are
those of a 1 Hz run. Each sample is ingested, then the app settles (``pilot.pause(0.02)``). CPU
is this process's ``time.process_time`` over the frames (the sample included, shown apart), less
the same number of settles without a sample (Textual's idle), per frame. Left out: the terminal
write (the headless driver skips ``render_segments``, ~5 % of a frame on a real terminal by
py-spy), the thread hand-off, and the charts' time axis (the samples are stamped with the real
clock, 20 ms apart). A deterministic A/B measure of one tree against another (run it from a
worktree of the older commit); peers.py is the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import fakenvml  # noqa: E402
from gputop.sampler import Sampler  # noqa: E402
from gputop.sources.cpu import CpuSource  # noqa: E402
from gputop.sources.nvml import NvmlSource  # noqa: E402
from gputop.tui.app import GputopApp  # noqa: E402
from gputop.tui.selfcpu import SelfCpu  # noqa: E402
from gputop.view.feed import LiveFeed  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def run(frames: int, size: tuple[int, int], profile: cProfile.Profile | None) -> tuple[float, float, float]:
    """(CPU ms per frame with its settle, per idle settle, per sample)"""
    fake = fakenvml.install(fakenvml.FakeNvml([fakenvml.H100_SXM], real_time=False))
    clock = Clock()
    sampler = Sampler(CpuSource(clock=clock), NvmlSource.open(), clock=clock)
    feed = LiveFeed(sampler, 1.0, host="bench", paused=True)
    app = GputopApp(feed, self_cpu=SelfCpu(cpu_clock=lambda: 0.0, wall_clock=lambda: 0.0), frame_s=0.0)

    def tick():
        fake.advance(1.0)
        clock.now += 1.0
        c = time.process_time()
        s = sampler.sample()
        return s, time.process_time() - c

    sampling = 0.0
    async with app.run_test(size=size) as pilot:
        for _ in range(20):  # warm: history, caches, the table's rows
            app.ingest(tick()[0])
            await pilot.pause(0.02)
        c0 = time.process_time()
        for _ in range(frames):
            await pilot.pause(0.02)
        idle = time.process_time() - c0
        if profile is not None:
            profile.enable()
        c0 = time.process_time()
        for _ in range(frames):
            s, cost = tick()
            sampling += cost
            app.ingest(s)
            await pilot.pause(0.02)
        busy = time.process_time() - c0
        if profile is not None:
            profile.disable()
    sampler.close() if hasattr(sampler, "close") else None
    return busy / frames * 1000, idle / frames * 1000, sampling / frames * 1000


class Breakdown:
    """Wall time per frame in each widget class's ``render_lines`` (what the compositor asks it to
    paint) and in the watchers that hand it the sample, by wrapping them (--breakdown)."""

    WATCHERS = ("watch_sample", "watch_tick", "update_lines", "replot", "_sync")

    def __init__(self) -> None:
        import collections
        import functools
        import importlib
        import inspect
        import pkgutil

        from textual import _compositor
        from textual.widget import Widget

        import gputop.tui.widgets as widgets

        self.time: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()

        def wrap(cls: type, name: str, label: str | None, per_type: bool = False) -> None:
            orig = cls.__dict__[name]

            @functools.wraps(orig)
            def timed(obj: object, *args: object, **kwargs: object) -> object:
                t = time.perf_counter()
                try:
                    return orig(obj, *args, **kwargs)
                finally:
                    key = f"{name}:{type(obj).__name__}" if per_type else str(label)
                    self.time[key] += time.perf_counter() - t
                    self.calls[key] += 1

            setattr(cls, name, timed)

        wrap(Widget, "render_lines", None, per_type=True)
        wrap(_compositor.Compositor, "render_update", "compositor render_update (all painting)")
        wrap(GputopApp, "ingest", "app ingest (the watchers below)")
        wrap(Sampler, "sample", "sampler.sample")
        for info in pkgutil.iter_modules(widgets.__path__):
            module = importlib.import_module(f"gputop.tui.widgets.{info.name}")
            for cls_name, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ == module.__name__:
                    for name in self.WATCHERS:
                        if name in cls.__dict__:
                            wrap(cls, name, f"{cls_name}.{name}")

    def report(self, frames: int) -> str:
        rows = sorted(self.time.items(), key=lambda kv: -kv[1])
        return "\n".join(f"{1000 * t / frames:7.3f} ms a frame  {self.calls[k] / frames:5.2f} calls  {k}" for k, t in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="160x50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions (cumulative)")
    parser.add_argument("--breakdown", action="store_true", help="also one run with each widget's painting and watchers timed")
    args = parser.parse_args(argv)
    size = tuple(int(x) for x in args.size.split("x"))
    per_frame = []
    for r in range(args.repeats):
        busy, idle, sampling = asyncio.run(run(args.frames, size, None))  # type: ignore[arg-type]
        per_frame.append(busy - idle)
        print(
            f"run {r + 1}: {busy:.2f} ms a frame with settling, {idle:.2f} ms idle settling, "
            f"{busy - idle:.2f} ms the frame, of which the sample {sampling:.2f} ms",
            file=sys.stderr,
        )
    print(
        f"frame CPU at {args.size}: median {statistics.median(per_frame):.2f} ms "
        f"({min(per_frame):.2f}-{max(per_frame):.2f}) over {args.repeats} runs of {args.frames} frames"
    )
    if args.breakdown:
        breakdown = Breakdown()
        asyncio.run(run(args.frames, size, None))  # type: ignore[arg-type]
        print(f"breakdown, wall time ({args.frames} frames and 20 of warm-up, per frame measured):")
        print(breakdown.report(args.frames + 20))
    if args.profile:
        prof = cProfile.Profile()
        asyncio.run(run(args.frames, size, prof))  # type: ignore[arg-type]
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.profile)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
