"""Real things for the cluster tests, on loopback: a Prometheus over a temporary config, a static
dcgm-exporter exposition, a real node-exporter, and waiting on a condition with a deadline."""

from __future__ import annotations

import http.server
import json
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from typing import Callable, TypeVar

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
APT = "apt-get install -y prometheus prometheus-node-exporter"

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, step: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:g} s: {what}")
        time.sleep(step)


def free_port(addr: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Prometheus:
    """A real Prometheus on 127.0.0.1, scraping ``targets`` ({job: ["addr:port", ...]})."""

    def __init__(self, tmp: pathlib.Path, targets: dict[str, list[str]], scrape_s: float = 1.0,
                 extra_args: tuple[str, ...] = ()) -> None:
        assert PROMETHEUS is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: {json.dumps(t)}\n"
                       for job, t in targets.items())
        config = tmp / "prometheus.yml"
        config.write_text(f"global:\n  scrape_interval: {scrape_s:g}s\n  scrape_timeout: {scrape_s:g}s\n"
                          f"  evaluation_interval: {scrape_s:g}s\nscrape_configs:\n{jobs}")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn", *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(self.ready, 30, "Prometheus did not become ready")

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?query={urllib.parse.quote(expr)}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        stop_process(self.proc)


class StaticExposition:
    """A tiny HTTP server answering ``/metrics`` with fixed text (a dcgm-exporter stand-in)."""

    def __init__(self, addr: str, port: int, text: str) -> None:
        body = text.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((addr, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NodeExporter:
    """The real node-exporter, only the collectors the cluster view reads (cpu, uname)."""

    def __init__(self, addr: str, port: int) -> None:
        assert NODE_EXPORTER is not None
        self.target = f"{addr}:{port}"
        self.proc = subprocess.Popen(
            [NODE_EXPORTER, f"--web.listen-address={self.target}", "--collector.disable-defaults",
             "--collector.cpu", "--collector.uname", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(self._up, 20, f"node-exporter did not answer on {self.target}")

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
        try:
            with urllib.request.urlopen(f"http://{self.target}/metrics", timeout=2) as resp:
                return b"node_cpu_seconds_total" in resp.read()
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)
