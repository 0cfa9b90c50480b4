"""TLS: a self-signed certificate for development and the server's TLS 1.2+ context.

`cryptography` is imported inside `make_self_signed` only, so serving plain HTTP (and
`import nstarx_jupyter`) never loads it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from typing import TYPE_CHECKING

from nstarx_jupyter.config import atomic_write, nstarx_home
from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from cryptography import x509

__all__ = [
    "CERT_FILE",
    "DEFAULT_HOSTS",
    "KEY_FILE",
    "MINIMUM_TLS_VERSION",
    "default_tls_dir",
    "make_self_signed",
    "server_ssl_context",
]

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The names a local server answers on: what a development certificate covers."""
MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2
"""TLS 1.0 and 1.1 are refused (RFC 8996)."""


def default_tls_dir() -> Path:
    """Where `nstarx tls-cert` writes by default: `$NSTARX_HOME/tls`."""
    return nstarx_home() / "tls"


def make_self_signed(
    folder: Path, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = 365
) -> tuple[Path, Path]:
    """Write a self-signed certificate for `hosts` and its key; returns (cert.pem, key.pem).

    An EC P-256 key, owner-only; the certificate names every host as a subjectAltName (IP
    addresses as IP entries) and is its own CA, so a client trusts it by loading it as its CA
    file. Existing files are replaced.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise InvalidInputError("a certificate needs at least one host name or address")
    if days < 1:
        raise InvalidInputError(f"days: {days} is not a positive number of days")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nstarx development"),
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    usage = x509.KeyUsage(
        digital_signature=True, key_cert_sign=True, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path = atomic_write(folder / KEY_FILE, key_pem, mode=0o600)
    cert_path = atomic_write(
        folder / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), mode=0o644
    )
    return cert_path, key_path


def _alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context for `cert` and `key` that refuses anything older than TLS 1.2.

    Raises:
        InvalidInputError: a file is missing or unreadable, or the key is not the certificate's.
    """
    for role, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            raise InvalidInputError(f"TLS {role} file not found: {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_TLS_VERSION
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        raise InvalidInputError(
            f"{cert} and {key} are not a matching PEM certificate and key ({exc.reason})"
        ) from exc
    except OSError as exc:
        raise InvalidInputError(f"cannot read {cert} or {key}: {exc}") from exc
    return context


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal of a server that may have none.
    raise InvalidInputError("the TLS key is encrypted; give an unencrypted key (mode 0600)")
