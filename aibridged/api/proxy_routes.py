"""`GET /api/v2/aibridge/proxy/ca-cert.pem` (also under `/api/v2/ai-gateway/`): the proxy's MITM
CA certificate, for clients to trust. Never the key: only `proxy.ca_cert_file` is read. Any
user's token may fetch it, as in Coder; without `proxy.ca_cert_file` the route does not exist
(404)."""

from __future__ import annotations

from pathlib import Path

import trio
from quart import Response
from quart_trio import QuartTrio

from aibridged.api.manage import Management, caller, error_response
from aibridged.api.openapi import hide

PREFIXES = ("/api/v2/aibridge", "/api/v2/ai-gateway")
PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


def add_proxy_routes(app: QuartTrio, management: Management, ca_cert_file: Path) -> None:
    @hide
    async def ca_cert() -> Response:
        await caller(management)
        try:
            pem = await trio.Path(ca_cert_file).read_bytes()
        except OSError:
            return error_response(503, "the proxy CA certificate cannot be read")
        if PEM_BEGIN not in pem:
            return error_response(503, "the proxy CA certificate file holds no certificate")
        start = pem.index(PEM_BEGIN)  # a file that also holds a key: only the certificates go
        certificates = b"".join(
            block + b"-----END CERTIFICATE-----\n"
            for block in pem[start:].split(b"-----END CERTIFICATE-----")
            if PEM_BEGIN in block
        )
        return Response(
            certificates,
            content_type="application/x-pem-file",
            headers={"Content-Disposition": 'attachment; filename="ca-cert.pem"'},
        )

    for prefix in PREFIXES:
        name = prefix.rsplit("/", 1)[1].replace("-", "_")
        app.add_url_rule(f"{prefix}/proxy/ca-cert.pem", f"{name}_proxy_ca_cert", ca_cert)
