"""A small Prometheus HTTP API client (httpx): instant and range queries, every failure one line.

``PromError`` says what went wrong in words a user can act on: nothing listening, no answer in
time, a refused token, a URL that is not Prometheus, a query Prometheus rejected (``kind`` is then
Prometheus' ``errorType``, e.g. ``bad_data``). The password of a ``user:password@`` URL (basic
auth) never appears in a message. HTTPS is verified unless ``verify=False``: against the system's
CAs, or only ``ca_file``'s (a private CA); ``client_cert`` (certificate and key files) answers a
Prometheus that asks for mutual TLS. Each is read once, an unusable file a ``PromError`` ("tls").
"""

from __future__ import annotations

import contextlib
import gc
import json
import ssl
import threading
from typing import Any, Callable, Iterator, TypeVar

import httpx

DEFAULT_TIMEOUT_S = 5.0

Result = list[dict[str, Any]]  # the API's data.result: [{"metric": {...}, "value"|"values": ...}]


class PromError(Exception):
    """A query failed; ``str()`` is one line. ``kind``: "usage" (the URL), "tls" (a CA or client
    certificate file), "http", "connect", "timeout", "auth", "not_prometheus", or Prometheus' own
    errorType ("bad_data", "execution", "timeout", ...)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def safe_url(url: str) -> str:
    """The URL without its userinfo (a basic-auth password stays out of messages and logs)."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


class Prometheus:
    """Queries one Prometheus server. Thread-safe for one caller at a time per method call
    (httpx.Client is); ``close()`` when done."""

    def __init__(
        self,
        url: str,
        *,
        bearer_token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        verify: bool = True,
        ca_file: str | None = None,
        client_cert: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise PromError(f"not an http(s) URL: {safe_url(url)!r}", "usage")
        if parsed.port is not None and not 1 <= parsed.port <= 65535:  # httpx takes 99999 and 0 as given
            raise PromError(f"port must be between 1 and 65535, got {parsed.port}: {safe_url(url)!r}", "usage")
        self.url = safe_url(url).rstrip("/")
        self.timeout_s = timeout_s
        headers = {"Accept": "application/json"}
        if bearer_token is not None:
            headers["Authorization"] = f"Bearer {bearer_token}"
        # httpx takes basic auth from the URL's user:password itself
        tls = tls_context(verify, ca_file, client_cert)
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/", headers=headers, verify=tls, timeout=httpx.Timeout(timeout_s), transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def query(self, expr: str, at: float | None = None) -> Result:
        form = {"query": expr}
        if at is not None:
            form["time"] = f"{at:.3f}"
        return self._post("api/v1/query", form)

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> Result:
        return self._post("api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"})

    def _post(self, path: str, form: dict[str, str]) -> Result:
        where = f"{self.url}/{path}"
        try:
            resp = self._http.post(path, data=form)
        except httpx.TimeoutException:
            raise PromError(f"Prometheus at {self.url} did not answer within {self.timeout_s:g} s", "timeout") from None
        except httpx.ConnectError as exc:
            raise PromError(f"cannot connect to Prometheus at {self.url}: {_reason(exc)}{_tls_hint(exc)}", "connect") from None
        except httpx.HTTPError as exc:
            raise PromError(f"talking to Prometheus at {self.url} failed: {_reason(exc)}{_tls_hint(exc)}", "http") from None
        if resp.status_code in (401, 403):
            raise PromError(
                f"Prometheus at {self.url} refused the request: HTTP {resp.status_code} "
                f"{resp.reason_phrase} (a token: --bearer-token-file; basic auth: "
                "user:password@ in the URL)",
                "auth",
            )
        body = _json(resp)
        if body is None:
            kind = resp.headers.get("content-type", "no content type").split(";")[0]
            raise PromError(
                f"{self.url} does not look like Prometheus: {where} answered HTTP {resp.status_code} with {kind}, not the query API's JSON",
                "not_prometheus",
            )
        if body.get("status") != "success":
            kind = str(body.get("errorType") or "http")
            error = " ".join(str(body.get("error") or f"HTTP {resp.status_code}").split())
            raise PromError(f"Prometheus rejected the query ({kind}): {error}", kind)
        data = body.get("data")
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, list):
            raise PromError(f"{self.url} does not look like Prometheus: {where} answered JSON without data.result", "not_prometheus")
        return result


def tls_context(verify: bool, ca_file: str | None, client_cert: tuple[str, str] | None) -> ssl.SSLContext:
    """The client side of HTTPS (an SSLContext: httpx 0.28 deprecates paths in ``verify=``/``cert=``)."""
    context = _loading(f"--ca-file {ca_file}", lambda: ssl.create_default_context(cafile=ca_file))
    if client_cert is not None:
        cert, key = client_cert
        _loading(f"--client-cert {cert} with --client-key {key}", lambda: context.load_cert_chain(cert, key, password=_no_passphrase))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


T = TypeVar("T")


def _loading(what: str, loads: Callable[[], T]) -> T:
    try:
        return loads()
    except ssl.SSLError as exc:
        raise PromError(f"{what}: not a usable PEM certificate or key ({exc.reason or exc})", "tls") from None
    except OSError as exc:
        raise PromError(f"{what}: cannot read {exc.filename}: {exc.strerror or exc}", "tls") from None


def _no_passphrase() -> str:  # asked for only when the key is encrypted; without it OpenSSL would prompt on the terminal
    raise ssl.SSLError("the key is encrypted with a passphrase; give an unencrypted one")


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic GC off while a large answer is decoded (thread-safe: back on when the
    last holder leaves, if it was on). Decoding 14,000 series makes ~100,000 containers, none of
    them cyclic; the collections they would trigger cost more than the decoding itself (34 ms ->
    15 ms for a 1.7 MB answer beside a heap the size of a running app's)."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def _json(resp: httpx.Response) -> dict[str, Any] | None:
    """The body as the API's JSON object, or None when it is something else (HTML, text)."""
    try:
        with paused_gc():
            body = json.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) and "status" in body else None


TLS_HINTS = (  # OpenSSL's words for a refused handshake -> what the user can change
    ("CERTIFICATE_VERIFY_FAILED", " (a server certificate from a private CA: --ca-file)"),
    ("ALERT_BAD_CERTIFICATE", " (Prometheus refused this client's certificate, or wants one: --client-cert and --client-key)"),
    ("ALERT_CERTIFICATE_REQUIRED", " (Prometheus wants a client certificate: --client-cert and --client-key)"),
    ("ALERT_UNKNOWN_CA", " (Prometheus does not trust the CA of --client-cert)"),
    ("ALERT_CERTIFICATE_EXPIRED", " (Prometheus refused --client-cert: expired)"),
    ("EOF occurred in violation of protocol", " (Prometheus closed the TLS connection: it may want a client certificate, --client-cert)"),
)


def _tls_hint(exc: Exception) -> str:
    text = str(exc)
    return next((hint for words, hint in TLS_HINTS if words in text), "")


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
