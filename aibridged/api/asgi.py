"""The root ASGI app: the data plane is a raw ASGI handler (the hot path), the rest is Quart."""

from __future__ import annotations

from typing import Any

from aibridged.api.http import ASGIApp

DATAPLANE_PREFIXES = ("/api/v2/aibridge/", "/api/v2/ai-gateway/")


class GatewayApp:
    def __init__(self, control: ASGIApp, dataplane: ASGIApp | None = None) -> None:
        self._control = control
        self._dataplane = dataplane

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            self._dataplane is not None
            and scope["type"] == "http"
            and scope["path"].startswith(DATAPLANE_PREFIXES)
        ):
            await self._dataplane(scope, receive, send)
        else:
            await self._control(scope, receive, send)
