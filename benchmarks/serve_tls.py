"""What `gputop serve --web-config` costs a scrape: plain HTTP, TLS, and mutual TLS with basic auth.

Run by hand:  .venv/bin/python benchmarks/serve_tls.py [--scrapes 300]

Starts three `gputop serve` processes side by side on the fake H100 (tests/sitecustom), one per
mode, with certificates from a throwaway CA (tests/tls_fixtures.py) and a cost-10 bcrypt hash (what
`htpasswd -nBC 10` writes). Then scrapes them in turn, ``--scrapes`` rounds, each scrape a new
connection (as Prometheus meets it: the server answers HTTP/1.0 and closes), timing:

- wall: ``time.perf_counter`` around one GET (connect, handshake, request, whole body), median;
- server CPU: the serving process's utime + stime from /proc/<pid>/stat over all the scrapes,
  divided by their number (its sampling at 1 s runs throughout and is in every mode alike);
- the first authenticated scrape (bcrypt's one check) against the median of the rest;
- and, for scale, one ``bcrypt.checkpw`` of a cost-10 hash here (median of 7, CPU time): what
  every scrape would cost without the server's memory of verified pairs.
"""

from __future__ import annotations

import argparse
import base64
import os
import pathlib
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import bcrypt

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tls_fixtures import CA, htpasswd  # noqa: E402


def bcrypt_check_ms(repeats: int = 7) -> float:
    hashed = htpasswd("scrape me").encode()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        bcrypt.checkpw(b"scrape me", hashed)
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def cpu_s(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, name: str, web: pathlib.Path | None, context: ssl.SSLContext | None, auth: str | None) -> None:
        env = dict(os.environ, GPUTOP_FAKE_NVML="H100_SXM")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests" / "sitecustom"), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
        flags = [] if web is None else ["--web-config", str(web)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gputop", "serve", "--port", "0", *flags], stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        assert self.proc.stderr is not None
        self.url = self.proc.stderr.readline().split()[2]
        self.name, self.context = name, context
        self.headers = {} if auth is None else {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
        self.walls: list[float] = []

    def scrape(self) -> None:
        t0 = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(self.url, headers=self.headers), timeout=30, context=self.context) as resp:
            assert resp.status == 200 and b"gputop_gpu_power_watts" in resp.read()
        self.walls.append(time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        ca = CA(tmp)
        cert, key = ca.issue("server", server=True)
        client = ca.issue("scraper")
        tls = tmp / "tls.yml"
        tls.write_text(f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n")
        full = tmp / "full.yml"
        full.write_text(
            tls.read_text() + f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca.path.name}\n"
            f"basic_auth_users:\n  prometheus: {htpasswd('scrape me')}\n"
        )
        servers = [
            Server("plain HTTP", None, None, None),
            Server("TLS", tls, ca.client_context(), None),
            Server("mTLS + basic auth", full, ca.client_context(client), "prometheus:scrape me"),
        ]
        try:
            before = {s.name: cpu_s(s.proc.pid) for s in servers}
            for _ in range(args.scrapes):
                for s in servers:
                    s.scrape()
            after = {s.name: cpu_s(s.proc.pid) for s in servers}
        finally:
            for s in servers:
                s.proc.terminate()
                s.proc.wait(10)
    print(f"{args.scrapes} scrapes each, round robin, a new connection per scrape")
    print("| mode | wall per scrape (median) | first scrape | server CPU per scrape |")
    print("|---|---:|---:|---:|")
    for s in servers:
        cpu_ms = (after[s.name] - before[s.name]) / args.scrapes * 1e3
        print(f"| {s.name} | {statistics.median(s.walls[1:]) * 1e3:.2f} ms | {s.walls[0] * 1e3:.1f} ms | {cpu_ms:.2f} ms |")
    print(f"one bcrypt check (cost 10), CPU: {bcrypt_check_ms():.1f} ms")


if __name__ == "__main__":
    main()
