"""`GET /api/v2/aibridge/proxy/ca-cert.pem` (also under `/api/v2/ai-gateway/`): the proxy's MITM
CA certificate, for clients to trust. Never the key: only `proxy.ca_cert_file` is read. Any
user's token may fetch it, as in Coder; without `proxy.ca_cert_file` the route does not exist
(404)."""

from __future__ import annotations

from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from quart import Response
from quart_trio import QuartTrio

from aibridged.api.manage import Management, caller, error_response
from aibridged.api.openapi import hide

PREFIXES = ("/api/v2/aibridge", "/api/v2/ai-gateway")


def add_proxy_routes(app: QuartTrio, management: Management, ca_cert_file: Path) -> None:
    @hide
    async def ca_cert() -> Response:
        await caller(management)
        try:
            pem = await trio.Path(ca_cert_file).read_bytes()
        except OSError:
            return error_response(503, "the proxy CA certificate cannot be read")
        try:  # re-encoded from what parses: a key (or anything else) in the file never goes
            found = x509.load_pem_x509_certificates(pem)
        except ValueError:
            return error_response(503, "the proxy CA certificate file holds no certificate")
        certificates = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in found)
        return Response(
            certificates,
            content_type="application/x-pem-file",
            headers={"Content-Disposition": 'attachment; filename="ca-cert.pem"'},
        )

    for prefix in PREFIXES:
        name = prefix.rsplit("/", 1)[1].replace("-", "_")
        app.add_url_rule(f"{prefix}/proxy/ca-cert.pem", f"{name}_proxy_ca_cert", ca_cert)
