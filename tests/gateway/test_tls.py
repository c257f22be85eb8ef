"""gateway.tls: a certificate and key that do not load are named, file and problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.tls import TlsFilesError, check_pair, create_self_signed


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    create_self_signed(cert, key, "mail.example.test")
    return cert, key


def test_a_good_pair_loads(pair: tuple[Path, Path]) -> None:
    check_pair(*pair)


def test_a_file_that_is_no_certificate_is_named(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    cert.write_text("garbage\n")
    with pytest.raises(TlsFilesError, match=f"^{cert} holds no PEM certificate$"):
        check_pair(cert, key)


def test_a_file_that_is_no_key_is_named(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    key.write_text("garbage\n")
    with pytest.raises(TlsFilesError, match=f"^{key} holds no usable PEM private key"):
        check_pair(cert, key)


def test_a_key_of_another_certificate_is_named(pair: tuple[Path, Path], tls_ca: trustme.CA) -> None:
    cert, key = pair
    tls_ca.issue_cert("localhost").private_key_pem.write_to_path(str(key))
    with pytest.raises(TlsFilesError, match=f"^{key} is not the private key of {cert}$"):
        check_pair(cert, key)


def test_an_encrypted_key_is_refused_without_asking_on_the_terminal(
    pair: tuple[Path, Path],
) -> None:
    """Without a passphrase callback OpenSSL prompts 'Enter PEM pass phrase:' on the
    terminal, and `sealgate serve` started by hand waits there."""
    cert, key = pair
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    key.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(TlsFilesError, match="encrypted; sealgate needs it without a passphrase"):
        check_pair(cert, key)


def test_a_host_name_longer_than_a_common_name_gets_a_certificate(tmp_path: Path) -> None:
    """X.509 limits the common name to 64 characters; `sealgate init` died on a longer
    (valid, up to 253) [smtp] hostname with a ValueError traceback."""
    hostname = "a" * 40 + "." + "b" * 30 + ".example.org"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    create_self_signed(cert, key, hostname)
    check_pair(cert, key)
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert hostname in names.get_values_for_type(x509.DNSName)
