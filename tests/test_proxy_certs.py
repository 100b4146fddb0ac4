"""The proxy's CA and the leaf certificates minted from it."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509

from aibridged.errors import InvalidInput, StartupError
from aibridged.proxy.certs import LeafCertificates, create_ca, load_ca


@pytest.fixture
def ca_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    create_ca(cert, key)
    return cert, key


def test_ca_create_writes_a_private_key_and_never_overwrites(
    ca_files: tuple[Path, Path],
) -> None:
    cert, key = ca_files
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in cert.read_bytes()
    before = cert.read_bytes()
    with pytest.raises(InvalidInput, match="exists already"):
        create_ca(cert, key.with_name("other.key"))
    assert cert.read_bytes() == before
    ca = load_ca(cert, key)
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_ca_key_that_does_not_match_its_certificate_stops_startup(
    ca_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, _ = ca_files
    create_ca(tmp_path / "b.pem", tmp_path / "b.key")
    with pytest.raises(StartupError, match="does not match"):
        load_ca(cert, tmp_path / "b.key")
    with pytest.raises(StartupError, match="cannot load the proxy CA key"):
        load_ca(cert, tmp_path / "missing.key")


async def _handshake(
    server_ctx: ssl.SSLContext, cafile: Path, name: str, *, check_hostname: bool = True
) -> str | None:
    """The TLS version the client negotiated with `server_ctx` (verifying against `cafile`),
    None when the handshake was refused."""
    client_ctx = ssl.create_default_context(cafile=str(cafile))
    client_ctx.check_hostname = check_hostname
    a, b = trio.testing.memory_stream_pair()
    server = trio.SSLStream(a, server_ctx, server_side=True)
    client = trio.SSLStream(b, client_ctx, server_hostname=name)

    async def serve() -> None:
        try:
            await server.do_handshake()
        except trio.BrokenResourceError:
            await trio.aclose_forcefully(a)  # refused: the client sees the connection end

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        try:
            await client.do_handshake()
        except trio.BrokenResourceError:
            return None
    version: str | None = client.version()  # SSLStream passes SSLObject's methods through
    return version


async def test_leaves_are_minted_once_per_host_under_concurrency_and_verify_against_the_ca(
    ca_files: tuple[Path, Path],
) -> None:
    leaves = LeafCertificates(load_ca(*ca_files))
    found: list[ssl.SSLContext] = []

    async def get() -> None:
        found.append(await leaves.context_for("api.openai.com"))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(get)
    assert leaves.minted == 1 and len({id(c) for c in found}) == 1
    assert await _handshake(found[0], ca_files[0], "api.openai.com") in ("TLSv1.2", "TLSv1.3")
    await leaves.context_for("127.0.0.1")
    assert leaves.minted == 2


async def test_a_client_naming_another_host_in_its_sni_is_refused(
    ca_files: tuple[Path, Path],
) -> None:
    leaves = LeafCertificates(load_ca(*ca_files))
    context = await leaves.context_for("api.openai.com")
    # The client does not check the name itself: only the proxy's SNI check can refuse.
    assert await _handshake(context, ca_files[0], "evil.example", check_hostname=False) is None
    assert await _handshake(context, ca_files[0], "api.openai.com", check_hostname=False)
