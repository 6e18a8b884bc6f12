"""The live view beside a launched workload, drawn by the app itself over the real sampler, saved
as SVG at 160x50 and 80x24 (for tests/gpu/test_gpu_screenshots.py).

screenshots/make.py cannot do this on a GPU: it installs the NVML fake itself and scripts the
CPU. Here the sources are the ones `gputop` builds (gputop.sampler.open_real): NVML on the GPU
machine, or the fake where the environment installs it (tests/sitecustom, GPUTOP_FAKE_NVML, as
as the subprocess tests do). The picture is taken once the workload has reported a step.

    python3 tests/gpu/screenshot.py --out DIR --seconds 20 --title T --run matmul -- --device cuda
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

SIZES = ((160, 50), (80, 24))


def parse(argv: list[str]) -> argparse.Namespace:
    run_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, run_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the SVGs")
    parser.add_argument("--seconds", type=float, default=20.0, help="real time before the first picture, at least (default 20)")
    parser.add_argument("--steps", type=int, default=3, help="steps the workload must have reported first (default 3)")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=90.0,
        metavar="S",
        help="give up when the workload has not reported --steps after S seconds (default 90)",
    )
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples (default 0.5)")
    parser.add_argument("--title", default="", help="the SVG window's title, after 'gputop: '")
    parser.add_argument("--host", default=None, help="the status line's host field")
    parser.add_argument("--run", required=True, metavar="NAME|SCRIPT", help="the workload; its arguments after --")
    args = parser.parse_args(argv)
    args.run_args = run_args
    return args


async def shoot(args: argparse.Namespace) -> list[Path]:
    from gputop.sampler import open_real
    from gputop.tui.app import GputopApp
    from gputop.view.feed import LiveFeed
    from gputop.workload import Workload

    args.out.mkdir(parents=True, exist_ok=True)
    workload = Workload(args.run, args.run_args)
    sampler = open_real()
    paths = []
    try:
        workload.start()
        app = GputopApp(LiveFeed(sampler, args.interval, host=args.host, workload=workload))
        async with app.run_test(size=SIZES[0]) as pilot:
            t0 = time.monotonic()
            while True:
                await pilot.pause(0.1)
                state, waited = app.workload_state, time.monotonic() - t0
                stepping = state is not None and state.running and (state.step or 0) >= args.steps
                if stepping and waited >= args.seconds:
                    break
                if waited > args.max_wait or (state is not None and not state.running):
                    what = "no state" if state is None else f"{state.status}, phase {state.phase}, step {state.step}, error {state.error}"
                    raise RuntimeError(f"the workload is not running {args.steps} steps after {waited:.0f} s ({what})")
            app.title = f"gputop: {args.title}" if args.title else "gputop"
            for width, height in SIZES:
                if (width, height) != SIZES[0]:
                    await pilot.resize_terminal(width, height)
                    await pilot.pause(2 * args.interval)  # a tick and a frame at the new size
                name = f"workload-{width}x{height}.svg"
                paths.append(Path(app.save_screenshot(name, str(args.out))))
    finally:
        workload.stop()
        sampler.close()
    return paths


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        import textual  # noqa: F401
    except ImportError:
        sys.stderr.write(
            "screenshot: error: textual is not importable here; carry its wheels: "
            "`.venv/bin/python tests/gpu/wheels.py` here, then "
            "`python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "
            "--upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site` there\n"
        )
        return 3
    from gputop.workload import WorkloadError

    try:
        paths = asyncio.run(shoot(args))
    except (RuntimeError, WorkloadError) as exc:
        sys.stderr.write(f"screenshot: error: {exc}\n")
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
