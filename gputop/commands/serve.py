"""`gputop serve`: a Prometheus exporter. Sampling runs on its own cadence; scrapes read the latest.

The main thread samples on ``Ticker`` deadlines and hands each Sample to ``gputop.commands.exporter``; an
HTTP server (prometheus_client's WSGI app, one thread per request) answers scrapes from another
thread. However many scrapes arrive, the sampling rate stays the interval's.

Binds 127.0.0.1 unless told otherwise (prometheus_client's own default is every interface). A busy
port or a bad address is one line on stderr and exit 1. Ctrl-C and SIGTERM stop it cleanly.
Imports neither textual nor torch; prometheus_client only once ``run`` starts.
"""

from __future__ import annotations

import argparse
import errno
import math
import socket
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any

from gputop.argtypes import INTERVAL, port
from gputop.environment import Environment
from gputop.exitstatus import ExitStatus
from gputop.sampler import Ticker
from gputop.signals import StopSignals

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

PROG = "gputop serve"
DEFAULT_ADDR = "127.0.0.1"
DEFAULT_PORT = 9400  # dcgm-exporter's too: give one of them another --port if both run
EXAMPLES = """\
examples:
  gputop serve                          http://127.0.0.1:9400/metrics, one sample a second
  gputop serve --addr 0.0.0.0           reachable from other machines (a cluster's Prometheus)
  gputop serve --port 9401 --interval 5 another port, a sample every 5 s
  curl -s localhost:9400/metrics | grep gputop_gpu_sm_active_ratio

Metric names, the dcgm-exporter equivalents and a scrape config for many nodes: docs/prometheus.md.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``serve`` to the CLI's subparsers (the parser class is the CLI's own)."""
    parser = subparsers.add_parser(
        "serve",
        help="export live metrics to Prometheus over HTTP",
        description="Serve every CPU core's and every GPU's metrics at /metrics for Prometheus. "
        "Samples on its own cadence (--interval); a scrape reads the latest sample. "
        "Stops on Ctrl-C or SIGTERM.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--addr",
        default=DEFAULT_ADDR,
        metavar="ADDR",
        help=f"address to listen on (default {DEFAULT_ADDR}, this machine only; 0.0.0.0 or :: for every interface)",
    )
    parser.add_argument(
        "--port", type=port, default=DEFAULT_PORT, metavar="PORT", help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument("--interval", type=INTERVAL, default=1.0, metavar="S", help="seconds between samples (default 1)")
    return parser


class BindError(Exception):
    """The address cannot be listened on; the message is one line for the user."""


def bind(addr: str, port: int, app: Any) -> WSGIServer:
    """A threaded HTTP server listening on ``addr:port`` (IPv4 or IPv6), not yet serving."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise BindError(f"cannot listen on {addr!r}: not an address of this machine ({reason})") from None
    # imported here, not with the module: the CLI imports this one for every command, and
    # wsgiref (http.server, email) is ~10 ms of a start-up that only `serve` needs
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # no line per scrape on stderr
            pass

    class Server(ThreadingMixIn, WSGIServer):
        address_family = family
        daemon_threads = True  # a stuck client never holds up the exit
        request_queue_size = 256  # socketserver's 5 would drop a burst of concurrent scrapes

    try:
        server = Server((str(sockaddr[0]), port), QuietHandler)
    except OSError as exc:
        where = _hostport(addr, port)
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"cannot listen on {where}: the port is already in use (choose another with --port)") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise BindError(f"cannot listen on {where}: {addr} is not an address of this machine") from None
        if exc.errno == errno.EACCES:
            raise BindError(f"cannot listen on {where}: permission denied (ports below 1024 need root; the default is 9400)") from None
        raise BindError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    server.set_app(app)
    return server


def _hostport(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def run(args: argparse.Namespace, env: Environment, *, stop: threading.Event | None = None, hostname: str | None = None) -> int:
    """Serve until Ctrl-C, SIGTERM or ``stop`` is set. ``env.sampler`` is used as given; without
    one, ``env.open_sampler`` builds the real sources once the port is bound."""
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.process_collector import ProcessCollector

    from gputop.commands.exporter import Exporter

    stderr = env.stderr
    stop = threading.Event() if stop is None else stop
    exporter = Exporter(hostname=hostname, interval_s=args.interval)
    registry = CollectorRegistry()
    registry.register(exporter)
    ProcessCollector(registry=registry)  # process_cpu_seconds_total: the exporter's own cost
    try:
        server = bind(args.addr, args.port, make_wsgi_app(registry))
    except BindError as exc:
        return env.error(str(exc))
    sampler = env.sampler
    thread = None
    try:
        with StopSignals(stop):
            if sampler is None:
                sampler = env.open_sampler(math.inf)  # no process lists: no metric shows them
            ticker = Ticker(args.interval)
            exporter.update(sampler.sample())  # the first scrape already has data
            thread = threading.Thread(target=server.serve_forever, name="gputop-http", daemon=True)
            thread.start()
            host, port = server.server_address[:2]
            stderr.write(f"{PROG}: http://{_hostport(str(host), int(port))}/metrics  every {args.interval:g} s  (Ctrl-C to stop)\n")
            stderr.flush()
            while not stop.wait(ticker.next_delay()):
                exporter.update(sampler.sample())
    finally:
        if thread is not None:
            server.shutdown()
        server.server_close()
        if env.sampler is None and sampler is not None:
            sampler.close()
    return ExitStatus.OK
