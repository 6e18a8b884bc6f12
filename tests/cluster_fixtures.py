"""Real things for the cluster tests, on loopback: a Prometheus over a temporary config, a static
dcgm-exporter exposition and a real node-exporter."""

from __future__ import annotations

import http.client
import http.server
import json
import pathlib
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request

from helpers import basic_auth, wait_for

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
APT = "apt-get install -y prometheus prometheus-node-exporter"


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
    """A real Prometheus on 127.0.0.1, scraping ``targets`` ({job: ["addr:port", ...]}), each job
    with ``job_yaml`` too (lines of YAML, e.g. ``scheme: https``). With ``client`` (an SSL context
    and "user:password"), its own API is behind ``--web.config.file`` in ``extra_args``."""

    def __init__(
        self,
        tmp: pathlib.Path,
        targets: dict[str, list[str]],
        scrape_s: float = 1.0,
        extra_args: tuple[str, ...] = (),
        job_yaml: str = "",
        client: tuple[ssl.SSLContext, str] | None = None,
    ) -> None:
        assert PROMETHEUS is not None
        self.port = free_port()
        self.url = f"{'http' if client is None else 'https'}://127.0.0.1:{self.port}"
        self.context, auth = (None, None) if client is None else client
        self.headers = basic_auth(auth)
        extra = "".join(f"    {line}\n" for line in job_yaml.splitlines())
        jobs = "".join(f"  - job_name: {job}\n{extra}    static_configs:\n      - targets: {json.dumps(t)}\n" for job, t in targets.items())
        config = tmp / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {scrape_s:g}s\n  scrape_timeout: {scrape_s:g}s\n"
            f"  evaluation_interval: {scrape_s:g}s\nscrape_configs:\n{jobs}"
        )
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(self.ready, 30, "Prometheus did not become ready")

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
        try:
            with self._get("/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _get(self, path: str, timeout: float) -> http.client.HTTPResponse:
        request = urllib.request.Request(self.url + path, headers=self.headers)
        return urllib.request.urlopen(request, timeout=timeout, context=self.context)

    def query(self, expr: str) -> list[dict]:
        with self._get(f"/api/v1/query?query={urllib.parse.quote(expr)}", timeout=5) as resp:
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
            [
                NODE_EXPORTER,
                f"--web.listen-address={self.target}",
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.uname",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
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


# dcgm-exporter's exposition as its default counters write it (HELP/TYPE per field, labels gpu,
# UUID, pci_bus_id, device, modelName, Hostname, DCGM_FI_DRIVER_VERSION). Four GPUs: 0 and 1
# busy, 2 idle holding 20000 MiB, 3 with blank sentinels (temperature: DCGM_INT64_BLANK + 2,
# "not supported"; SM active: DCGM_FP64_BLANK).
DCGM_HOSTNAME = "dcgm-node-5"
DCGM_FIELDS = {  # name, type, help, per-GPU values
    "DCGM_FI_DEV_GPU_TEMP": ("gauge", "GPU temperature (in C).", ["61", "58", "33", "9223372036854775794"]),
    "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W).", ["612.5", "540.25", "71.0", "300.0"]),
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %).", ["98", "95", "0", "40"]),
    "DCGM_FI_DEV_FB_FREE": ("gauge", "Frame buffer memory free (in MiB).", ["20000", "40000", "60535", "81000"]),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Frame buffer memory used (in MiB).", ["60535", "40535", "20000", "1"]),
    "DCGM_FI_DEV_FB_RESERVED": ("gauge", "Frame buffer memory reserved (in MiB).", ["540", "540", "540", "74"]),
    "DCGM_FI_PROF_SM_ACTIVE": (
        "gauge",
        "The ratio of cycles an SM has at least 1 warp assigned (in %).",
        ["0.875", "0.25", "0", "140737488355328"],
    ),
}


def dcgm_exposition(hostname: str = DCGM_HOSTNAME) -> str:
    lines = []
    for name, (kind, help_, values) in DCGM_FIELDS.items():
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        for gpu, v in enumerate(values):
            lines.append(
                f'{name}{{gpu="{gpu}",UUID="GPU-5e1f0000-0000-0000-0000-00000000000{gpu}",'
                f'pci_bus_id="00000000:{0x18 + gpu:02X}:00.0",device="nvidia{gpu}",'
                f'modelName="NVIDIA H100 80GB HBM3",Hostname="{hostname}",'
                f'DCGM_FI_DRIVER_VERSION="550.54.15"}} {v}'
            )
    return "\n".join(lines) + "\n"


class AuthProxy:
    """An HTTP server that forwards to ``upstream`` only requests carrying ``Authorization:
    want`` (else 401), as a reverse proxy in front of a Prometheus does."""

    def __init__(self, upstream: str, want: set[str]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if self.headers.get("Authorization") not in want:
                    body = b"Unauthorized\n"
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer realm="prometheus"')
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                req = urllib.request.Request(
                    upstream + self.path, data=data, method=self.command, headers={"Content-Type": self.headers.get("Content-Type", "")}
                )
                try:
                    resp = urllib.request.urlopen(req, timeout=10)
                except urllib.error.HTTPError as err:
                    resp = err
                body = resp.read()
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.headers.get("Content-Type", ""))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """A socket that accepts connections and never answers (a hung server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def stop(self) -> None:
        self.sock.close()
