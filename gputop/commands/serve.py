"""`gputop serve`: a Prometheus exporter. Sampling runs on its own cadence; scrapes read the latest.

The main thread samples on ``Ticker`` deadlines and hands each Sample to ``gputop.commands.exporter``; an
HTTP server (prometheus_client's WSGI app, one thread per request) answers scrapes from another
thread. However many scrapes arrive, the sampling rate stays the interval's.

Binds 127.0.0.1 unless told otherwise (prometheus_client's own default is every interface). A busy
port or a bad address is one line on stderr and exit 1. Ctrl-C and SIGTERM stop it cleanly.
``--web-config`` (``gputop.commands.webconfig``) adds TLS, mutual TLS, basic auth and headers; a
file that cannot be served exactly as written is one line and exit 2, before anything listens.
The TLS handshake runs on the request's own thread (with a deadline), so a client that stalls
or speaks plain HTTP to the TLS port holds up nobody else. Without TLS on an address other than
loopback it serves, and says once on stderr that it is in clear text.
Imports neither textual nor torch; prometheus_client only once ``run`` starts.

``--run`` launches a job as ``record --run`` does (the same launcher and hooks, in every rank;
its output echoed unless ``--quiet``) and exports its figures beside the node's
(``gputop_workload_*``, per rank: see gputop.commands.exporter). When the job ends, serve keeps
serving its final figures until a scrape has read them (at most LINGER_S; ``--linger S``: for S
seconds instead), then exits with the job's status (1: it failed), as ``record --run`` does: a
batch job (``srun gputop serve --run ...``) ends with its training, and Prometheus has its last
counts. A stop signal stops the job (its whole process group) and serve with it.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import math
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Callable

from gputop.argtypes import INTERVAL, port, seconds
from gputop.commands import launch
from gputop.environment import Environment
from gputop.exitstatus import ExitStatus
from gputop.sampler import SamplerLike, Ticker
from gputop.signals import StopSignals, signal_name
from gputop.workload import WorkloadError

if TYPE_CHECKING:
    import ssl
    from wsgiref.simple_server import WSGIServer

    from gputop.commands.exporter import Exporter, JobFigures
    from gputop.commands.webconfig import WebConfig
    from gputop.model import Sample, WorkloadState
    from gputop.workload import Workload

PROG = "gputop serve"
DEFAULT_ADDR = "127.0.0.1"
DEFAULT_PORT = 9400  # dcgm-exporter's too: give one of them another --port if both run
HANDSHAKE_TIMEOUT_S = 10.0  # a TLS client that says nothing for this long is dropped
LINGER_S = 2.0  # after a refused handshake, how long the refused client's own close is waited for
JOB_LINGER_S = 60.0  # --run: after the job's end, its final figures are served until a scrape, at most this long
DRAIN_S = 0.25  # --run: the job's output is echoed at least this often, whatever --interval
EXAMPLES = """\
examples:
  gputop serve                          http://127.0.0.1:9400/metrics, one sample a second
  gputop serve --addr 0.0.0.0           reachable from other machines (a cluster's Prometheus)
  gputop serve --port 9401 --interval 5 another port, a sample every 5 s
  gputop serve --addr 0.0.0.0 --web-config web.yml
                                        TLS and basic auth, the file node-exporter takes
  curl -s localhost:9400/metrics | grep gputop_gpu_sm_active_ratio
  gputop serve --addr 0.0.0.0 --run torchrun -- --standalone --nproc_per_node=8 train.py
                                        the node and every rank of the job (gputop_workload_*);
                                        exits with the job, once a scrape has its final figures

Metric names, the dcgm-exporter equivalents and a scrape config for many nodes: docs/prometheus.md.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``serve`` to the CLI's subparsers (the parser class is the CLI's own)."""
    parser = subparsers.add_parser(
        "serve",
        help="export live metrics to Prometheus over HTTP",
        description="Serve every CPU core's and every GPU's metrics at /metrics for Prometheus. "
        "Samples on its own cadence (--interval); a scrape reads the latest sample. "
        "With --run, a launched job's ranks too, until the job ends. Stops on Ctrl-C or SIGTERM.",
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
    parser.add_argument(
        "--web-config",
        default=None,
        metavar="FILE",
        help="TLS, mutual TLS and basic auth from Prometheus exporter-toolkit's web config YAML (node-exporter's --web.config.file)",
    )
    launch.add_run_arguments(parser, "export every rank's steps beside the node's metrics until it ends", "")
    parser.add_argument(
        "--linger",
        type=seconds(0.0, 86400.0),
        default=None,
        metavar="S",
        help="with --run: serve the job's final figures for S seconds after it ends, then exit "
        f"(default: until a scrape has read them, at most {JOB_LINGER_S:g} s)",
    )
    return parser


class BindError(Exception):
    """The address cannot be listened on; the message is one line for the user."""


def bind(addr: str, port: int, app: Any, tls: ssl.SSLContext | None = None) -> WSGIServer:
    """A threaded HTTP server listening on ``addr:port`` (IPv4 or IPv6), not yet serving; with
    ``tls``, every connection is a TLS one, its handshake done on the request's thread."""
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

        def finish_request(self, request: Any, client_address: Any) -> None:
            if tls is None:
                return super().finish_request(request, client_address)
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                conn = tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)  # takes over the socket
            except OSError:  # gone already
                return
            try:
                try:
                    conn.do_handshake()
                except OSError:  # plain HTTP, no or a refused client certificate, a stall: only this client's
                    _linger(conn)
                    return
                super().finish_request(conn, client_address)
            finally:
                conn.close()

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


def _linger(conn: socket.socket) -> None:
    """After a refused handshake, whose alert OpenSSL has sent: half-close and read what the client
    had sent already (TLS 1.3 sends its request before the server has checked its certificate).
    Closing with unread data would reset the connection, and the reset can reach the client before
    the alert that says why."""
    deadline = time.monotonic() + LINGER_S
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(LINGER_S)
        while conn.recv(65536) and time.monotonic() < deadline:
            pass
    except OSError:
        pass


def _hostport(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _banner(server: WSGIServer, interval: float, web: WebConfig | None) -> str:
    """The line that says where it serves (its URL third), and a second one when it is reachable
    from other machines in clear text."""
    host, port = str(server.server_address[0]), int(server.server_address[1])
    where = _hostport(host, port)
    tls = web is not None and web.tls is not None
    guards = "" if web is None else f"  TLS {'on' if tls else 'off'}, basic auth {'on' if web.users else 'off'}"
    line = f"{PROG}: {'https' if tls else 'http'}://{where}/metrics  every {interval:g} s{guards}  (Ctrl-C to stop)\n"
    if not tls and not ipaddress.ip_address(host.split("%")[0]).is_loopback:
        line += (
            f"{PROG}: warning: {where} is reachable from other machines in clear text: anyone on the network can read "
            "the metrics (and any password); --web-config with tls_server_config encrypts them\n"
        )
    return line


def run(args: argparse.Namespace, env: Environment, *, stop: threading.Event | None = None, hostname: str | None = None) -> int:
    """Serve until Ctrl-C, SIGTERM or ``stop`` is set (with ``--run``: until the job ends and its
    final figures are served). ``env.sampler`` is used as given; without one, ``env.open_sampler``
    builds the real sources once the port is bound."""
    from gputop.commands.exporter import Exporter

    stderr = env.stderr
    stop = threading.Event() if stop is None else stop
    try:
        workload = launch.workload(args)
    except WorkloadError as exc:
        return env.error(str(exc), ExitStatus.USAGE)
    if getattr(args, "linger", None) is not None and workload is None:
        return env.error("--linger goes with --run (it says how long a finished job's figures are served)", ExitStatus.USAGE)
    exporter = Exporter(hostname=hostname, interval_s=args.interval)
    served = _app(exporter, args.web_config)
    if isinstance(served, str):
        return env.error(served, ExitStatus.USAGE)
    app, web = served
    try:
        server = bind(args.addr, args.port, app, tls=None if web is None else web.tls)
    except BindError as exc:
        return env.error(str(exc))
    job = None if workload is None else _Job(workload, exporter, env, quiet=getattr(args, "quiet", False))
    try:
        _run(env, server, web, exporter, job, stop, args)
    except WorkloadError as exc:  # the job could not be launched
        return env.error(str(exc), ExitStatus.USAGE)
    if job is None or job.state is None:
        return ExitStatus.OK
    stderr.write(launch.ended_line(PROG, job.state, job.stopped_by) + "\n")
    return ExitStatus.FAILURE if job.state.status == "failed" else ExitStatus.OK


def _run(
    env: Environment,
    server: WSGIServer,
    web: WebConfig | None,
    exporter: Exporter,
    job: _Job | None,
    stop: threading.Event,
    args: argparse.Namespace,
) -> None:
    """Sampling (and the job) until the end, the server answering scrapes meanwhile; everything
    closed on the way out."""
    sampler = env.sampler
    thread = None
    try:
        with StopSignals(stop) as signals:
            try:
                if sampler is None:
                    # the GPUs' process lists (the costliest NVML reads) only for a launched job:
                    # its ranks' GPUs; no metric shows them otherwise
                    sampler = env.open_sampler(math.inf if job is None else 2.0)
                if job is not None:
                    job.start()  # on this (the main) thread: see Workload.start
                _publish(exporter, sampler, job)  # the first scrape already has data
                thread = threading.Thread(target=server.serve_forever, name="gputop-http", daemon=True)
                thread.start()
                env.stderr.write(_banner(server, args.interval, web))
                env.stderr.flush()
                _serve(exporter, sampler, job, stop, args)
            finally:
                if job is not None:  # stopped while it runs (a stop signal): its group too
                    job.stop(None if signals.signal is None else signal_name(signals.signal))
    finally:
        if thread is not None:
            server.shutdown()
        server.server_close()
        if env.sampler is None and sampler is not None:
            sampler.close()


def _app(exporter: Exporter, web_config: str | None) -> tuple[Any, WebConfig | None] | str:
    """The WSGI app over the exporter (and gputop's own CPU), behind ``--web-config``'s guard
    where one is given; or why that file cannot be served as written."""
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry()
    registry.register(exporter)
    ProcessCollector(registry=registry)  # process_cpu_seconds_total: the exporter's own cost
    app = make_wsgi_app(registry)
    if web_config is None:
        return app, None
    from gputop.commands.webconfig import WebConfigError, guard, load

    try:
        web = load(web_config)
    except WebConfigError as exc:
        return str(exc)
    return guard(app, web), web


def _serve(exporter: Exporter, sampler: SamplerLike, job: _Job | None, stop: threading.Event, args: argparse.Namespace) -> None:
    """A sample every --interval until a stop signal, or (--run) until the job's final figures
    have been served."""
    ticker = Ticker(args.interval)
    wait = stop.wait if job is None else job.waiting(stop)
    while not wait(ticker.next_delay()):
        _publish(exporter, sampler, job)
        if job is not None and job.ended:
            job.linger(stop, getattr(args, "linger", None))
            return


def _publish(exporter: Exporter, sampler: SamplerLike, job: _Job | None) -> None:
    """A new sample and, with a job, its figures at that sample, swapped in together."""
    sample = sampler.sample()
    exporter.update(sample, None if job is None else job.figures(sample))


class _Job:
    """The job ``--run`` launched, as serve runs it: its figures at each sample, its output echoed,
    and, once it has ended, its final figures served until a scrape has read them."""

    def __init__(self, workload: Workload, exporter: Exporter, env: Environment, quiet: bool) -> None:
        self.workload, self.exporter, self.env, self.quiet = workload, exporter, env, quiet
        self.state: WorkloadState | None = None
        self.stopped_by: str | None = None  # the signal that stopped serve while the job ran

    def start(self) -> None:
        self.state = self.workload.start()

    @property
    def ended(self) -> bool:
        return self.state is not None and not self.state.running

    def figures(self, sample: Sample) -> JobFigures:
        from gputop.commands.exporter import JobFigures

        self.echo()
        state = self.state = self.workload.poll(sample)
        run = self.workload.run_id() or f"{state.name}-{state.pid}"
        return JobFigures(run, state, self.workload.rank_totals())

    def echo(self) -> None:
        lines = launch.shown(self.workload.drain())  # (drained whether echoed or not: nothing piles up)
        if lines and not self.quiet:
            launch.echo(lines, self.env.stdout, self.env.stderr)

    def waiting(self, stop: threading.Event) -> Callable[[float], bool]:
        """``stop.wait``, in slices of DRAIN_S, echoing the job's output after each; returns
        early (False) once the job has ended, so its end is served without waiting out --interval."""

        def wait(seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if stop.wait(min(left, DRAIN_S)):
                    return True
                self.echo()
                if not self.workload.poll().running:
                    return False

        return wait

    def linger(self, stop: threading.Event, seconds: float | None) -> None:
        """The final figures served: for ``seconds``, or (None) until a scrape has read them, at
        most JOB_LINGER_S; a stop signal ends it at once."""
        how = f"for {seconds:g} s" if seconds is not None else f"until a scrape has read them (at most {JOB_LINGER_S:g} s)"
        self.env.stderr.write(f"{PROG}: the job has ended; serving its final figures {how}\n")
        self.env.stderr.flush()
        if seconds is not None:
            stop.wait(seconds)
            return
        final, deadline = self.exporter.samples, time.monotonic() + JOB_LINGER_S
        while self.exporter.scraped < final and time.monotonic() < deadline:
            if stop.wait(min(DRAIN_S, max(0.0, deadline - time.monotonic()))):
                return

    def stop(self, signal: str | None) -> None:
        """The job stopped where it still runs (``signal``: the stop signal that ended serve),
        its last output echoed."""
        running = self.state is not None and self.state.running
        self.state = self.workload.stop()
        if running and self.state.status == "stopped":
            self.stopped_by = signal
        self.echo()
