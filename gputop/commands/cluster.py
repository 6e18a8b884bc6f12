"""`gputop cluster`'s command line: the flags, ``--once`` (text or ``--json``) and the hand-off to
the TUI, which ``gputop.cli`` passes in as ``show`` (this package never imports textual).

Bad input (an unreadable token file, a URL that is not http(s), a ``--selector`` that is not label
matchers or that Prometheus rejects) is one line and exit 2; a Prometheus that cannot be reached
or is not Prometheus is one line and exit 1.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Callable

from gputop import format as fmt
from gputop.argtypes import INTERVAL, seconds
from gputop.environment import Environment
from gputop.exitstatus import ExitStatus

if TYPE_CHECKING:  # httpx is imported only once a command runs
    from gputop.cluster.fleet import ClusterFeed
    from gputop.cluster.nodes import ClusterSample

PROG = "gputop cluster"
DEFAULT_URL = "http://127.0.0.1:9090"
EXAMPLES = """\
examples:
  gputop cluster --prometheus http://prom:9090
                                every node that Prometheus scrapes, refreshed every 5 s
  gputop cluster --prometheus http://prom:9090 --selector '{job=~"gpu.*"}'
                                only the targets these label matchers select
  gputop cluster --once --json  one refresh as JSON, for scripts
  gputop cluster --prometheus https://user:pass@prom --bearer-token-file /run/prom-token
  gputop cluster --prometheus https://prom:9090 --ca-file ca.pem --client-cert me.pem --client-key me.key
                                a Prometheus behind a private CA that asks for a client certificate

Reads gputop serve's metrics, or dcgm-exporter's beside node-exporter's: docs/prometheus.md.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``cluster`` to the CLI's subparsers (the parser class is the CLI's own)."""
    parser = subparsers.add_parser(
        "cluster",
        help="every node's CPU cores and GPUs, read from Prometheus",
        description="The GPU fleet in one view: every node that Prometheus scrapes (gputop serve, "
        "or dcgm-exporter beside node-exporter), one node per host, with fleet totals. A few "
        "queries per refresh, whatever the number of nodes.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--prometheus",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"the Prometheus server (default {DEFAULT_URL}); basic auth as https://user:password@host",
    )
    parser.add_argument(
        "--selector", default=None, metavar="MATCHERS", help="label matchers every query is limited to, e.g. '{job=~\"gpu.*\"}'"
    )
    parser.add_argument("--interval", type=INTERVAL, default=5.0, metavar="S", help="seconds between refreshes (default 5)")
    parser.add_argument("--timeout", type=seconds(0.1, 300), default=5.0, metavar="S", help="seconds to wait for each answer (default 5)")
    parser.add_argument("--bearer-token-file", default=None, metavar="PATH", help="send the token in this file as 'Authorization: Bearer'")
    parser.add_argument("--ca-file", default=None, metavar="PATH", help="verify the server's HTTPS certificate against this CA (PEM)")
    parser.add_argument("--client-cert", default=None, metavar="PATH", help="a client certificate (PEM), for mutual TLS")
    parser.add_argument("--client-key", default=None, metavar="PATH", help="the key of --client-cert (PEM, unencrypted)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server's HTTPS certificate")
    parser.add_argument("--once", action="store_true", help="print one refresh and exit")
    parser.add_argument("--json", action="store_true", help="with --once: JSON (see README)")
    return parser


Show = Callable[["ClusterFeed"], int]  # the TUI: given the feed, runs until quit, returns an exit status


def run(args: argparse.Namespace, env: Environment, *, show: Show | None = None) -> int:
    from gputop.cluster.client import PromError, Prometheus
    from gputop.cluster.fleet import ClusterError, ClusterFeed
    from gputop.cluster.nodes import to_json
    from gputop.cluster.promql import SelectorError

    if args.json and not args.once:
        return env.error("--json goes with --once (the view itself is interactive)", ExitStatus.USAGE)
    if not args.once and show is None:
        return env.error("no terminal view available here; use --once", ExitStatus.USAGE)
    token = None
    if args.bearer_token_file is not None:
        try:
            with open(args.bearer_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            return env.error(f"cannot read --bearer-token-file {args.bearer_token_file}: {reason}", ExitStatus.USAGE)
        if not token:
            return env.error(f"--bearer-token-file {args.bearer_token_file} is empty", ExitStatus.USAGE)
    if (args.client_cert is None) != (args.client_key is None):
        return env.error("--client-cert and --client-key go together", ExitStatus.USAGE)
    client_cert = None if args.client_cert is None else (str(args.client_cert), str(args.client_key))
    try:
        prom = Prometheus(
            args.prometheus,
            bearer_token=token,
            timeout_s=args.timeout,
            verify=not args.insecure,
            ca_file=args.ca_file,
            client_cert=client_cert,
        )
    except PromError as exc:
        return env.error(f"--prometheus: {exc}" if exc.kind == "usage" else str(exc), ExitStatus.USAGE)
    feed = None
    try:
        try:
            feed = ClusterFeed(prom, args.selector)
        except SelectorError as exc:
            return env.error(str(exc), ExitStatus.USAGE)
        if not args.once:
            assert show is not None
            return show(feed)
        try:
            sample = feed.refresh()
        except ClusterError as exc:
            return env.error(str(exc), ExitStatus.USAGE if exc.usage else ExitStatus.FAILURE)
        env.stdout.write(to_json(sample) if args.json else to_text(sample))
        return ExitStatus.OK
    finally:
        if feed is not None:
            feed.close()
        prom.close()


def clock_time(ts: float | None) -> str:
    """HH:MM:SS, local time (the "stale since" of a node)."""
    return fmt.NA if ts is None else time.strftime("%H:%M:%S", time.localtime(ts))


def to_text(sample: ClusterSample) -> str:
    """``--once`` without ``--json``: the totals, then a line per node and per GPU."""
    from gputop.cluster.nodes import labels, stale_note

    t = sample.totals
    lines = [
        (
            f"{t.nodes} nodes ({stale_note(t)})   GPUs {t.busy_gpus} busy of {t.gpus}"
            f"   {t.idle_with_memory} idle holding memory   power {fmt.watts(t.power_w)}"
            f"   cores {fmt.num(t.cores_busy)} busy of {fmt.text(t.cores)}"
        )
    ]
    if not sample.nodes:
        lines.append("no targets: Prometheus scrapes nothing this selector matches")
    names = labels(sample.nodes)
    for n in sample.nodes:
        stale = f"   STALE since {clock_time(n.stale_since)}" if n.stale else ""
        lines.append(
            f"{names[n.host]}   [{fmt.text(n.source)}: {', '.join(n.instances)}]"
            f"   cores {fmt.num(n.cores_busy)} busy of {fmt.text(n.cores)}{stale}"
        )
        for g in n.gpus:
            activity = f"SMs {fmt.pct(g.sm_active_pct)}" if g.sm_active_pct is not None else f"util {fmt.pct(g.gpu_util_pct)}"
            flags = [w for w, on in (("idle holding memory", g.idle_with_memory), ("util high, SMs mostly idle", g.util_trap)) if on]
            lines.append(
                f"  GPU {fmt.text(g.index)}  {fmt.text(g.name)}   {activity}"
                f"   mem {fmt.used_total(g.mem_used_bytes, g.mem_total_bytes)}"
                f"   {fmt.watts(g.power_w)}   {fmt.celsius(g.temp_c)}" + (f"   ({'; '.join(flags)})" if flags else "")
            )
    if sample.jobs:
        from gputop.cluster.nodes import job_line

        lines.append("jobs (gputop serve --run)")
        lines += [f"  {job_line(j)}" for j in sample.jobs]
    return "\n".join(lines) + "\n"
