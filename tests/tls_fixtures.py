"""A throwaway certificate authority for the TLS tests (the ``cryptography`` package), and the web
config files an operator would write for it."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import ssl

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CA:
    """A CA on disk (``<folder>/<slug>-ca.pem``) that issues server and client certificates."""

    def __init__(self, folder: pathlib.Path, slug: str = "test") -> None:
        self.folder, self.slug = folder, slug
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{slug} CA"))
            .issuer_name(_name(f"{slug} CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = folder / f"{slug}-ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, name: str, *, server: bool = False, expired: bool = False, passphrase: bytes | None = None
    ) -> tuple[pathlib.Path, pathlib.Path]:
        """(certificate, key) files for ``name``; a server's is for 127.0.0.1 and localhost."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = (now - 10 * DAY, now - DAY) if expired else (now - DAY, now + 30 * DAY)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = self.folder / f"{self.slug}-{name}.pem", self.folder / f"{self.slug}-{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        crypt = serialization.NoEncryption() if passphrase is None else serialization.BestAvailableEncryption(passphrase)
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, crypt))
        key_path.chmod(0o600)
        return cert_path, key_path

    def client_context(self, cert: tuple[pathlib.Path, pathlib.Path] | None = None) -> ssl.SSLContext:
        """What a scraper that trusts this CA uses, presenting ``cert`` (certificate, key) if given."""
        context = ssl.create_default_context(cafile=str(self.path))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        return context


def htpasswd(password: str, cost: int = 10) -> str:
    """The bcrypt hash ``htpasswd -nBC 10`` writes ($2y$), as an operator pastes it into a web config."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode().replace("$2b$", "$2y$", 1)
