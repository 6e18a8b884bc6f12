"""Command line: parses the arguments and wires each command to its collaborators (the real
sampler, the streams, the TUI for the commands that show one). The only module that imports both
the commands and the TUI."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import NoReturn, Sequence, cast

from gputop import __version__, compare, console, merge, record, replay, report, serve
from gputop.argtypes import INTERVAL
from gputop.exitstatus import ExitStatus
from gputop.feed import LiveFeed, ReplayFeed
from gputop.sampler import open_real
from gputop.signals import Interrupted, StopSignals

EXAMPLES = """\
examples:
  gputop                        live view: every CPU core beside every GPU
  gputop --interval 0.5         refresh twice a second
  gputop --run cnn              live view beside a bundled workload (cnn, mlp, transformer, matmul)
  gputop --run train.py -- --epochs 1
                                beside your own script; what follows -- goes to the script
  gputop snapshot               one sample, printed (like gpustat / nvidia-smi)
  gputop snapshot --json        the same as JSON keyed by metric name
  gputop record --out trace.json --duration 60
                                record a minute headless, for Perfetto or chrome://tracing
  gputop report trace.json      summary table and chart of a recording
  gputop replay trace.json      the live view over a recording, with a time cursor
  gputop record --out trace.json --run mlp
                                record while a workload runs, with its steps on the timeline
  gputop compare cnn            the same workload on CPU and on GPU, with the speedup
  gputop merge trace.json torch_trace.json --out merged.json
                                a recording and a PyTorch profiler trace on one timeline
  gputop serve --port 9400      Prometheus exporter at http://127.0.0.1:9400/metrics

logging: warnings go to stderr (a full-screen view writes them to LOG instead);
  GPUTOP_LOG=debug (or --debug) shows everything. LOG is $XDG_STATE_HOME/gputop/gputop.log,
  ~/.local/state/gputop/gputop.log by default.
exit status: 0 done; 1 the command could not do its job (unreadable trace, failed workload);
  2 bad arguments or no terminal; 128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM).
"""
FULL_SCREEN = {None, "replay"}  # the commands that draw a full-screen view


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gputop",
        description="Terminal GPU profiler and monitor: every CPU core beside every GPU's SMs, "
        "memory bandwidth, memory, power, clocks and throttling.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gputop {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="log everything (as GPUTOP_LOG=debug); see 'logging' below")
    parser.add_argument("--interval", type=INTERVAL, default=1.0, metavar="S",
                        help="seconds between samples in the live view (default 1)")
    parser.add_argument("--run", dest="live_run", metavar="SCRIPT|NAME", default=None,
                        help="launch a workload beside the live view: a bundled one "
                        "(cnn, mlp, transformer, matmul), a Python script or -m MODULE; arguments "
                        "after '--' go to it, and it is stopped when gputop exits")
    parser.add_argument("--no-instrument", dest="live_instrument", action="store_false",
                        help="with --run: do not detect a Python script's training steps")
    sub = cast("argparse._SubParsersAction[argparse.ArgumentParser]",
               parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser))
    snap = sub.add_parser("snapshot", help="print one sample and exit",
                          description="Print one sample: the CPU cores beside every GPU.")
    snap.add_argument("--json", action="store_true", help="JSON keyed by metric name (see README)")
    record.add_parser(sub)
    replay.add_parser(sub)
    report.add_parser(sub)
    compare.add_parser(sub)
    merge.add_parser(sub)
    serve.add_parser(sub)
    return parser


def _snapshot(args: argparse.Namespace) -> int:
    from gputop import snapshot

    sampler = open_real(process_interval_s=0.0)  # both ticks scan: process CPU % is a real delta
    try:
        sample = snapshot.take(sampler)
    finally:
        sampler.close()
    text = snapshot.to_json(sample) if args.json else snapshot.to_text(sample)
    sys.stdout.write(text)
    return ExitStatus.OK


def _live(args: argparse.Namespace) -> int:
    from gputop.tui import refuse_without_terminal
    from gputop.workload import Workload, WorkloadError

    workload = None
    if args.live_run is not None:
        try:
            workload = Workload(args.live_run, args.run_args,  # bad input first, then the terminal
                                instrument=args.live_instrument)
        except WorkloadError as exc:
            sys.stderr.write(f"gputop: error: {exc}\n")
            return ExitStatus.USAGE
    if refuse_without_terminal("gputop"):
        return ExitStatus.USAGE
    from gputop.tui.app import GputopApp
    sampler = open_real()
    try:
        with _terminate_raises():
            if workload is not None:
                # Started here, on the main thread, before the app: the child's PR_SET_PDEATHSIG
                # fires when the thread that forked it exits (see gputop.workload.process).
                workload.start()
            GputopApp(LiveFeed(sampler, args.interval, workload=workload)).run()
    except WorkloadError as exc:
        sys.stderr.write(f"gputop: error: {exc}\n")
        return ExitStatus.USAGE
    finally:
        try:
            if workload is not None:
                workload.stop()
        finally:
            sampler.close()
    return ExitStatus.OK


def _show_replay(feed: ReplayFeed) -> int:
    """The replay command's view: the terminal check, then the app over the recording."""
    from gputop.tui import refuse_without_terminal

    if refuse_without_terminal(replay.PROG):
        return ExitStatus.USAGE
    from gputop.tui.app import GputopApp

    with _terminate_raises():
        GputopApp(feed).run()
    return ExitStatus.OK


def _terminate_raises() -> StopSignals:
    """SIGTERM and SIGHUP (the terminal closed) raise Interrupted, so ``finally`` blocks run
    (the workload's group is stopped) instead of the process ending on the spot. (SIGINT is a
    key to the full-screen view.)"""
    return StopSignals(raise_first=True, signals=(signal.SIGTERM, signal.SIGHUP))


def run_module(argv: list[str]) -> list[str]:
    """``--run -m pkg.train`` as one value, ``--run "-m pkg.train"`` (argparse takes "-m" for an
    option of its own)."""
    out = list(argv)
    for i in range(len(out) - 2):
        if out[i] == "--run" and out[i + 1] == "-m":
            out[i + 1:i + 3] = [f"-m {out[i + 2]}"]
            break
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_args: list[str] | None = None
    if "--" in argv:  # everything after the first -- goes to the launched workload
        cut = argv.index("--")
        argv, run_args = argv[:cut], argv[cut + 1:]
    argv = run_module(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is not None and args.live_run is not None:
        parser.error(f"--run before a command is for the live view; to record a workload use "
                     f"'gputop record --out PATH --run {args.live_run}'")
    takes_args = {None: args.live_run, "record": getattr(args, "run", None), "compare": True}
    if run_args is not None and takes_args.get(args.command) is None:
        parser.error("arguments after '--' go to a workload: use them with --run (or compare)")
    args.run_args = tuple(run_args or ())
    level = console.log_level(args.debug)
    if isinstance(level, str):
        parser.error(f"{console.LOG_ENV}={level!r} names no level: use one of {', '.join(console.LEVELS)}")
    prog = "gputop" if args.command is None else f"gputop {args.command}"
    console.configure_logging(prog, level, stderr=sys.stderr, full_screen=args.command in FULL_SCREEN)
    handlers = {None: _live, "snapshot": _snapshot, "record": record.run,
                "replay": lambda a: replay.run(a, show=_show_replay), "report": report.run,
                "merge": merge.run, "serve": serve.run, "compare": compare.run}
    try:
        return handlers[args.command](args)
    except Interrupted as exc:
        return exc.code if isinstance(exc.code, int) else ExitStatus.signalled(exc.signum)
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # `gputop snapshot | head`
        sys.stderr.close()
        return 0
