"""Command line: the only place that builds real sources and wires things together."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Sequence

from gputop import __version__, merge, record, report, serve
from gputop.cliutil import INTERVAL

EXAMPLES = """\
examples:
  gputop                        live view: every CPU core beside every GPU
  gputop --interval 0.5         refresh twice a second
  gputop snapshot               one sample, printed (like gpustat / nvidia-smi)
  gputop snapshot --json        the same as JSON keyed by metric name
  gputop record --out trace.json --duration 60
                                record a minute headless, for Perfetto or chrome://tracing
  gputop report trace.json      summary table and chart of a recording
  gputop merge trace.json torch_trace.json --out merged.json
                                a recording and a PyTorch profiler trace on one timeline
  gputop serve --port 9400      Prometheus exporter at http://127.0.0.1:9400/metrics
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    snap = sub.add_parser("snapshot", help="print one sample and exit",
                          description="Print one sample: the CPU cores beside every GPU.")
    snap.add_argument("--json", action="store_true", help="JSON keyed by metric name (see README)")
    record.add_parser(sub)
    report.add_parser(sub)
    merge.add_parser(sub)
    serve.add_parser(sub)
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
    from gputop.tui.app import GputopApp

    sampler = build_sampler()
    try:
        GputopApp(sampler, interval_s=args.interval).run()
    finally:
        sampler.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {None: _live, "snapshot": _snapshot, "record": record.run, "report": report.run,
                "merge": merge.run, "serve": serve.run}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gputop snapshot | head`
        sys.stderr.close()
        return 0
