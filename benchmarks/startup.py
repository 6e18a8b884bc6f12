"""Start-up: time to the live view's whole first paint, this tree against another.

    .venv/bin/python benchmarks/startup.py [--starts 10] [--baseline DIR] [--interval 1]

One tmux server (private socket), one window at 160x50 (as benchmarks/peers.py). Each start
respawns gputop in it (``respawn-pane -k``, so the one before is killed) and polls
``capture-pane`` every 10 ms until the whole view is there: the panels ("H100", "cores busy") and
the footer (" quit "), which Textual draws in the same paint. The trees alternate start by start,
so both see the same machine; the first start of each is a warm-up (the page cache, .pyc files)
and is not counted. Same NVML fake as peers.py (GPUTOP_FAKE_NVML=H100_SXM through
tests/sitecustom). A baseline is a tree of an older commit (``git archive COMMIT | tar -x -C DIR``),
run with this venv's Python and its own source first on PYTHONPATH. Medians and ranges in
Markdown on stdout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import ROOT, Session, Tool, _gputop  # noqa: E402  (benchmarks/ is not a package)

TIMEOUT_S = 30.0
POLL_S = 0.01


def start(session: Session, tool: Tool) -> float:
    """ms from respawn-pane to the whole view on the screen."""
    command = "exec " + " ".join(tool.argv)
    env_args = [a for k, v in tool.env.items() for a in ("-e", f"{k}={v}")]
    t0 = time.monotonic()
    session("respawn-pane", "-k", "-t", "p:0", "-c", tool.cwd, *env_args, command)
    while time.monotonic() - t0 < TIMEOUT_S:
        screen = session.screen(0)
        now = (time.monotonic() - t0) * 1000
        if " quit " in screen and all(p.search(screen) for p in tool.ready):
            return now
        time.sleep(POLL_S)
    raise RuntimeError(f"{tool.label}: no whole view within {TIMEOUT_S:.0f} s: {session.screen(0)[:300]!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=10, help="counted starts per tree (default 10)")
    parser.add_argument("--baseline", type=Path, help="another tree (git archive of an older commit)")
    parser.add_argument("--interval", default="1", help="gputop's --interval (default 1)")
    args = parser.parse_args()
    tools = [_gputop("gputop", f"gputop ({ROOT.name})", ROOT, args.interval)]
    if args.baseline:
        tools.append(_gputop("baseline", f"gputop, baseline {args.baseline.name}", args.baseline.resolve(), args.interval))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8")
    session = Session(env, 1)
    results: dict[str, list[float]] = {t.label: [] for t in tools}
    try:
        for n in range(args.starts + 1):
            for tool in tools if n % 2 == 0 else tools[::-1]:
                whole = start(session, tool)
                print(f"[{n}] {tool.label}: whole view {whole:.0f} ms", file=sys.stderr)
                if n:
                    results[tool.label].append(whole)
    finally:
        session.kill()
    print(
        f"{args.starts} starts per tree, alternated, 160x50, --interval {args.interval}; load average at the end {os.getloadavg()[0]:.2f}\n"
    )
    print("| tree | whole view (panels and footer), median ms (range) |")
    print("|---|---:|")
    for label, wholes in results.items():
        print(f"| {label} | {statistics.median(wholes):.0f} ({min(wholes):.0f}-{max(wholes):.0f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
