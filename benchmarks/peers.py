"""The live view beside its peers, side by side in one tmux session: nvitop and btop at 1 Hz, btop at 10 Hz.

Run by hand (see benchmarks/README.md for the set-up of nvitop and btop):

    .venv/bin/python benchmarks/peers.py [--runs 3] [--window 40] [--warmup 5]
        [--nvitop /tmp/nvitop-venv/bin/nvitop] [--baseline DIR] [--save-screens DIR]

Every run is one tmux server (private socket) with one session at 160x50 and a window per tool,
all the same size. The tools of a group start one after another, each in its own window, in an
order that rotates from run to run (first frame: from ``respawn-pane`` to the first
``capture-pane``, polled every 20 ms, that shows the tool's GPU or CPU display; the tools started
earlier are already running, at their 1 Hz or 10 Hz). Then, after ``--warmup`` seconds, every
tool's utime + stime from /proc/PID/stat is read at the start and the end of the same ``--window``
seconds: the figures of one run saw the same machine. RSS is VmRSS at the end of the window. The
ratios (gputop / nvitop, gputop / btop) are taken within each run, and their median is quoted
beside the medians of the figures.

Groups, run in turn within each run (1 Hz, then 10 Hz):
- 1 Hz: gputop ``--interval 1``, nvitop ``--interval 1``, btop with ``update_ms = 1000``;
- 10 Hz: gputop ``--interval 0.1``, btop with ``update_ms = 100``.
``--baseline DIR`` adds the gputop of another tree (a git worktree of an older commit) to each
group, run by the same Python with DIR first on its path: before and after in one run.

All of them see the same simulated H100 (tests/fakenvml.py, GPUTOP_FAKE_NVML=H100_SXM; ``--spec``
another fake, e.g. H100_SXM*8, the same for every tool). gputop
loads it through tests/sitecustom; nvitop (in its own venv, reading NVML through nvidia-ml-py's
``pynvml``) through benchmarks/peer_site, which installs the same fake as ``pynvml.nvmlLib``. btop
1.2.x has no NVIDIA support, so it shows the host only. The fake is Python running inside the
Python monitors (a real driver spends that time in C), so it adds the same cost to gputop and to
nvitop. ``--save-screens`` writes every tool's pane of the first run (text) to DIR, to check what
each tool showed. Prints Markdown on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui import CLK_TCK, cpu_ticks, rss_mib  # noqa: E402  (benchmarks/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
SIZE = (160, 50)
FIRST_FRAME_TIMEOUT_S = 30.0
SPEC = "H100_SXM"
TARGETS = (
    "targets (issue #14), in one run: 1 Hz CPU <= nvitop's and <= 1.5x btop's; 10 Hz CPU <= 2.5 % "
    "of a core; RSS <= 50 MiB; first frame <= 300 ms"
)


@dataclass
class Tool:
    key: str  # "gputop", "nvitop", "btop", "baseline"
    label: str
    argv: list[str]
    ready: tuple[re.Pattern[str], ...]  # all of them on the screen: the first frame
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = str(ROOT)
    stderr: str | None = None  # where the pane's stderr goes (nvitop logs there)


@dataclass
class Run:
    first_frame_ms: float | None = None
    cpu_pct: float | None = None
    rss_mib: float | None = None
    note: str = ""


def _gputop(key: str, label: str, tree: Path, interval: str, spec: str) -> Tool:
    path = [str(tree), str(tree / "tests" / "sitecustom"), str(tree / "tests")]
    return Tool(
        key,
        label,
        [sys.executable, "-m", "gputop", "--interval", interval],
        (re.compile("H100"), re.compile("cores busy")),
        {"GPUTOP_FAKE_NVML": spec, "PYTHONPATH": os.pathsep.join(path)},
        str(tree),
    )


def groups(args: argparse.Namespace, tmp: Path) -> dict[str, list[Tool]]:
    btop = shutil.which("btop")
    if btop is None:
        sys.exit("benchmarks/peers.py: error: needs btop (apt-get install btop)")
    if not Path(args.nvitop).exists():
        sys.exit(
            f"benchmarks/peers.py: error: no nvitop at {args.nvitop} (python3 -m venv /tmp/nvitop-venv "
            "&& /tmp/nvitop-venv/bin/pip install nvitop, or --nvitop PATH)"
        )

    def btop_tool(ms: int) -> Tool:
        xdg = tmp / f"xdg-{ms}"
        (xdg / "btop").mkdir(parents=True, exist_ok=True)
        (xdg / "btop" / "btop.conf").write_text(f"update_ms = {ms}\n")
        return Tool("btop", f"btop, update_ms = {ms}", [btop], (re.compile(r"\bC0\b"),), {"XDG_CONFIG_HOME": str(xdg)})

    nvitop = Tool(
        "nvitop",
        "nvitop --interval 1",
        [args.nvitop, "--interval", "1"],
        (re.compile("H100"), re.compile("CPU:")),
        {"GPUTOP_FAKE_NVML": args.spec, "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks" / "peer_site"), str(ROOT / "tests")])},
        stderr=str(tmp / "nvitop.err"),
    )
    one = [_gputop("gputop", "gputop --interval 1", ROOT, "1", args.spec), nvitop, btop_tool(1000)]
    ten = [_gputop("gputop", "gputop --interval 0.1", ROOT, "0.1", args.spec), btop_tool(100)]
    if args.baseline:
        base = Path(args.baseline).resolve()
        one.append(_gputop("baseline", f"gputop --interval 1, baseline {base.name}", base, "1", args.spec))
        ten.append(_gputop("baseline", f"gputop --interval 0.1, baseline {base.name}", base, "0.1", args.spec))
    return {"1 Hz": one, "10 Hz": ten}


class Session:
    """One tmux server, one session at SIZE, one window per tool (window i holds tool i)."""

    def __init__(self, env: dict[str, str], windows: int) -> None:
        self.socket = f"gputop-peers-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = env
        self("new-session", "-d", "-s", "p", "-x", str(SIZE[0]), "-y", str(SIZE[1]), "sleep 1000000")
        self.socket_path = self("display-message", "-p", "-t", "p", "#{socket_path}").strip()
        self("set-option", "-g", "default-terminal", "tmux-256color")
        self("set-option", "-g", "remain-on-exit", "on")
        for _ in range(windows - 1):  # (tmux 3.3a's server dies here with window-size manual)
            self("new-window", "-d", "-t", "p", "sleep 1000000")
        for w in range(windows):
            size = self("display-message", "-p", "-t", f"p:{w}", "#{window_width}x#{window_height}").strip()
            if size != f"{SIZE[0]}x{SIZE[1]}":
                raise RuntimeError(f"window {w} is {size}, not {SIZE[0]}x{SIZE[1]}")

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=self.env, capture_output=True, text=True, timeout=30
        )
        if out.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def screen(self, w: int) -> str:
        return self("capture-pane", "-p", "-t", f"p:{w}")

    def pane(self, w: int, fmt: str) -> str:
        return self("list-panes", "-t", f"p:{w}", "-F", fmt).split("\n")[0].strip()

    def start(self, w: int, tool: Tool) -> Run:
        command = "exec " + " ".join(_quote(a) for a in tool.argv)
        if tool.stderr:
            command += f" 2>>{_quote(tool.stderr)}"
        env_args = [a for k, v in tool.env.items() for a in ("-e", f"{k}={v}")]
        t0 = time.monotonic()
        self("respawn-pane", "-k", "-t", f"p:{w}", "-c", tool.cwd, *env_args, command)
        while time.monotonic() - t0 < FIRST_FRAME_TIMEOUT_S:
            screen = self.screen(w)
            if all(p.search(screen) for p in tool.ready):
                return Run(first_frame_ms=(time.monotonic() - t0) * 1000)
            if self.pane(w, "#{pane_dead}") == "1":
                break
            time.sleep(0.02)
        return Run(note=f"no frame within {FIRST_FRAME_TIMEOUT_S:.0f} s: {self.screen(w).strip()[:300]!r}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=30)
        Path(self.socket_path).unlink(missing_ok=True)


def run_group(tools: list[Tool], rotate: int, warmup_s: float, window_s: float, screens: Path | None) -> list[Run]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8")
    session = Session(env, len(tools))
    runs = [Run() for _ in tools]
    try:
        order = [(i + rotate) % len(tools) for i in range(len(tools))]
        for i in order:
            runs[i] = session.start(i, tools[i])
        pids = {i: int(session.pane(i, "#{pane_pid}")) for i, r in enumerate(runs) if r.first_frame_ms is not None}
        time.sleep(warmup_s)
        c0, w0 = {i: cpu_ticks(p) for i, p in pids.items()}, time.monotonic()
        time.sleep(window_s)
        c1, w1 = {i: cpu_ticks(p) for i, p in pids.items()}, time.monotonic()
        for i, pid in pids.items():
            if session.pane(i, "#{pane_dead}") == "1":
                runs[i].note = "exited during the window"
                continue
            runs[i].cpu_pct = 100.0 * (c1[i] - c0[i]) / CLK_TCK / (w1 - w0)
            runs[i].rss_mib = rss_mib(pid)
        if screens is not None:
            screens.mkdir(parents=True, exist_ok=True)
            for i, tool in enumerate(tools):
                name = re.sub(r"[^\w.-]+", "_", tool.label).strip("_")
                (screens / f"{name}.txt").write_text(session.screen(i))
    finally:
        started = [int(session.pane(i, "#{pane_pid}")) for i in range(len(tools))]
        session.kill()
        for i, pid in enumerate(started):  # a tool that outlives its terminal must not load later runs
            if not _gone(pid, 3.0):
                os.kill(pid, signal.SIGKILL)
                runs[i].note += " (did not exit within 3 s of its terminal closing: killed)"
                print(f"    {tools[i].label} (pid {pid}) outlived its terminal: SIGKILL", file=sys.stderr, flush=True)
    return runs


def _gone(pid: int, within_s: float) -> bool:
    """Whether ``pid`` exits within ``within_s`` (it is no child of ours: polled by kill 0)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                return True  # a zombie waiting for the tmux server that is gone: exited
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./=:+-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def _cell(values: list[float | None], fmt: str) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "n/a"
    mid = format(statistics.median(got), fmt)
    failed = len(values) - len(got)
    span = f" ({format(min(got), fmt)}-{format(max(got), fmt)}{f', {failed} failed' if failed else ''})"
    return mid + (span if len(got) > 1 else "")


def _ratios(results: list[list[Run]], tools: list[Tool], num: str, den: str) -> list[float | None]:
    keys = [t.key for t in tools]
    if num not in keys or den not in keys:
        return []
    a, b = keys.index(num), keys.index(den)
    out: list[float | None] = []
    for runs in results:
        x, y = runs[a].cpu_pct, runs[b].cpu_pct
        out.append(x / y if x is not None and y else None)
    return out


def report(name: str, tools: list[Tool], results: list[list[Run]]) -> list[str]:
    lines = [f"**{name}**", "", "| tool | CPU, % of one core | RSS, MiB | first frame, ms |", "|---|---:|---:|---:|"]
    for i, tool in enumerate(tools):
        col = [runs[i] for runs in results]
        lines.append(
            f"| {tool.label} | {_cell([r.cpu_pct for r in col], '.2f')} | "
            f"{_cell([r.rss_mib for r in col], '.0f')} | {_cell([r.first_frame_ms for r in col], '.0f')} |"
        )
    lines.append("")
    for num, den in (("gputop", "nvitop"), ("gputop", "btop"), ("gputop", "baseline")):
        ratios = _ratios(results, tools, num, den)
        if ratios:
            each = ", ".join("n/a" if r is None else f"{r:.2f}" for r in ratios)
            lines.append(f"- CPU ratio {num} / {den}, per run: {each}; median {_cell(ratios, '.2f').split(' ')[0]}")
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of every group (default 3)")
    parser.add_argument("--window", type=float, default=40.0, help="CPU window, seconds (default 40)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the last first frame (default 5)")
    parser.add_argument("--nvitop", default="/tmp/nvitop-venv/bin/nvitop", help="nvitop executable")
    parser.add_argument("--baseline", help="another gputop tree (e.g. a git worktree of an older commit)")
    parser.add_argument("--only", choices=["1 Hz", "10 Hz"], help="run one group only")
    parser.add_argument("--save-screens", type=Path, help="write each tool's screen of the first run here")
    parser.add_argument("--spec", default=SPEC, help=f"the NVML fake every tool sees (default {SPEC})")
    args = parser.parse_args(argv)
    if shutil.which("tmux") is None:
        parser.exit(1, "benchmarks/peers.py: error: needs tmux (apt-get install tmux)\n")
    load0 = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="gputop-peers-") as tmp:
        chosen = groups(args, Path(tmp))
        if args.only:
            chosen = {args.only: chosen[args.only]}
        for name, tools in chosen.items():  # untimed: bytecode caches, page cache
            print(f"[warm start] {name}", file=sys.stderr, flush=True)
            run_group(tools, 0, 0, 0, None)
        results: dict[str, list[list[Run]]] = {name: [] for name in chosen}
        for r in range(args.runs):
            for name, tools in chosen.items():
                screens = args.save_screens / name.replace(" ", "") if args.save_screens and r == 0 else None
                runs = run_group(tools, r, args.warmup, args.window, screens)
                results[name].append(runs)
                for tool, run in zip(tools, runs):
                    print(
                        f"[{r + 1}/{args.runs}] {tool.label}: first frame {run.first_frame_ms} ms, "
                        f"CPU {run.cpu_pct} %, RSS {run.rss_mib} MiB {run.note}",
                        file=sys.stderr,
                        flush=True,
                    )
        nvitop_err = Path(tmp) / "nvitop.err"
        nvitop_log = nvitop_err.read_text().strip() if nvitop_err.exists() else ""
    load1 = os.getloadavg()
    print(
        f"`benchmarks/peers.py --runs {args.runs} --window {args.window:g} --warmup {args.warmup:g}`, "
        f"{started}-{time.strftime('%H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end; "
        f"{SIZE[0]}x{SIZE[1]}, GPUTOP_FAKE_NVML={args.spec}. Medians over {args.runs} runs (range in parentheses).\n"
    )
    for name, tools in chosen.items():
        print("\n".join(report(name, tools, results[name])))
    print(f"- {TARGETS}.")
    if nvitop_log:
        print(f"- nvitop wrote on stderr: {nvitop_log[:300]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
