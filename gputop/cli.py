"""Command line: the only place that builds real sources and wires things together."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import Iterator, NoReturn, Sequence

from gputop import __version__, compare, merge, record, replay, report, serve
from gputop.cluster import command as cluster
from gputop.cliutil import INTERVAL, handling

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
"""


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
    parser.add_argument("--interval", type=INTERVAL, default=1.0, metavar="S",
                        help="seconds between samples in the live view (default 1)")
    parser.add_argument("--run", dest="live_run", metavar="SCRIPT|NAME", default=None,
                        help="launch a workload beside the live view: a bundled one "
                        "(cnn, mlp, transformer, matmul) or a Python script; arguments after "
                        "'--' go to it, and it is stopped when gputop exits")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    snap = sub.add_parser("snapshot", help="print one sample and exit",
                          description="Print one sample: the CPU cores beside every GPU.")
    snap.add_argument("--json", action="store_true", help="JSON keyed by metric name (see README)")
    record.add_parser(sub)
    replay.add_parser(sub)
    report.add_parser(sub)
    compare.add_parser(sub)
    merge.add_parser(sub)
    serve.add_parser(sub)
    cluster.add_parser(sub)
    return parser


def build_sampler(process_interval_s: float = 2.0):
    """Real sources: psutil for the host, NVML for the GPUs (absent GPUs are a reason, not an error)."""
    from gputop.sampler import Sampler
    from gputop.sources.cpu import CpuSource
    from gputop.sources.nvml import GpuUnavailable, NvmlSource

    cpu = CpuSource()
    try:
        gpu, reason = NvmlSource.open(), None
    except GpuUnavailable as exc:
        gpu, reason = None, exc.reason
    return Sampler(cpu, gpu, gpu_unavailable=reason, process_interval_s=process_interval_s)


def _snapshot(args: argparse.Namespace) -> int:
    from gputop import snapshot

    sampler = build_sampler(process_interval_s=0.0)  # both ticks scan: process CPU % is a real delta
    try:
        sample = snapshot.take(sampler)
    finally:
        sampler.close()
    text = snapshot.to_json(sample) if args.json else snapshot.to_text(sample)
    sys.stdout.write(text)
    return 0


def _live(args: argparse.Namespace) -> int:
    from gputop.tui import refuse_without_terminal
    from gputop.workload import Workload, WorkloadError

    workload = None
    if args.live_run is not None:
        try:
            workload = Workload(args.live_run, args.run_args)  # bad input first, then the terminal
        except WorkloadError as exc:
            sys.stderr.write(f"gputop: error: {exc}\n")
            return 2
    if refuse_without_terminal("gputop"):
        return 2
    from gputop.tui.app import GputopApp
    sampler = build_sampler()
    try:
        with terminate_raises():
            if workload is None:
                GputopApp(sampler, interval_s=args.interval).run()
            else:
                # Started here, on the main thread, before the app: the child's PR_SET_PDEATHSIG
                # fires when the thread that forked it exits (see gputop.workload.Workload).
                workload.start()
                GputopApp(sampler, interval_s=args.interval, workload=workload).run()
    except WorkloadError as exc:
        sys.stderr.write(f"gputop: error: {exc}\n")
        return 2
    finally:
        try:
            if workload is not None:
                workload.stop()
        finally:
            sampler.close()
    return 0


def _cluster(args: argparse.Namespace) -> int:
    def show(feed) -> int:
        from gputop.tui import refuse_without_terminal
        if refuse_without_terminal("gputop cluster"):
            return 2
        from gputop.tui.cluster import ClusterApp
        with terminate_raises():
            ClusterApp(feed, interval_s=args.interval).run()
        return 0

    return cluster.run(args, show=show)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """SIGTERM and SIGHUP (the terminal closed) raise SystemExit, so ``finally`` blocks run
    (the workload's group is stopped) instead of the process ending on the spot."""
    with handling((signal.SIGTERM, signal.SIGHUP), _terminated):
        yield


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_args: list[str] | None = None
    if "--" in argv:  # everything after the first -- goes to the launched workload
        cut = argv.index("--")
        argv, run_args = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is not None and args.live_run is not None:
        parser.error(f"--run before a command is for the live view; to record a workload use "
                     f"'gputop record --out PATH --run {args.live_run}'")
    takes_args = {None: args.live_run, "record": getattr(args, "run", None), "compare": True}
    if run_args is not None and takes_args.get(args.command) is None:
        parser.error("arguments after '--' go to a workload: use them with --run (or compare)")
    args.run_args = tuple(run_args or ())
    handlers = {None: _live, "snapshot": _snapshot, "record": record.run, "replay": replay.run, "report": report.run,
                "merge": merge.run, "serve": serve.run, "compare": compare.run,
                "cluster": _cluster}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gputop snapshot | head`
        sys.stderr.close()
        return 0
