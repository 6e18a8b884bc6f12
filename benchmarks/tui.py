"""What the live view costs: CPU, memory and time to first frame, beside btop, htop and glances.

Run by hand:  .venv/bin/python benchmarks/tui.py [--repeats 5] [--window 30] [--warmup 5]

Every tool runs alone in its own detached tmux server (private socket, 120x40 pane, UTF-8
locale), started as the pane's command with ``exec`` so the pane's pid is the tool's pid. Runs
are sequential, interleaved (repeat 1 of every tool, then repeat 2, ...), so a load that drifts
hits every tool alike. Per run:

- first frame: ``time.monotonic()`` just before ``tmux respawn-pane`` execs the tool, to the
  first ``capture-pane`` (polled every 20 ms) that shows the tool's CPU display (gputop: "cores
  busy"; btop: the "C0" core row; htop: the "0[" core meter; glances: its "CPU [" bar).
  It includes spawning one tmux client, so it over-reads by a few ms. Each tool is started
  once, untimed, before the measured runs (a warm start: Python's bytecode caches written,
  with PYTHONDONTWRITEBYTECODE removed from the environment, and files in the page cache).
- CPU: utime + stime (+ cutime + cstime of children it waited for) from /proc/<pid>/stat over
  ``--window`` seconds after ``--warmup`` seconds, as % of one core.
- RSS: VmRSS from /proc/<pid>/status at the end of the window.
- tmux CPU: the same for that run's tmux server, which parses and stores what the tool draws
  (a rough measure of how much a tool writes to the terminal; not counted in the tool's CPU).

Each figure is the median over the repeats, with the range. gputop runs over the NVML fake of
tests/fakenvml.py (GPUTOP_FAKE_NVML, loaded by tests/sitecustom): the fake is Python that runs
inside gputop's process, where a real driver spends that time in C (see sampler_tick.py), and
importing it adds to the start-up. "gputop, no GPU" (the fake reporting no driver) is the
floor without any NVML work. Prints a Markdown table on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SIZE = (120, 40)
FIRST_FRAME_TIMEOUT_S = 30.0
TARGETS = "gputop targets: CPU <= 1.0 % at 1 Hz, <= 4 % at 10 Hz; first frame <= 500 ms; RSS <= 60 MiB."


@dataclass
class Tool:
    label: str
    argv: list[str]
    ready: re.Pattern[str]  # the screen shows the tool's CPU display
    env: dict[str, str] = field(default_factory=dict)
    version: str = ""
    cwd: str | None = None  # the pane's directory (python -m puts it first on sys.path)


@dataclass
class Run:
    first_frame_ms: float | None
    cpu_pct: float | None
    rss_mib: float | None
    tmux_cpu_pct: float | None
    note: str = ""


def _gputop(label: str, fake: str, interval: str, tree: Path | None = None) -> Tool:
    """gputop from this checkout, or from ``tree`` (another checkout, ahead on PYTHONPATH); both
    over this checkout's NVML fake, so the fake's own cost is the same for both."""
    path = ([str(tree)] if tree is not None else []) + [str(TESTS / "sitecustom"), str(TESTS)]
    env = {"GPUTOP_FAKE_NVML": fake, "PYTHONPATH": os.pathsep.join(path)}
    return Tool(label, [sys.executable, "-m", "gputop", "--interval", interval], re.compile(r"cores busy"), env, cwd=str(tree or ROOT))


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return ""
    text = (out.stdout or out.stderr).strip()
    return re.sub(r"\s+version:?\s+", " ", text.splitlines()[0], flags=re.I) if text else ""


def tools(glances: str | None, xdg: Path, baseline: Path | None = None) -> tuple[list[Tool], list[str]]:
    """The tools to run, and a note for each one left out."""
    chosen = [
        _gputop("gputop, 1 GPU, 1 Hz", "H100_SXM", "1"),
        _gputop("gputop, 1 GPU, 10 Hz", "H100_SXM", "0.1"),
        _gputop("gputop, no GPU, 1 Hz", "none:driver_not_loaded", "1"),
    ]
    if baseline is not None:
        chosen += [
            _gputop(f"gputop at {baseline.name}, 1 GPU, 1 Hz", "H100_SXM", "1", baseline),
            _gputop(f"gputop at {baseline.name}, 1 GPU, 10 Hz", "H100_SXM", "0.1", baseline),
        ]
    from gputop import __version__

    for tool in chosen:
        tool.version = f"gputop {__version__}"
    missing = []
    btop = shutil.which("btop")
    if btop:
        (xdg / "btop").mkdir(parents=True, exist_ok=True)
        (xdg / "btop" / "btop.conf").write_text("update_ms = 1000\n")  # its default is 2000
        chosen.append(Tool("btop, 1 Hz", [btop], re.compile(r"\bC0\b"), {"XDG_CONFIG_HOME": str(xdg)}, _version([btop, "--version"])))
    else:
        missing.append("btop (not installed)")
    htop = shutil.which("htop")
    if htop:
        chosen.append(Tool("htop, 1 Hz", [htop, "-d", "10"], re.compile(r"^\s*0\[", re.M), {}, _version([htop, "--version"])))
    else:
        missing.append("htop (not installed)")
    glances = glances or shutil.which("glances")
    if glances and Path(glances).exists():
        chosen.append(Tool("glances, 1 Hz", [glances, "-t", "1"], re.compile(r"^CPU\s+\[", re.M), {}, _version([glances, "--version"])))
    else:
        missing.append(
            "glances (not installed; e.g. python3 -m venv /tmp/glances-venv && "
            "/tmp/glances-venv/bin/pip install glances, then --glances /tmp/glances-venv/bin/glances)"
        )
    return chosen, missing


def cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return utime + stime + cutime + cstime


def rss_mib(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


class Tmux:
    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"gputop-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = env
        self("new-session", "-d", "-s", "b", "-x", str(SIZE[0]), "-y", str(SIZE[1]), "sleep 1000000")
        self.socket_path = self("display-message", "-p", "-t", "b", "#{socket_path}").strip()
        self("set-option", "-g", "default-terminal", "tmux-256color")
        self("set-option", "-g", "remain-on-exit", "on")  # a tool that dies leaves its screen

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=self.env, capture_output=True, text=True, timeout=30
        )
        if out.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def server_pid(self) -> int:
        return int(self("display-message", "-p", "-t", "b", "#{pid}").strip())

    def pane_pid(self) -> int:
        return int(self("list-panes", "-t", "b", "-F", "#{pane_pid}").split()[0])

    def dead(self) -> bool:
        return self("list-panes", "-t", "b", "-F", "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=30)
        Path(self.socket_path).unlink(missing_ok=True)  # tmux leaves the socket file behind


def measure(tool: Tool, warmup_s: float, window_s: float) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8", **tool.env)
    tmux = Tmux(env)
    try:
        # -e: the tool's own variables; exec: the pane's pid is the tool's pid
        command = "exec " + " ".join(_quote(a) for a in tool.argv)
        env_args = [a for k, v in tool.env.items() for a in ("-e", f"{k}={v}")]
        t0 = time.monotonic()
        where = ["-c", tool.cwd] if tool.cwd else []
        tmux("respawn-pane", "-k", "-t", "b", *where, *env_args, command)
        first_ms = None
        while time.monotonic() - t0 < FIRST_FRAME_TIMEOUT_S:
            if tool.ready.search(tmux("capture-pane", "-p", "-t", "b")):
                first_ms = (time.monotonic() - t0) * 1000
                break
            if tmux.dead():
                break
            time.sleep(0.02)
        if first_ms is None:
            screen = tmux("capture-pane", "-p", "-t", "b")
            return Run(None, None, None, None, f"no frame within {FIRST_FRAME_TIMEOUT_S:.0f} s: {screen.strip()[:200]!r}")
        pid, server = tmux.pane_pid(), tmux.server_pid()
        time.sleep(warmup_s)
        c0, s0, w0 = cpu_ticks(pid), cpu_ticks(server), time.monotonic()
        time.sleep(window_s)
        c1, s1, w1 = cpu_ticks(pid), cpu_ticks(server), time.monotonic()
        rss = rss_mib(pid)
        if tmux.dead():
            return Run(first_ms, None, None, None, "exited during the window")
        wall = w1 - w0
        return Run(first_ms, 100.0 * (c1 - c0) / CLK_TCK / wall, rss, 100.0 * (s1 - s0) / CLK_TCK / wall)
    finally:
        tmux.kill()


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./=:+-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def _cell(values: list[float | None], fmt: str) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "n/a"
    mid = format(statistics.median(got), fmt)
    if len(got) == 1:
        return mid
    span = f"{format(min(got), fmt)}-{format(max(got), fmt)}"
    missing = len(values) - len(got)
    return f"{mid} ({span}{f', {missing} failed' if missing else ''})"


def table(results: dict[str, list[Run]]) -> str:
    lines = ["| tool | CPU, % of one core | RSS, MiB | first frame, ms | tmux server CPU, % |", "|---|---:|---:|---:|---:|"]
    for label, runs in results.items():
        lines.append(
            f"| {label} | {_cell([r.cpu_pct for r in runs], '.2f')} | "
            f"{_cell([r.rss_mib for r in runs], '.0f')} | "
            f"{_cell([r.first_frame_ms for r in runs], '.0f')} | "
            f"{_cell([r.tmux_cpu_pct for r in runs], '.2f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of every tool (default 5)")
    parser.add_argument("--window", type=float, default=30.0, help="CPU window, seconds (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the first frame (default 5)")
    parser.add_argument("--glances", help="path to a glances executable (default: on PATH)")
    parser.add_argument("--only", nargs="*", help="labels (or prefixes: gputop, btop, ...) to run")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also run gputop from another checkout (e.g. git worktree add /tmp/base REV), interleaved with this one",
    )
    args = parser.parse_args(argv)
    if shutil.which("tmux") is None:
        parser.exit(1, "benchmarks/tui.py: error: needs tmux (apt-get install tmux)\n")
    with tempfile.TemporaryDirectory(prefix="gputop-bench-") as tmp:
        chosen, missing = tools(args.glances, Path(tmp) / "xdg", args.baseline)
        if args.only:
            chosen = [t for t in chosen if any(t.label.startswith(o) for o in args.only)]
        results: dict[str, list[Run]] = {t.label: [] for t in chosen}
        notes: list[str] = []
        for tool in chosen:  # untimed: writes Python's bytecode caches, warms the page cache
            print(f"[warm start] {tool.label} ...", file=sys.stderr, flush=True)
            measure(tool, 0, 0)
        for r in range(args.repeats):
            for tool in chosen:
                print(f"[{r + 1}/{args.repeats}] {tool.label} ...", file=sys.stderr, flush=True)
                run = measure(tool, args.warmup, args.window)
                results[tool.label].append(run)
                print(
                    f"    first frame {run.first_frame_ms} ms, CPU {run.cpu_pct} %, RSS {run.rss_mib} MiB,"
                    f" tmux {run.tmux_cpu_pct} % {run.note}",
                    file=sys.stderr,
                    flush=True,
                )
                if run.note:
                    notes.append(f"{tool.label}, repeat {r + 1}: {run.note}")
    load = os.getloadavg()
    print(
        f"`benchmarks/tui.py --repeats {args.repeats} --window {args.window:g} --warmup {args.warmup:g}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. "
        f"Medians over {args.repeats} runs (range in parentheses).\n"
    )
    print(table(results))
    print()
    versions = sorted({t.version for t in chosen if t.version})
    print(f"- Versions: {'; '.join(versions)}.")
    print(f"- {TARGETS}")
    for note in missing:
        print(f"- Not run: {note}.")
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
