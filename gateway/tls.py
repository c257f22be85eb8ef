"""TLS material: a self-signed certificate for first start, and server-side SSL contexts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CN_MAX = 64


def create_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    """An ECDSA P-256 certificate for `hostname`, localhost and 127.0.0.1, valid one year.

    It makes STARTTLS work on a fresh install; production replaces it with a real one.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    # X.509 allows a common name of 64 characters, DNS a name of 253: a longer
    # hostname goes into the subjectAltName alone, which is what clients check.
    common_name = hostname if len(hostname) <= CN_MAX else "sealgate"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        alt_names.append(x509.DNSName("localhost"))
    alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class TlsFilesError(ValueError):
    """The certificate and key do not load; the message names the file and the problem."""


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL asks for the passphrase on the terminal, and a server
    # started by hand would wait there (under systemd it fails with EINVAL).
    raise TlsFilesError("the private key is encrypted; sealgate needs it without a passphrase")


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path, password=_no_passphrase)
    return ctx


def check_pair(cert_path: Path, key_path: Path) -> None:
    """Load the pair once; raise TlsFilesError saying which file is wrong and how.

    OpenSSL's own messages ("[SSL] PEM lib (_ssl.c:3905)") name neither."""
    try:
        server_context(cert_path, key_path)
    except TlsFilesError as exc:
        raise TlsFilesError(f"{key_path}: {exc}") from None
    except OSError as exc:  # ssl.SSLError is one too
        if not isinstance(exc, ssl.SSLError):
            raise TlsFilesError(f"{exc.filename or cert_path}: {exc.strerror or exc}") from None
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFilesError(f"{key_path} is not the private key of {cert_path}") from None
        try:
            x509.load_pem_x509_certificates(cert_path.read_bytes())
        except ValueError:
            raise TlsFilesError(f"{cert_path} holds no PEM certificate") from None
        raise TlsFilesError(f"{key_path} holds no usable PEM private key ({exc})") from None


class CertificateReloader:
    """Load a renewed certificate into the live SSL contexts (`sealgate serve` on SIGHUP).

    An SSLContext applies its certificate at each new handshake; connections already
    set up keep the one they negotiated. So loading the new files into the very
    contexts the listeners hold changes what new clients see without closing
    anything. The files are first loaded into a scratch context: a half-written or
    mismatched pair is refused and the running contexts keep the old certificate.
    """

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self._contexts: list[ssl.SSLContext] = []

    def watch(self, context: ssl.SSLContext) -> ssl.SSLContext:
        if all(context is not known for known in self._contexts):
            self._contexts.append(context)
        return context

    def reload(self) -> None:
        """Raises TlsFilesError (naming the file and the problem) when the files do not
        load, or ssl.SSLError or OSError should they change in between."""
        check_pair(self.cert_path, self.key_path)
        for context in self._contexts:
            context.load_cert_chain(self.cert_path, self.key_path, password=_no_passphrase)
