"""`gputop serve --web-config`: the file read and checked, and basic auth, in process."""

from __future__ import annotations

import base64
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from gputop.commands import webconfig
from gputop.commands.webconfig import BasicAuth, WebConfigError, guard, load
from helpers import basic_auth
from tls_fixtures import CA, htpasswd

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = CA(folder)
    return folder, ca, ca.issue("server", server=True)


def write(folder, text: str):
    path = folder / "web.yml"
    path.write_text(text)
    return str(path)


TLS = "tls_server_config:\n  cert_file: test-server.pem\n  key_file: test-server.key\n"


def test_tls_and_users_read_with_paths_relative_to_the_file(pki, monkeypatch, tmp_path):
    folder, _, _ = pki
    monkeypatch.chdir(tmp_path)  # elsewhere: the cert paths are the file's folder's
    hashed = htpasswd("s3cret", cost=4)
    config = load(
        write(
            folder,
            TLS + f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: test-ca.pem\nbasic_auth_users:\n  alice: {hashed}\n",
        )
    )
    assert config.tls is not None and config.tls.verify_mode == ssl.CERT_REQUIRED
    assert config.tls.minimum_version == ssl.TLSVersion.TLSv1_2  # exporter-toolkit's default
    assert config.client_auth_type == "RequireAndVerifyClientCert"
    assert config.users == {"alice": hashed.encode()}


@pytest.mark.parametrize(
    "client_auth, ca, mode",
    [
        ("", "", ssl.CERT_NONE),  # exporter-toolkit's empty value: NoClientCert
        ("NoClientCert", "", ssl.CERT_NONE),
        ("VerifyClientCertIfGiven", "  client_ca_file: test-ca.pem\n", ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", "  client_ca_file: test-ca.pem\n", ssl.CERT_REQUIRED),
    ],
)
def test_each_client_auth_type_is_its_ssl_verify_mode(pki, client_auth, ca, mode):
    config = load(write(pki[0], TLS + f"  client_auth_type: '{client_auth}'\n" + ca))
    assert config.tls is not None and config.tls.verify_mode == mode and config.client_auth_type == (client_auth or "NoClientCert")


def test_an_empty_file_is_plain_http(pki):
    config = load(write(pki[0], ""))
    assert config.tls is None and config.users == {} and config.headers == ()


@pytest.mark.parametrize(
    "text, words",
    [
        ("tls_server_config: [\n", "is not YAML"),
        ("- a list\n", "the file must be a mapping"),
        ("tls_sever_config:\n  cert_file: x\n", "unknown key tls_sever_config"),
        (TLS + "  cert_flie: x\n", "unknown key tls_server_config.cert_flie"),
        (TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites is not supported by gputop serve (Go's cipher suite names"),
        (TLS + "  client_allowed_sans: [a]\n", "client_allowed_sans is not supported"),
        (TLS + "  curve_preferences: [X25519]\n", "curve_preferences is not supported"),
        ("tls_server_config:\n  cert: '-----BEGIN'\n", "tls_server_config.cert is not supported by gputop serve (inline PEM"),
        ("rate_limit:\n  interval: 1s\n  burst: 5\n", "rate_limit is not supported"),
        ("tls_server_config:\n  cert_file: test-server.pem\n", "tls_server_config needs key_file"),
        (TLS.replace("test-server.pem", "nowhere.pem"), "cert_file/key_file: no such file"),
        (TLS.replace("test-server.key", "test-ca.pem"), "not a usable PEM certificate or key"),
        (TLS + "  client_auth_type: RequireAnyClientCert\n", "RequireAnyClientCert is not supported by gputop serve"),
        (TLS + "  client_auth_type: RequestClientCert\n", "RequestClientCert is not supported by gputop serve"),
        (TLS + "  client_auth_type: Always\n", "'Always' is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
        (TLS + "  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
        (TLS + "  client_ca_file: test-ca.pem\n", "client_ca_file is set but client_auth_type is NoClientCert"),
        (TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: web.yml\n", "web.yml: not a usable PEM certificate"),
        (TLS + "  min_version: TLS14\n", "min_version 'TLS14' is not one of TLS10, TLS11, TLS12, TLS13"),
        (TLS + "  max_version: [TLS13]\n", "max_version ['TLS13'] is not one of"),
        ("tls_server_config: {}\n", "tls_server_config needs cert_file"),  # exporter-toolkit would serve plain HTTP
        (TLS + "  min_version: TLS13\n  max_version: TLS12\n", "min_version is above max_version"),
        ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users.alice is not a bcrypt hash"),
        ("basic_auth_users: [alice]\n", "basic_auth_users must be a mapping"),
        ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "X-Powered-By cannot be set"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "X-Frame-Options must be deny or sameorigin"),
    ],
)
def test_what_cannot_be_served_as_written_is_one_line(pki, text, words):
    path = write(pki[0], text)
    with pytest.raises(WebConfigError) as info:
        load(path)
    message = str(info.value)
    assert words in message and "\n" not in message and message.startswith(f"--web-config {path}")


def test_an_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(WebConfigError, match=r"cannot read --web-config .*missing.yml: No such file"):
        load(str(tmp_path / "missing.yml"))


def test_an_encrypted_key_is_refused_without_a_prompt(pki):
    folder, ca, _ = pki
    ca.issue("locked", server=True, passphrase=b"pass phrase")
    with pytest.raises(WebConfigError, match="test-locked.key: encrypted with a passphrase"):
        load(write(folder, "tls_server_config:\n  cert_file: test-locked.pem\n  key_file: test-locked.key\n"))


def test_every_refused_key_is_named_in_the_docs():
    import pathlib

    docs = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "prometheus.md").read_text()
    for key in [*webconfig.REFUSED, *webconfig.REFUSED_CLIENT_AUTH]:
        assert f"`{key}`" in docs, key


# ------------------------------------------------------------------------------------ basic auth


def basic(user: str, password: str) -> str:
    return basic_auth(f"{user}:{password}")["Authorization"]


class CountingBcrypt:
    """bcrypt itself, counting the checks it makes."""

    def __init__(self, real) -> None:
        self.real, self.checks = real, 0

    def checkpw(self, password: bytes, hashed: bytes) -> bool:
        self.checks += 1
        return self.real.checkpw(password, hashed)


@pytest.fixture
def auth():
    auth = BasicAuth({"alice": htpasswd("s3cret", cost=4).encode(), "bob": htpasswd("other", cost=4).encode()})
    auth._bcrypt = CountingBcrypt(auth._bcrypt)
    return auth


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        basic("alice", "wrong"),
        basic("alice", ""),
        basic("bob", "s3cret"),
        basic("carol", "s3cret"),
        "Bearer abc",
        "Basic !!!",
        "Basic " + base64.b64encode(b"alice").decode(),
        "Basic " + base64.b64encode(b"\xffalice:s3cret").decode(),
    ],
)
def test_wrong_or_missing_credentials_are_refused(auth, header):
    assert not auth.allows(header)


def test_the_right_password_is_checked_by_bcrypt_once_then_remembered_by_a_keyed_hash(auth):
    assert auth.allows(basic("alice", "s3cret")) and auth.allows(basic("bob", "other"))
    assert auth._bcrypt.checks == 2
    for _ in range(50):
        assert auth.allows(basic("alice", "s3cret"))
    assert auth._bcrypt.checks == 2
    assert not auth.allows(basic("alice", "s3cret!"))  # a near miss is not remembered as a pass
    assert not auth.allows(basic("alice", "s3cret!"))
    assert auth._bcrypt.checks == 4  # failures are checked every time
    remembered = b"".join(auth._verified)
    assert b"s3cret" not in remembered and len(remembered) == 2 * 32  # digests, never the password


def test_an_unknown_user_costs_a_bcrypt_like_a_known_one(auth):
    assert not auth.allows(basic("mallory", "s3cret"))
    assert not auth.allows(basic("mallory", "s3cret"))
    assert auth._bcrypt.checks == 2  # against the decoy hash, each time


def test_a_burst_of_first_scrapes_costs_one_bcrypt(auth):
    with ThreadPoolExecutor(max_workers=50) as pool:
        assert all(pool.map(lambda _: auth.allows(basic("alice", "s3cret")), range(200)))
    assert auth._bcrypt.checks == 1


def test_guard_answers_401_with_www_authenticate_and_adds_the_headers(pki):
    hashed = htpasswd("s3cret", cost=4)
    config = load(write(pki[0], f"basic_auth_users:\n  alice: {hashed}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"))
    calls = threading.local()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"metrics\n"]

    def call(header):
        environ = {} if header is None else {"HTTP_AUTHORIZATION": header}
        body = b"".join(guard(app, config)(environ, lambda status, headers, exc_info=None: setattr(calls, "got", (status, dict(headers)))))
        return calls.got[0], calls.got[1], body

    status, headers, body = call(None)
    assert status == "401 Unauthorized" and headers["WWW-Authenticate"].startswith("Basic") and headers["X-Frame-Options"] == "deny"
    assert body == b"Unauthorized\n"
    status, headers, body = call(basic("alice", "s3cret"))
    assert status == "200 OK" and body == b"metrics\n" and headers["X-Frame-Options"] == "deny"
