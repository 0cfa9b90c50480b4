"""TLS: the development certificate, the server's TLS 1.2+ context and the options that use them."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nstarx_jupyter.cli import main
from nstarx_jupyter.client import InferenceClient
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.security.tls import make_self_signed, server_ssl_context
from nstarx_jupyter.serving.app import ServingConfig
from nstarx_jupyter.serving.server import serve

OLD_TLS = pytest.mark.filterwarnings(
    "ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning"
)
"""Pinning a client to TLS 1.1 is what these tests do on purpose."""


def pinned_client(version: ssl.TLSVersion, cafile: Path) -> ssl.SSLContext:
    """A client that trusts `cafile` and speaks only `version` (old ones allowed by OpenSSL)."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = version
    context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # else OpenSSL 3 itself refuses TLS 1.1
    return context


def handshake_in_memory(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> str:
    """Run a TLS handshake through memory buffers; the version agreed, or an `ssl.SSLError`."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    client_side = client.wrap_bio(client_in, client_out, server_hostname=host)
    for _ in range(10):
        done = True
        for side in (client_side, server_side):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                done = False
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if done:
            return str(client_side.version())
    raise AssertionError("the handshake did not finish")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return make_self_signed(tmp_path / "tls")


def test_certificate_names_every_host_as_a_subject_alt_name(tmp_path: Path) -> None:
    cert, _ = make_self_signed(tmp_path, ["localhost", "model.test", "127.0.0.1", "::1"])
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "model.test"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert isinstance(loaded.public_key(), ec.EllipticCurvePublicKey)


def test_key_is_owner_only_and_matches_the_certificate(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    assert (cert.name, key.name) == ("cert.pem", "key.pem")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    public = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    assert private.public_key() == public


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_certificate_is_its_own_ca_for_each_default_host(
    pair: tuple[Path, Path], host: str
) -> None:
    client = ssl.create_default_context(cafile=pair[0])
    client.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default: keep passing it
    assert handshake_in_memory(server_ssl_context(*pair), client, host) == "TLSv1.3"


def test_certificate_is_refused_for_another_host(pair: tuple[Path, Path]) -> None:
    client = ssl.create_default_context(cafile=pair[0])
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake_in_memory(server_ssl_context(*pair), client, "example.com")


def test_certificate_is_refused_without_it_as_ca(pair: tuple[Path, Path]) -> None:
    client = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate"):
        handshake_in_memory(server_ssl_context(*pair), client, "localhost")


@OLD_TLS
def test_server_context_refuses_anything_older_than_tls_1_2(pair: tuple[Path, Path]) -> None:
    context = server_ssl_context(*pair)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    old = pinned_client(ssl.TLSVersion.TLSv1_1, pair[0])
    lenient = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # the control: this client can do 1.1
    lenient.minimum_version = ssl.TLSVersion.TLSv1_1
    lenient.set_ciphers("DEFAULT:@SECLEVEL=0")
    lenient.load_cert_chain(*pair)
    assert handshake_in_memory(lenient, old, "localhost") == "TLSv1.1"
    with pytest.raises(ssl.SSLError, match=r"UNSUPPORTED_PROTOCOL|PROTOCOL_VERSION"):
        handshake_in_memory(context, old, "localhost")
    for version, name in [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")]:
        assert handshake_in_memory(context, pinned_client(version, pair[0]), "localhost") == name


def test_mismatched_certificate_and_key_are_refused(tmp_path: Path) -> None:
    cert, _ = make_self_signed(tmp_path / "a")
    _, other_key = make_self_signed(tmp_path / "b")
    with pytest.raises(InvalidInputError, match="not a matching PEM certificate and key"):
        server_ssl_context(cert, other_key)


def test_missing_or_unreadable_files_are_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = pair
    with pytest.raises(InvalidInputError, match="TLS key file not found"):
        server_ssl_context(cert, tmp_path / "nope.pem")
    with pytest.raises(InvalidInputError, match="TLS certificate file not found"):
        server_ssl_context(tmp_path / "nope.pem", key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(InvalidInputError, match="not a matching PEM"):
        server_ssl_context(garbage, key)


def test_an_encrypted_key_is_refused_without_a_prompt(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    private = serialization.load_pem_private_key(pair[1].read_bytes(), password=None)
    locked = tmp_path / "locked.pem"
    locked.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ))  # fmt: skip
    with pytest.raises(InvalidInputError, match="encrypted"):
        server_ssl_context(pair[0], locked)


def test_make_self_signed_wants_a_host(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="at least one host"):
        make_self_signed(tmp_path, [])


async def test_serving_with_half_the_tls_pair_is_refused(pair: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidInputError, match="both a certificate and its key"):
        await serve([], ServingConfig(port=0, tls_cert=pair[0]))


def test_cli_writes_the_pair_under_nstarx_home_by_default(
    nstarx_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tls-cert", "--host", "box.local", "--host", "10.0.0.7"]) == 0
    out = capsys.readouterr().out
    cert, key = nstarx_home / "tls" / "cert.pem", nstarx_home / "tls" / "key.pem"
    assert f"certificate: {cert}" in out
    assert f"--tls-cert {cert} --tls-key {key}" in out
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions
    alt = names.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["box.local"]
    assert alt.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]


def test_cli_serve_wants_cert_and_key_together(pair: tuple[Path, Path], iris_path: Path) -> None:
    with pytest.raises(SystemExit, match="--tls-cert and --tls-key together"):
        main(["serve", "--model", f"iris={iris_path}", "--tls-cert", str(pair[0])])


def test_cli_serve_reports_a_mismatched_pair_in_one_line(
    tmp_path: Path, iris_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, _ = make_self_signed(tmp_path / "a")
    _, key = make_self_signed(tmp_path / "b")
    args = ["serve", "--port", "0", "--model", f"iris={iris_path}"]
    assert main([*args, "--tls-cert", str(cert), "--tls-key", str(key)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nstarx serve: ")
    assert "not a matching PEM certificate and key" in err
    assert "\n" not in err


def test_client_verify_takes_a_ca_file_and_refuses_a_missing_one(
    pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://127.0.0.1:1/v1/models/iris"
    with InferenceClient(url, verify=pair[0]), InferenceClient(url, verify=str(pair[0])):
        pass
    monkeypatch.setenv("HOME", str(pair[0].parent))
    with InferenceClient(url, verify="~/cert.pem"):
        pass
    with InferenceClient(url, verify=False):
        pass
    with pytest.raises(InvalidInputError, match="cannot load CA certificates"):
        InferenceClient(url, verify=tmp_path / "missing.pem")
