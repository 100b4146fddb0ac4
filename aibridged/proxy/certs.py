"""The MITM certificates: the operator's CA, and a leaf per host minted from it on demand.

`create_ca` writes a new CA (`aibridged proxy ca create`), the key with mode 0600.
`LeafCertificates` mints one leaf per host the first time a client connects to it, caches its
server-side TLS context and mints it only once however many CONNECTs for that host arrive
together (a per-host lock).
Leaves use P-256 keys: minting takes about a millisecond, so it runs in a worker thread only to
keep a slow disk (the context loads its chain from a private temporary file) off the event loop.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aibridged.errors import InvalidInput, StartupError

CA_COMMON_NAME = "aibridged proxy CA"
CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=90)
CLOCK_SKEW = datetime.timedelta(hours=1)  # leaves are valid from a little before now


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def create_ca(cert_path: Path, key_path: Path, *, common_name: str = CA_COMMON_NAME) -> None:
    """Write a new self-signed CA (P-256, ten years). Existing files are never overwritten."""
    for path in (cert_path, key_path):
        if path.exists():
            raise InvalidInput(f"{path} exists already: not overwritten")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise InvalidInput(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)  # whatever the umask


def load_ca(cert_path: Path, key_path: Path) -> CertificateAuthority:
    """The operator's CA; StartupError naming the file when it cannot be used."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot load the proxy CA certificate {cert_path}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise StartupError(f"cannot load the proxy CA key {key_path}: {exc}") from exc
    if not isinstance(
        key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
              ed448.Ed448PrivateKey),
    ):  # fmt: skip
        raise StartupError(f"the proxy CA key {key_path} cannot sign certificates")
    if key.public_key() != certificate.public_key():
        raise StartupError(f"the proxy CA key {key_path} does not match {cert_path}")
    return CertificateAuthority(certificate, key)


def mint_leaf(ca: CertificateAuthority, host: str) -> tuple[bytes, bytes]:
    """(certificate chain PEM, key PEM) of a server certificate for `host`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + LEAF_LIFETIME, ca.certificate.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, _digest_for(ca.key))
    )
    chain = certificate.public_bytes(serialization.Encoding.PEM) + ca.certificate_pem
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, key_pem


def _digest_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None  # these keys sign without a separate digest
    return hashes.SHA256()


def server_context(chain: bytes, key: bytes, host: str) -> ssl.SSLContext:
    """A TLS ≥ 1.2 server context for one leaf of `host`; a client naming another server in
    its SNI is refused. `ssl` loads chains only from files: a private temporary directory holds
    them for the duration of the call."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])  # the decrypted side speaks HTTP/1.1 only

    def check_sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> int | None:
        if name is not None and name.lower().rstrip(".") != host:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    context.sni_callback = check_sni
    with tempfile.TemporaryDirectory(prefix="aibridgeproxyd-") as directory:
        cert_file, key_file = Path(directory, "leaf.pem"), Path(directory, "leaf.key")
        cert_file.write_bytes(chain)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key)
        context.load_cert_chain(cert_file, key_file)
    return context


class LeafCertificates:
    """Server contexts per host, minted on first use and cached."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self._ca = ca
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._locks: dict[str, trio.Lock] = {}
        self.minted = 0

    async def context_for(self, host: str) -> ssl.SSLContext:
        found = self._contexts.get(host)
        if found is not None:
            return found
        lock = self._locks.setdefault(host, trio.Lock())
        async with lock:
            found = self._contexts.get(host)
            if found is None:  # not minted by the task that held the lock before us
                found = await trio.to_thread.run_sync(self._mint, host)
                self._contexts[host] = found
                self.minted += 1
        self._locks.pop(host, None)
        return found

    def _mint(self, host: str) -> ssl.SSLContext:
        return server_context(*mint_leaf(self._ca, host), host)
