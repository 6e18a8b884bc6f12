"""`gputop serve --web-config FILE`: Prometheus exporter-toolkit's web configuration, read once.

The YAML is the one node-exporter and dcgm-exporter take as ``--web.config.file`` (and Prometheus
itself as ``--web.config.file``): ``tls_server_config`` (TLS, mutual TLS), ``basic_auth_users``
(user -> bcrypt hash) and ``http_server_config`` (response headers). Relative paths are relative
to the file's own folder, as in exporter-toolkit. What Python's ``ssl`` cannot do the way Go's
``crypto/tls`` does is refused by name at start (``REFUSED``), never ignored: a server is served
as configured or not at all.

Basic auth: bcrypt's own ``checkpw`` (constant-time comparison), an unknown user checked against
a decoy hash of the same cost so that timing does not tell which users exist, one bcrypt at a
time. A pair that passed is remembered as an HMAC-SHA256 of the pair under a key made at start
(``secrets``), never as the password: a scrape every few seconds then costs a hash, not a bcrypt.
Failures are not remembered. The password is never logged.

Imports ``yaml`` and ``bcrypt`` (their one home here) only when ``load`` runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

CLIENT_AUTH = {  # client_auth_type -> (what ssl does, whether a client CA is needed)
    "NoClientCert": (ssl.CERT_NONE, False),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# keys of the format that gputop refuses, and why (Go's crypto/tls can, Python's ssl cannot, or not alike)
REFUSED = {
    "tls_server_config.cert": "inline PEM; write it to a file and name it in cert_file",
    "tls_server_config.key": "inline PEM; write it to a file and name it in key_file",
    "tls_server_config.client_ca": "inline PEM; write it to a file and name it in client_ca_file",
    "tls_server_config.cipher_suites": "Go's cipher suite names are not OpenSSL's; Python's defaults apply",
    "tls_server_config.curve_preferences": "Python's ssl takes one curve, not a preference list",
    "tls_server_config.client_allowed_sans": "not implemented; limit clients by client_ca_file instead",
    "rate_limit": "not implemented",
}
# Python's ssl verifies every certificate it accepts (RequireClientCert: exporter-toolkit's old name for RequireAnyClientCert)
REFUSED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version", "prefer_server_cipher_suites"}
HTTP_KEYS = {"http2", "headers"}
TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
# the response headers exporter-toolkit lets a web config set, and the values it allows (None: any)
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
REALM = 'Basic realm="gputop"'
REMEMBERED = 1024  # verified pairs kept (each 32 bytes); past that the memory starts again


class WebConfigError(Exception):
    """The web config cannot be used as written; the message is one line for the user."""


@dataclass(frozen=True)
class WebConfig:
    """What ``load`` read: a server TLS context (or None: plain HTTP), the basic-auth users and
    the extra response headers."""

    path: str
    tls: ssl.SSLContext | None = None
    client_auth_type: str = "NoClientCert"
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()


def load(path: str) -> WebConfig:
    """Read and check the whole file; ``WebConfigError`` for anything that would not be served
    exactly as written."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"cannot read --web-config {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except yaml.YAMLError as exc:
        raise WebConfigError(f"--web-config {path} is not YAML: {' '.join(str(exc).split())}") from None
    doc = {} if doc is None else doc
    where = f"--web-config {path}"
    _check_keys(where, "", _mapping(where, "the file", doc), TOP_KEYS)
    folder = os.path.dirname(os.path.abspath(path))
    tls_section = doc.get("tls_server_config")
    http_section = _mapping(where, "http_server_config", doc.get("http_server_config") or {})
    _check_keys(where, "http_server_config.", http_section, HTTP_KEYS)
    tls = client_auth = None
    if tls_section is not None:
        tls, client_auth = _tls(where, folder, _mapping(where, "tls_server_config", tls_section))
    return WebConfig(
        path=path,
        tls=tls,
        client_auth_type=client_auth or "NoClientCert",
        users=_users(where, doc.get("basic_auth_users") or {}),
        headers=_headers(where, http_section.get("headers") or {}),
    )


def _mapping(where: str, name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WebConfigError(f"{where}: {name} must be a mapping of names to values")
    return value


def _check_keys(where: str, prefix: str, section: dict[str, Any], known: set[str]) -> None:
    for key in section:
        if prefix + key in REFUSED:
            raise WebConfigError(f"{where}: {prefix}{key} is not supported by gputop serve ({REFUSED[prefix + key]})")
        if key not in known:
            raise WebConfigError(f"{where}: unknown key {prefix}{key} (known: {', '.join(sorted(known))})")


def _string(where: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{where}: {name} must be a non-empty string")
    return value


def _tls(where: str, folder: str, section: dict[str, Any]) -> tuple[ssl.SSLContext, str]:
    _check_keys(where, "tls_server_config.", section, TLS_KEYS)
    for needed in ("cert_file", "key_file"):
        if needed not in section:
            raise WebConfigError(f"{where}: tls_server_config needs {needed}")
    cert, key = (os.path.join(folder, _string(where, f"tls_server_config.{k}", section[k])) for k in ("cert_file", "key_file"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(where, context, section)
    if section.get("prefer_server_cipher_suites", True) is True:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    elif section["prefer_server_cipher_suites"] is not False:
        raise WebConfigError(f"{where}: tls_server_config.prefer_server_cipher_suites must be true or false")
    _load_file(where, "cert_file/key_file", cert, lambda: context.load_cert_chain(cert, key, password=_encrypted(key)))
    client_auth = _string(where, "tls_server_config.client_auth_type", section.get("client_auth_type") or "NoClientCert")  # "": the default
    if client_auth in REFUSED_CLIENT_AUTH:
        raise WebConfigError(
            f"{where}: client_auth_type {client_auth} is not supported by gputop serve (Python's ssl verifies every "
            "client certificate it accepts): use RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file"
        )
    if client_auth not in CLIENT_AUTH:
        raise WebConfigError(f"{where}: client_auth_type {client_auth!r} is not one of {', '.join(CLIENT_AUTH)}")
    context.verify_mode, needs_ca = CLIENT_AUTH[client_auth]
    ca = section.get("client_ca_file")
    if ca is not None:
        if not needs_ca:
            raise WebConfigError(f"{where}: client_ca_file is set but client_auth_type is {client_auth}: set RequireAndVerifyClientCert")
        ca = os.path.join(folder, _string(where, "tls_server_config.client_ca_file", ca))
        _load_file(where, "client_ca_file", ca, lambda: context.load_verify_locations(cafile=ca))
    elif needs_ca:
        raise WebConfigError(f"{where}: client_auth_type {client_auth} needs client_ca_file (the CA that signs client certificates)")
    return context, client_auth


def _versions(where: str, context: ssl.SSLContext, section: dict[str, Any]) -> None:
    for key, default, attribute in (("min_version", "TLS12", "minimum_version"), ("max_version", "TLS13", "maximum_version")):
        name = section.get(key, default)
        if not isinstance(name, str) or name not in TLS_VERSIONS:
            raise WebConfigError(f"{where}: tls_server_config.{key} {name!r} is not one of {', '.join(TLS_VERSIONS)}")
        try:
            setattr(context, attribute, TLS_VERSIONS[name])
        except (ValueError, ssl.SSLError) as exc:
            raise WebConfigError(f"{where}: tls_server_config.{key} {name}: this Python's OpenSSL refuses it ({exc})") from None
    if context.minimum_version > context.maximum_version:
        raise WebConfigError(f"{where}: tls_server_config.min_version is above max_version")


def _encrypted(key: str) -> Callable[[], str]:
    def refuse() -> str:  # asked for only when the key is encrypted; without it OpenSSL would prompt on the terminal
        raise WebConfigError(f"key_file {key}: encrypted with a passphrase; gputop serve needs it unencrypted (readable by its user alone)")

    return refuse


def _load_file(where: str, name: str, path: str, loads: Callable[[], object]) -> None:
    try:
        loads()
    except WebConfigError as exc:
        raise WebConfigError(f"{where}: {exc}") from None
    except FileNotFoundError as exc:
        raise WebConfigError(f"{where}: {name}: no such file {exc.filename or path}") from None
    except ssl.SSLError as exc:
        reason = exc.reason or exc.strerror or str(exc)
        raise WebConfigError(f"{where}: {name} {path}: not a usable PEM certificate or key ({reason})") from None
    except OSError as exc:
        raise WebConfigError(f"{where}: {name}: cannot read {exc.filename or path}: {exc.strerror or exc}") from None


def _users(where: str, section: object) -> dict[str, bytes]:
    users = {}
    for user, hashed in _mapping(where, "basic_auth_users", section).items():
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
            raise WebConfigError(f"{where}: basic_auth_users.{user} is not a bcrypt hash ($2y$10$... as htpasswd -nBC 10 writes)")
        users[user] = hashed.encode()
    return users


def _headers(where: str, section: object) -> tuple[tuple[str, str], ...]:
    headers = []
    for name, value in _mapping(where, "http_server_config.headers", section).items():
        if name not in HEADERS:
            raise WebConfigError(f"{where}: http_server_config.headers: {name} cannot be set (only {', '.join(HEADERS)})")
        allowed = HEADERS[name]
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            raise WebConfigError(f"{where}: http_server_config.headers.{name} must be {' or '.join(allowed or ('a string',))}")
        if value:  # blank: unset, as in exporter-toolkit
            headers.append((name, value))
    return tuple(headers)


class BasicAuth:
    """Checks an ``Authorization`` header against bcrypt hashes; thread-safe."""

    def __init__(self, users: dict[str, bytes]) -> None:
        import bcrypt

        self._bcrypt = bcrypt
        self._users = users
        cost = max(int(BCRYPT_HASH.fullmatch(h.decode()).group(1)) for h in users.values())  # type: ignore[union-attr]
        self._decoy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))  # an unknown user costs what a known one does
        self._key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()  # one bcrypt at a time: a burst of bad passwords takes one core, not all

    def allows(self, header: str | None) -> bool:
        pair = _credentials(header)
        if pair is None:
            return False
        user, password = pair
        try:
            hashed = self._users.get(user.decode("utf-8"))
        except UnicodeDecodeError:
            hashed = None  # no configured user: the decoy's bcrypt all the same
        mark = hmac.new(self._key, len(user).to_bytes(4, "big") + user + password + (hashed or b""), hashlib.sha256).digest()
        if hashed is not None and mark in self._verified:
            return True
        with self._lock:
            if hashed is not None and mark in self._verified:  # verified while this one waited (a burst of first scrapes)
                return True
            try:
                ok = self._bcrypt.checkpw(password, hashed or self._decoy)
            except ValueError:  # bcrypt refuses it (e.g. a password past 72 bytes)
                ok = False
            if ok and hashed is not None:
                if len(self._verified) >= REMEMBERED:
                    self._verified.clear()
                self._verified.add(mark)
                return True
        return False


def _credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) from ``Basic base64(user:password)``, or None."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except ValueError:
        return None
    user, colon, password = raw.partition(b":")
    return (user, password) if colon else None


def guard(app: WSGIApplication, config: WebConfig) -> WSGIApplication:
    """``app`` behind the config's basic auth (401 with ``WWW-Authenticate``) and headers."""
    auth = BasicAuth(config.users) if config.users else None
    extra = list(config.headers)

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if auth is not None and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            body = b"Unauthorized\n"
            headers = [("WWW-Authenticate", REALM), ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
            start_response("401 Unauthorized", headers + extra)
            return [body]

        def with_headers(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, headers + extra, exc_info)

        return app(environ, with_headers if extra else start_response)

    return guarded
