"""`gputop serve --web-config` off loopback as a cluster runs it: TLS, mutual TLS and basic auth,
scraped by a real Prometheus from its own scrape_config, and `gputop cluster` reading that
Prometheus behind the same kind of web config. Certificates come from a throwaway CA made here."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from cluster_fixtures import PROMETHEUS, Prometheus, free_port
from helpers import Served, basic_auth, fake_env, wait_for
from tls_fixtures import CA, htpasswd

APT = "apt-get install -y prometheus"
USER, PASSWORD = "alice", "s3cret pass"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("serve-tls"),  # one CA, one server and one Prometheus for the module, on one worker
]


def web_config(folder, cert, key, ca, users: dict[str, str], name: str = "web.yml") -> str:
    """The file an operator writes for node-exporter, gputop serve and Prometheus alike."""
    lines = ["tls_server_config:", f"  cert_file: {cert.name}", f"  key_file: {key.name}"]
    if ca is not None:
        lines += ["  client_auth_type: RequireAndVerifyClientCert", f"  client_ca_file: {ca.name}"]
    if users:
        lines += ["basic_auth_users:", *(f"  {u}: {h}" for u, h in users.items())]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def fetch(url: str, context: ssl.SSLContext | None = None, auth: str | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a GET; a 4xx is an answer, a refused handshake an exception."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=basic_auth(auth)), timeout=timeout, context=context) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def tls_prometheus(tmp, ca: CA, web: str, client: tuple, target: str) -> Prometheus:
    """A real Prometheus serving its API behind ``web`` (TLS, client certificates, basic auth) and
    scraping ``target`` over https with a client certificate and basic auth."""
    (tmp / "scrape-password").write_text(PASSWORD)
    job = (
        "scheme: https\n"
        f"tls_config:\n  ca_file: {ca.path}\n  cert_file: {client[0]}\n  key_file: {client[1]}\n"
        f"basic_auth:\n  username: {USER}\n  password_file: {tmp / 'scrape-password'}\n"
    )
    context = ca.client_context(client)
    return Prometheus(
        tmp, {"gputop": [target]}, extra_args=(f"--web.config.file={web}",), job_yaml=job, client=(context, f"{USER}:{PASSWORD}")
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """gputop serve on the fake H100 behind TLS, client certificates and basic auth; a real
    Prometheus scraping it the same way and serving its own API the same way."""
    tmp = tmp_path_factory.mktemp("serve-tls")
    ca = CA(tmp)
    server = ca.issue("server", server=True)
    scraper = ca.issue("prometheus")
    users = {USER: htpasswd(PASSWORD)}
    web = web_config(tmp, *server, ca.path, users)
    served = Served(
        "--port",
        "0",
        "--interval",
        "0.2",
        "--web-config",
        web,
        fake="H100_SXM",
        context=ca.client_context(scraper),
        auth=f"{USER}:{PASSWORD}",
    )
    prom = None
    try:
        wait_for(lambda: "gputop_gpu_sm_active_ratio" in served.get(), 30, "no GPM metrics (they need two samples)")
        if PROMETHEUS is not None:
            prom_tmp = tmp / "prom"
            prom_tmp.mkdir()
            prom = tls_prometheus(prom_tmp, ca, web, scraper, f"127.0.0.1:{served.port}")
        yield {"tmp": tmp, "ca": ca, "served": served, "prom": prom, "scraper": scraper}
    finally:
        if prom is not None:
            prom.stop()
        served.stop()


def test_it_says_https_and_what_guards_it(world):
    served = world["served"]
    assert served.url.startswith("https://127.0.0.1:")
    assert "TLS on, basic auth on" in served.stderr[0]
    assert "gputop_gpu_sm_active_ratio" in served.get()


@pytest.mark.skipif(PROMETHEUS is None, reason=f"prometheus not installed ({APT})")
def test_a_real_prometheus_scrapes_it_over_tls_with_basic_auth(world):
    prom = world["prom"]
    series = wait_for(lambda: prom.query("gputop_gpu_sm_active_ratio"), 60, "Prometheus had no gputop_gpu_sm_active_ratio")
    (one,) = series
    assert one["metric"]["job"] == "gputop" and 0.6 < float(one["value"][1]) < 0.9
    (up,) = prom.query('up{job="gputop"}')
    assert up["value"][1] == "1"


def _wrong_password(w):
    return fetch(w["served"].url, w["ca"].client_context(w["scraper"]), f"{USER}:not the password")


def _no_password(w):
    return fetch(w["served"].url, w["ca"].client_context(w["scraper"]))


def _unknown_user(w):
    return fetch(w["served"].url, w["ca"].client_context(w["scraper"]), f"mallory:{PASSWORD}")


def _plain_http(w):
    return fetch(w["served"].url.replace("https://", "http://"), None, f"{USER}:{PASSWORD}")


def _expired_client_certificate(w):
    return fetch(w["served"].url, w["ca"].client_context(w["ca"].issue("expired", expired=True)), f"{USER}:{PASSWORD}")


def _no_client_certificate(w):
    return fetch(w["served"].url, w["ca"].client_context(), f"{USER}:{PASSWORD}")


def _another_cas_client_certificate(w):
    rogue = CA(w["tmp"], slug="rogue")
    context = w["ca"].client_context()
    context.load_cert_chain(*map(str, rogue.issue("client")))
    return fetch(w["served"].url, context, f"{USER}:{PASSWORD}")


def _not_trusting_the_server(w):
    return fetch(w["served"].url, ssl.create_default_context(), f"{USER}:{PASSWORD}")  # the system CAs: the client refuses


@pytest.mark.parametrize("attempt", [_wrong_password, _no_password, _unknown_user], ids=lambda f: f.__name__.strip("_"))
def test_bad_credentials_get_401_and_the_others_are_still_served(world, attempt):
    status, headers, body = attempt(world)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ") and b"gputop_" not in body
    assert "gputop_gpu_sm_active_ratio" in world["served"].get()


@pytest.mark.parametrize(
    "attempt, words",
    [
        (_plain_http, ""),  # the connection is reset or closed: no HTTP answer at all
        (_expired_client_certificate, "CERTIFICATE_EXPIRED"),
        (_no_client_certificate, "CERTIFICATE_REQUIRED"),
        (_another_cas_client_certificate, "UNKNOWN_CA"),
        (_not_trusting_the_server, "CERTIFICATE_VERIFY_FAILED"),  # the client's refusal: the server's CA is private
    ],
    ids=lambda f: getattr(f, "__name__", "").strip("_"),
)
def test_a_refused_connection_gets_nothing_and_the_others_are_still_served(world, attempt, words):
    with pytest.raises((OSError, http.client.HTTPException)) as info:  # ssl.SSLError, a reset or a closed connection
        attempt(world)
    assert words in str(info.value)
    assert "gputop_gpu_sm_active_ratio" in world["served"].get()


def test_the_password_is_never_logged(world):
    _wrong_password(world)
    world["served"].get()
    log = "".join(world["served"].stderr)
    assert PASSWORD not in log and "not the password" not in log and "Traceback" not in log


# ------------------------------------------------------------------------------- gputop cluster


def cluster(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gputop", "cluster", "--once", *args], capture_output=True, text=True, timeout=60, env=fake_env(None)
    )


@pytest.mark.skipif(PROMETHEUS is None, reason=f"prometheus not installed ({APT})")
def test_cluster_reads_a_prometheus_behind_tls_client_certificates_and_basic_auth(world):
    prom, ca, (cert, key) = world["prom"], world["ca"], world["scraper"]
    wait_for(lambda: prom.query("gputop_gpu_sm_active_ratio"), 60, "Prometheus had no gputop_gpu_sm_active_ratio")
    url = f"https://{USER}:{urllib.parse.quote(PASSWORD)}@127.0.0.1:{prom.port}"
    out = cluster("--json", "--prometheus", url, "--ca-file", str(ca.path), "--client-cert", str(cert), "--client-key", str(key))
    assert out.returncode == 0, out.stderr
    (node,) = json.loads(out.stdout)["nodes"]
    assert len(node["gpus"]) == 1 and node["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


@pytest.mark.skipif(PROMETHEUS is None, reason=f"prometheus not installed ({APT})")
@pytest.mark.parametrize(
    "flags, words, status",
    [
        (["--client-cert", "{cert}", "--client-key", "{key}"], "private CA: --ca-file", 1),  # the system CAs do not know this one
        (["--ca-file", "{ca}"], "--client-cert", 1),  # no client certificate
        (["--ca-file", "{ca}", "--client-cert", "{cert}", "--client-key", "{key}", "--wrong-password"], "HTTP 401", 1),
        (["--ca-file", "{ca}", "--client-cert", "{cert}"], "--client-cert and --client-key go together", 2),
        (["--ca-file", "{tmp}/nowhere.pem"], "--ca-file", 2),
        (["--ca-file", "{ca}", "--client-cert", "{key}", "--client-key", "{key}"], "not a usable PEM certificate or key", 2),
    ],
)
def test_cluster_without_what_prometheus_asks_for_is_one_line(world, flags, words, status):
    prom, ca, (cert, key) = world["prom"], world["ca"], world["scraper"]
    password = "nope" if "--wrong-password" in flags else urllib.parse.quote(PASSWORD)
    names = {"cert": cert, "key": key, "ca": ca.path, "tmp": world["tmp"]}
    out = cluster(
        "--prometheus", f"https://{USER}:{password}@127.0.0.1:{prom.port}", *(f.format(**names) for f in flags if f != "--wrong-password")
    )
    assert out.returncode == status and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr and words in out.stderr, out.stderr
    assert PASSWORD not in out.stderr and "nope" not in out.stderr


# ------------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    "text, words",
    [
        ("tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n", "no such file"),
        ("tls_server_config:\n  cert_file: web.yml\n  key_file: web.yml\n", "not a usable PEM certificate or key"),
        ("basic_auth_user:\n  alice: x\n", "unknown key basic_auth_user"),
    ],
)
def test_a_bad_web_config_is_one_line_exit_2_and_nothing_listens(tmp_path, text, words):
    (tmp_path / "web.yml").write_text(text)
    port = free_port()
    out = subprocess.run(
        [sys.executable, "-m", "gputop", "serve", "--port", str(port), "--web-config", str(tmp_path / "web.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        env=fake_env(None),
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("gputop serve: error: --web-config ") and words in out.stderr, out.stderr


def test_clear_text_off_loopback_is_said_once(world):
    ca = world["ca"]
    plain = Served("--addr", "0.0.0.0", "--port", "0", "--interval", "5")
    try:
        assert plain.url.startswith("http://0.0.0.0:")
        wait_for(lambda: len(plain.stderr) >= 2, 30, "the clear-text warning")
        assert "warning:" in plain.stderr[1] and "clear text" in plain.stderr[1]
        plain.get()
        plain.get()
    finally:
        assert plain.stop() == 0
    assert sum("clear text" in line for line in plain.stderr) == 1
    web = web_config(world["tmp"], *ca.issue("server2", server=True), None, {}, name="tls-only.yml")
    secured = Served("--addr", "0.0.0.0", "--port", "0", "--interval", "5", "--web-config", web, context=ca.client_context())
    try:
        assert secured.url.startswith("https://0.0.0.0:") and "TLS on, basic auth off" in secured.stderr[0]
        secured.url = secured.url.replace("0.0.0.0", "127.0.0.1")
        assert "gputop_cpu_utilization_ratio" in secured.get()
    finally:
        assert secured.stop() == 0
    assert not any("clear text" in line for line in secured.stderr)
