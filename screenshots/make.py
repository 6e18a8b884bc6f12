"""Make the README's screenshots with the app itself: ``.venv/bin/python screenshots/make.py``.

Each picture is the real ``GputopApp`` over the real ``Sampler`` and ``NvmlSource``, with pynvml
loading the fake driver library of ``tests/fakenvml.py`` (no GPU needed) on a manual clock, and a
scripted CPU. Nothing in them is a real measurement, and they say so: every GPU's name ends in
"(simulated)" (the fake's ``simulated`` option), the host field of the status line reads
"simulated", and the SVG's window title too. The process table is the one real thing: the fake
driver reports this script's own pid as holding a context, and psutil describes it.

Samples are pushed with ``app.ingest`` (as the tests do) while the fake's clock moves on by the
interval, so the charts have history at once; then ``p`` starts the app's own tick loop and the
picture is taken after its first tick. A rerun draws the same curves and numbers; only the
process table's pid, user, CPU % and command come from this machine.

The exceptions are the workload shots (``workload-160x50``, ``script-160x50``, ``ranks-160x50``):
a real child (the bundled ``mlp``; ``screenshots/train.py``, a script that knows nothing of gputop,
its steps detected by gputop's hooks; ``torchrun`` running ``tests/rank_scripts/ddp_train.py`` as
two ranks on gloo, rank 1's dataset slow) on this machine's CPU, launched by
``gputop.workload.Workload`` and watched in real time for ``WORKLOAD_SECONDS`` (the ranks' shot
until its straggler is found, too). There the CPU panel, the workload panel and its output are real (and vary
from run to run); the GPU is still the simulated one.

Options: ``--only NAME...`` makes some of the shots, ``--out DIR`` writes elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import fakeamdsmi  # noqa: E402  (tests/, on the path above)
import fakenvml  # noqa: E402
from gputop.model import CpuSample  # noqa: E402
from gputop.sampler import Sampler  # noqa: E402
from gputop.sources.amd import AmdSource, AmdUnavailable  # noqa: E402
from gputop.sources.cpu import CpuSource  # noqa: E402
from gputop.sources.gpu import GpuSource, combined  # noqa: E402
from gputop.sources.nvml import GpuUnavailable, NvmlSource  # noqa: E402
from gputop.tui.app import GputopApp, SelfCpu  # noqa: E402
from gputop.view.feed import LiveFeed  # noqa: E402

HOST = "simulated"  # the status line's host field: these pictures come from no real machine
GiB = 1 << 30


class ScriptedCpu:
    """A 16-core host feeding a training job: one busy main process, four data-loader workers,
    the rest nearly idle. Values are functions of the tick, so every run draws the same."""

    def __init__(self, cores: int = 16) -> None:
        self.cores = cores
        self.t = 0
        self._host = CpuSource()  # only to describe the pids the fake GPU reports

    def sample(self) -> CpuSample:
        t, self.t = self.t, self.t + 1
        util = []
        for i in range(self.cores):
            wave = 0.5 + 0.5 * math.sin(2 * math.pi * t / 23 + 1.7 * i)
            if i == 0:
                pct = 92 + 7 * wave  # the training loop's own thread
            elif i <= 4:
                pct = 35 + 45 * wave  # data-loader workers
            else:
                pct = 2 + 8 * wave
            util.append(round(pct, 1))
        return CpuSample(
            cpu_util_pct=sum(util) / len(util),
            core_util_pct=tuple(util),
            core_freq_mhz=tuple(3000.0 + 100 * (i % 4) for i in range(self.cores)),
            cpu_power_w=round(95 + 20 * math.sin(t / 7), 1),
            ram_used_bytes=48 * GiB,
            ram_total_bytes=125 * GiB,
            load1=5.2,
        )

    def describe(self, pids):
        return self._host.describe(pids)


@dataclass(frozen=True)
class Shot:
    name: str
    size: tuple[int, int]
    spec: str  # GPUTOP_FAKE_NVML grammar (tests/fakenvml.py)
    what: str
    workload: tuple[str, ...] = ()  # a real child: target and its arguments (see take_workload)
    env: tuple[tuple[str, str], ...] = ()  # the child's environment, beyond this script's
    amd: str = ""  # GPUTOP_FAKE_AMDSMI grammar (tests/fakeamdsmi.py): AMD GPUs beside (or instead of) NVIDIA's


SHOTS = (
    Shot("h100-160x50", (160, 50), "H100_SXM:simulated", "one H100, 160x50"),
    Shot("8gpu-160x50", (160, 50), "H100_SXM*8:simulated", "eight H100s, 160x50"),
    Shot("h100-80x24", (80, 24), "H100_SXM:simulated", "one H100, 80x24"),
    Shot("nogpu-120x40", (120, 40), "none:driver_not_loaded", "no GPU (driver not loaded), 120x40"),
    Shot("mi300x-160x50", (160, 50), "none", "one AMD MI300X, 160x50", amd="MI300X:simulated"),
    Shot(
        "workload-160x50",
        (160, 50),
        "H100_SXM:simulated",
        "the bundled mlp training on this CPU, 160x50",
        workload=("mlp", "--device", "cpu", "--steps", "100000"),
    ),
    Shot(
        "script-160x50",
        (160, 50),
        "H100_SXM:simulated",
        "an unmodified training script (screenshots/train.py) on this CPU, 160x50",
        workload=(str(HERE / "train.py"),),
    ),
    Shot(
        "ranks-160x50",
        (160, 50),
        "H100_SXM:simulated",
        "a 2-rank torchrun job on gloo on this CPU, rank 1's dataset slow, 160x50",
        workload=("torchrun", "--standalone", "--nproc_per_node=2", str(ROOT / "tests" / "rank_scripts" / "ddp_train.py")),
        env=(("STEPS", "100000"), ("SLOW_S", "0.004"), ("PYTHONWARNINGS", "ignore")),
    ),
)
WORKLOAD_SECONDS = 25.0  # real time the workload trains before the picture


class AdvancingSampler:
    """The real Sampler, with the fake driver's clock moved on by one interval before each tick:
    whoever calls it (this script or the app's own tick loop), samples are an interval apart
    and stamped on the fake's clock."""

    def __init__(self, sampler: Sampler, fake: fakenvml.FakeNvml, interval_s: float, amd: fakeamdsmi.FakeAmdSmi | None = None) -> None:
        self.sampler, self.fake, self.interval_s, self.amd = sampler, fake, interval_s, amd
        self._lock = threading.Lock()  # advance + sample as one step, whichever thread calls

    def sample(self):
        with self._lock:
            now_ns = self.fake.advance(self.interval_s)
            if self.amd is not None:
                self.amd.advance(self.interval_s)
            # stamped on the simulated clock, so the charts' time axis spans ticks x interval
            return replace(self.sampler.sample(), ts_ns=now_ns)

    def close(self) -> None:
        self.sampler.close()


def build(shot: Shot, interval_s: float) -> AdvancingSampler:
    devices, driver = fakenvml.parse_spec(shot.spec)
    fake = fakenvml.install(fakenvml.FakeNvml(devices, driver, real_time=False))
    clock = lambda: fake.now_ns / 1e9  # noqa: E731  (rates and GPM pairs follow the fake's time)
    sources: list[GpuSource] = []
    reason = None
    try:
        sources.append(NvmlSource.open(clock=clock))
    except GpuUnavailable as exc:
        reason = exc.reason
    amd = None
    if shot.amd:
        amd = fakeamdsmi.from_spec(shot.amd, real_time=False)
        fakeamdsmi.install(amd)
        try:
            sources.append(AmdSource.open(first_index=len(sources[0].devices) if sources else 0, clock=amd.now))
        except AmdUnavailable as exc:
            reason = exc.reason
    gpu = combined(sources)
    return AdvancingSampler(Sampler(ScriptedCpu(), gpu, gpu_unavailable=reason, clock=clock), fake, interval_s, amd)


async def take(shot: Shot, out: Path, ticks: int, interval_s: float) -> Path:
    sampler = build(shot, interval_s)
    # Own CPU % would be this script's ingest loop, not gputop's: shown as n/a rather than that.
    frozen = SelfCpu(cpu_clock=lambda: 0.0, wall_clock=lambda: 0.0)
    app = GputopApp(
        LiveFeed(sampler, interval_s, host=HOST, paused=True), self_cpu=frozen, frame_s=0.0
    )  # every ingested sample drawn at once
    try:
        async with app.run_test(size=shot.size) as pilot:
            # History first, far faster than real time; then "p" starts the app's own tick
            # loop (one tick at once), so the picture shows it live after exactly ticks + 1.
            for _ in range(ticks):
                app.ingest(sampler.sample())
                await pilot.pause()
            await pilot.press("p")
            deadline = time.monotonic() + 30
            while app.samples_taken < ticks + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the app took no sample of its own within 30 s")
                await pilot.pause(0.01)
            await pilot.pause()
            app.title = f"gputop: {shot.what} (simulated hardware)"
            path = Path(app.save_screenshot(f"{shot.name}.svg", str(out)))
    finally:
        sampler.close()
    return path


async def take_workload(shot: Shot, out: Path, interval_s: float) -> Path:
    """A real child (``gputop.workload.Workload``) training on this machine's CPU, watched in real
    time: the CPU side and the workload panel are real here, the GPU is still the simulated one."""
    from gputop.workload import Workload

    devices, driver = fakenvml.parse_spec(shot.spec)
    fakenvml.install(fakenvml.FakeNvml(devices, driver, real_time=True))
    sampler = Sampler(CpuSource(), NvmlSource.open())
    # torchrun is found beside this Python (a virtual environment's bin/ need not be on PATH)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    workload = Workload(shot.workload[0], shot.workload[1:], env={**os.environ, "PATH": path, **dict(shot.env)})
    workload.start()
    app = GputopApp(LiveFeed(sampler, interval_s, host="simulated GPU", workload=workload))
    try:
        async with app.run_test(size=shot.size) as pilot:
            deadline = time.monotonic() + WORKLOAD_SECONDS
            while time.monotonic() < deadline or (shot.env and _no_straggler(app.workload_state, deadline)):
                await pilot.pause(0.1)
            state = app.workload_state
            if state is None or not state.running or state.step is None:
                raise RuntimeError(f"the workload is not training after {WORKLOAD_SECONDS:.0f} s: {state}")
            app.title = f"gputop: {shot.what} (GPU simulated)"
            path = Path(app.save_screenshot(f"{shot.name}.svg", str(out)))
    finally:
        workload.stop()
        sampler.close()
    return path


def _no_straggler(state, deadline: float) -> bool:
    """A distributed job whose straggler is not named yet (waited for up to a minute more)."""
    if time.monotonic() > deadline + 60:
        raise RuntimeError(f"no straggler named {WORKLOAD_SECONDS + 60:.0f} s into the job: {state}")
    return state is None or state.straggler is None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the SVGs (default: here)")
    parser.add_argument("--ticks", type=int, default=240, help="samples before the picture (default 240)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples (default 0.5)")
    parser.add_argument("--only", nargs="*", help="names of the shots to make (default: all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for shot in SHOTS:
        if args.only and shot.name not in args.only:
            continue
        if shot.workload:
            path = asyncio.run(take_workload(shot, args.out, args.interval))
        else:
            path = asyncio.run(take(shot, args.out, args.ticks, args.interval))
        print(f"{path}  ({shot.what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
