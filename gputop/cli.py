"""Command line: parses the arguments and wires each command to its collaborators (the real
sampler, the streams, the TUI for the commands that show one). The only module that imports both
the commands and the TUI.

A command's module is imported only when the command line names it (or asks for the full
``--help``): the live view, the commonest start, does not load record, report, compare, merge,
serve or cluster code (~35 modules, ~1.3 MiB of its memory and part of its first frame).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import re
import sys
from typing import TYPE_CHECKING, Callable, Collection, Iterator, NoReturn, Sequence, cast

from gputop import __version__, console
from gputop.argtypes import INTERVAL
from gputop.environment import Environment
from gputop.exitstatus import ExitStatus
from gputop.sampler import CLOSE_WAIT_S, OpenedOnFirstSample, open_real
from gputop.signals import Interrupted, StopSignals
from gputop.view.feed import LiveFeed, ReplayFeed

if TYPE_CHECKING:  # httpx, which the feed imports, is ~10 MiB and ~0.1 s the live view does not need
    from gputop.cluster.fleet import ClusterFeed
    from gputop.model import WorkloadState
    from gputop.workload import Workload

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
  gputop cluster --prometheus http://prom:9090
                                every node's cores and GPUs, read from the cluster's Prometheus

logging: warnings go to stderr (a full-screen view writes them to LOG instead);
  GPUTOP_LOG=debug (or --debug) shows everything. LOG is $XDG_STATE_HOME/gputop/gputop.log,
  ~/.local/state/gputop/gputop.log by default.
exit status: 0 done, which for the commands that run until stopped (the live view, replay,
  record, serve) includes a clean stop on Ctrl-C, SIGTERM or SIGHUP; 1 the command could not
  do its job (unreadable trace, failed workload, an error inside a view); 2 bad arguments or no
  terminal; 128+N a signal N cut short a command that ends by itself (compare: 130 Ctrl-C, 143
  SIGTERM) or a view's start-up, or a second signal aborted the clean-up.
"""
FULL_SCREEN = {None, "replay"}  # the commands that draw a full-screen view
# each command's module (its add_parser and run), in the order --help lists them; snapshot's
# parser is defined here
COMMANDS = {
    "snapshot": "",
    "record": "gputop.commands.record",
    "replay": "gputop.commands.replay",
    "report": "gputop.commands.report",
    "compare": "gputop.commands.compare",
    "merge": "gputop.commands.merge",
    "serve": "gputop.commands.serve",
    "cluster": "gputop.commands.cluster",
}


WORKLOAD_ARGS = {None, "record", "compare", "serve"}  # the commands where what follows '--' goes to a workload
Command = Callable[[argparse.Namespace, Environment], int]  # a command's run


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line on stderr, exit 2. ``workload`` is set (by
    ``main``) when the command line names a workload: an argument nobody knows is then, most
    likely, the script's own, given before ``--``."""

    workload: str | None = None

    def error(self, message: str) -> NoReturn:
        hint = ""
        if self.workload is not None:
            stray = re.match(r"argument COMMAND: invalid choice: '(.*?)'", message)
            if stray or message.startswith("unrecognized arguments"):
                message = f"unexpected argument {stray.group(1)!r}" if stray else message
                hint = f"; arguments for {self.workload} go after '--': --run {self.workload} -- ARGS"
        self.exit(2, f"{self.prog}: error: {message}{hint} (see '{self.prog} --help')\n")


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``commands``: the subcommands defined in full (default: all).
    The others are there by name only (so that a wrong name is still told the choices), and
    their modules are not imported."""
    parser = _Parser(
        prog="gputop",
        description="Terminal GPU profiler and monitor: every CPU core beside every GPU's SMs, "
        "memory bandwidth, memory, power, clocks and throttling.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gputop {__version__}")
    parser.add_argument("--debug", action="store_true", help="log everything (as GPUTOP_LOG=debug); see 'logging' below")
    parser.add_argument("--interval", type=INTERVAL, default=1.0, metavar="S", help="seconds between samples in the live view (default 1)")
    parser.add_argument(
        "--run",
        dest="live_run",
        metavar="SCRIPT|NAME",
        default=None,
        help="launch a workload beside the live view: a bundled one "
        "(cnn, mlp, transformer, matmul), a Python script or -m MODULE; arguments "
        "after '--' go to it, and it is stopped when gputop exits",
    )
    parser.add_argument(
        "--no-instrument", dest="live_instrument", action="store_false", help="with --run: do not detect a Python script's training steps"
    )
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser),
    )
    for name, module in COMMANDS.items():
        if commands is not None and name not in commands:
            sub.add_parser(name)  # by name only: never the one that parses (see main)
        elif not module:
            snap = sub.add_parser(
                "snapshot", help="print one sample and exit", description="Print one sample: the CPU cores beside every GPU."
            )
            snap.add_argument("--json", action="store_true", help="JSON keyed by metric name (see README)")
        else:
            importlib.import_module(module).add_parser(sub)
    return parser


def _commands_needed(argv: Sequence[str]) -> Collection[str] | None:
    """The subcommands a parse of ``argv`` can need in full: every command name among its words
    (argparse takes a subcommand only by its exact name), or all of them (None) for a help."""
    if any(w == "-h" or (len(w) > 2 and "--help".startswith(w)) for w in argv):
        return None
    return {w for w in argv if w in COMMANDS}


def _snapshot(args: argparse.Namespace, env: Environment) -> int:
    from gputop.commands import snapshot

    sampler = env.open_sampler(0.0)  # both ticks scan: process CPU % is a real delta
    try:
        sample = snapshot.take(sampler)
        driver = getattr(sampler, "driver_time", lambda: None)()  # what taking it cost the driver
    finally:
        sampler.close()
    text = snapshot.to_json(sample, driver) if args.json else snapshot.to_text(sample, driver)
    env.stdout.write(text)
    return ExitStatus.OK


def _live(args: argparse.Namespace, env: Environment) -> int:
    from gputop.tui import refuse_without_terminal
    from gputop.workload import WorkloadError

    workload = None
    if args.live_run is not None:
        from gputop.workload import Workload  # (the launcher: only with --run)

        try:
            workload = Workload(
                args.live_run,
                args.run_args,  # bad input first, then the terminal
                instrument=args.live_instrument,
            )
        except WorkloadError as exc:
            return env.error(str(exc), ExitStatus.USAGE)
    if refuse_without_terminal(env):
        return ExitStatus.USAGE
    with _collector_held():
        return _live_view(args, env, workload)


def _live_view(args: argparse.Namespace, env: Environment, workload: Workload | None) -> int:
    from gputop.workload import WorkloadError

    sampler = OpenedOnFirstSample(open_real)  # (NVML's init in the first-sample thread, beside Textual's import)
    feed = LiveFeed(sampler, args.interval, workload=workload)
    status = ExitStatus.OK
    ended: WorkloadState | None = None  # how the --run job ended
    try:
        # until run_full_screen puts its own in place, a stop signal (while Textual is imported)
        # is raised as Interrupted: the clean-up below runs, and the exit status is 128 + its number
        with StopSignals(raise_first=True):
            if workload is None:  # (with one, after its fork: a fork beside a sampling thread is unsafe)
                feed.prefetch()  # while Textual is imported and the screen built
            from gputop.tui.app import SETTLE_HEAP_S, GputopApp
            from gputop.tui.terminal import run_full_screen

            # the workload is started on the main thread, before the app runs: the child's
            # PR_SET_PDEATHSIG fires when the thread that forked it exits (see gputop.workload.process)
            def start(job: Workload) -> None:
                job.start()
                feed.prefetch()

            from gputop.tui.selfcpu import SelfCpu

            app = GputopApp(feed, settle_heap_s=SETTLE_HEAP_S, self_cpu=SelfCpu(driver_clock=sampler.driver_time))
        if not run_full_screen(app, before=None if workload is None else lambda: start(workload)):
            status = ExitStatus.FAILURE
    except WorkloadError as exc:
        return env.error(str(exc), ExitStatus.USAGE)
    finally:
        # not cut short by a signal that comes now: it is noted, and a second one aborts
        with StopSignals():
            try:
                if workload is not None:
                    ended = workload.stop()
            finally:
                feed.discard_first()  # not closed under a sample still being taken
                if not sampler.close():  # (under the full screen its log line went to the log file)
                    env.say(f"a sample had not returned after {CLOSE_WAIT_S:g} s (a hung driver call?): exited with its sources left open")
    if ended is not None and ended.status == "failed":  # as record --run: the job failed, so did the run
        env.say(f"workload {ended.name} failed" + (f": {ended.error}" if ended.error else ""))
        return ExitStatus.FAILURE
    return status


def _show_replay(env: Environment, feed: ReplayFeed) -> int:
    """The replay command's view: the terminal check, then the app over the recording."""
    from gputop.tui import refuse_without_terminal

    if refuse_without_terminal(env):
        return ExitStatus.USAGE
    with _collector_held():
        from gputop.tui.app import SETTLE_HEAP_S, GputopApp
        from gputop.tui.terminal import run_full_screen

        ok = run_full_screen(GputopApp(feed, settle_heap_s=SETTLE_HEAP_S))
    return ExitStatus.OK if ok else ExitStatus.FAILURE


@contextlib.contextmanager
def _collector_held() -> Iterator[None]:
    """No garbage collection while a view (live, replay, cluster) starts: it makes ~90,000
    objects that live as long as it does, and the collector's passes over them took ~40 ms of
    collections (one full pass ~20 ms) and ~0.1 s of the first frame in tmux. The view's
    ``settle_heap`` (a second after the live view's first frame) collects, freezes them and
    enables the collector again; so does leaving here, whatever happened."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _cluster(args: argparse.Namespace, env: Environment) -> int:
    """The cluster command; its view (unless --once) is the TUI's ClusterApp over its feed."""
    from gputop.commands import cluster

    def show(feed: ClusterFeed) -> int:
        from gputop.tui import refuse_without_terminal

        if refuse_without_terminal(env):
            return ExitStatus.USAGE
        with _collector_held():
            from gputop.tui.cluster import SETTLE_HEAP_S, ClusterApp
            from gputop.tui.terminal import run_full_screen

            ok = run_full_screen(ClusterApp(feed, interval_s=args.interval, settle_heap_s=SETTLE_HEAP_S))
        return ExitStatus.OK if ok else ExitStatus.FAILURE

    return cluster.run(args, env, show=show)


def _workload_named(argv: Sequence[str]) -> str | None:
    """The target of ``--run`` on the command line, if any."""
    for i, word in enumerate(argv):
        if word == "--run" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--run="):
            return word.partition("=")[2]
    return None


def _command_named(argv: Sequence[str], commands: Sequence[str]) -> str | None:
    """The subcommand a command line names: its first word that is one (None: the live view)."""
    return next((word for word in argv if word in commands), None)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, with each complaint from the parser it concerns: an unknown option of
    ``gputop record`` is said by ``gputop record`` (and before its missing --out)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = _command_named(argv, list(subparsers.choices))
    sub = subparsers.choices.get(command) if command is not None else None
    if sub is not None and command is not None:
        words = argv[argv.index(command) + 1 :]
        words = words[: words.index("--")] if "--" in words else words  # then: names, not options
        known = set(sub._option_string_actions)
        # (a prefix of an option is argparse's abbreviation of it: --dur for --duration)
        # (a word with a space is argparse's positional, "-m pkg.train" among them)
        unknown = [
            w
            for w in words
            if w.startswith("-")
            and w != "-"
            and not _is_number(w)
            and " " not in w
            and not any(o.startswith(w.split("=", 1)[0]) for o in known)
        ]
        if unknown:
            sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    args, extra = parser.parse_known_args(argv)
    if extra:
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _takes_names(parser: argparse.ArgumentParser) -> bool:
    """Whether a command takes positional arguments (report TRACE, merge A B)."""
    return any(not action.option_strings for action in parser._actions)


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def run_module(argv: list[str]) -> list[str]:
    """``--run -m pkg.train`` as one value, ``--run "-m pkg.train"`` (argparse takes "-m" for an
    option of its own), and ``compare -m pkg.train`` the same (compare's NAME)."""
    out = list(argv)
    for i in range(len(out) - 2):
        if out[i] == "--run" and out[i + 1] == "-m":
            out[i + 1 : i + 3] = [f"-m {out[i + 2]}"]
            break
    head = out[: out.index("--")] if "--" in out else out  # after --: the workload's own words
    if _command_named(head, list(COMMANDS)) == "compare":
        start, end = head.index("compare") + 1, len(head)
        for i in range(start, end):
            if out[i] == "-m":  # a bare -m at the end: resolve says a module name is wanted
                out[i : min(i + 2, end)] = [f"-m {out[i + 1] if i + 1 < end else ''}"]
                break
    return out


def _command_run(name: str) -> Command:
    """The ``run`` of a command whose module is imported only now."""
    run: Command = importlib.import_module(COMMANDS[name]).run
    return run


def _replay(args: argparse.Namespace, env: Environment) -> int:
    from gputop.commands import replay

    return replay.run(args, env, show=lambda feed: _show_replay(env, feed))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_commands_needed(argv))
    run_args: list[str] | None = None
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = _command_named(argv[: argv.index("--")], list(subparsers.choices)) if "--" in argv else None
    if "--" in argv and (command in WORKLOAD_ARGS or (command is not None and not _takes_names(subparsers.choices[command]))):
        cut = argv.index("--")  # everything after the first -- goes to the launched workload
        argv, run_args = argv[:cut], argv[cut + 1 :]
    # (for a command that takes file names, -- is argparse's own end of options:
    # gputop report -- -odd-name.json)
    argv = run_module(argv)
    _Parser.workload = _workload_named(argv)
    args = _parse(parser, argv)
    if args.command is not None and args.live_run is not None:
        parser.error(
            f"--run before a command is for the live view; to record a workload use 'gputop record --out PATH --run {args.live_run}'"
        )
    takes_args = {None: args.live_run, "record": getattr(args, "run", None), "serve": getattr(args, "run", None), "compare": True}
    if run_args is not None and takes_args.get(args.command) is None:
        parser.error("arguments after '--' go to a workload: use them with --run (or compare)")
    args.run_args = tuple(run_args or ())
    level = console.log_level(args.debug)
    if isinstance(level, str):
        parser.error(f"{console.LOG_ENV}={level!r} names no level: use one of {', '.join(console.LEVELS)}")
    env = Environment.of(args.command)  # the streams, the clock and the sources every command is given
    console.configure_logging(env.prog, level, stderr=env.stderr, full_screen=args.command in FULL_SCREEN)
    handlers: dict[str | None, Command] = {None: _live, "snapshot": _snapshot, "replay": _replay, "cluster": _cluster}
    try:
        command = args.command
        return (handlers[command] if command in handlers else _command_run(command))(args, env)
    except Interrupted as exc:  # a command that does not catch its stop signal itself
        return ExitStatus.signalled(exc.signum)
    except KeyboardInterrupt:  # a second signal, or Ctrl-C where no handler was installed yet
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # `gputop snapshot | head`
        sys.stderr.close()
        return 0
