"""The root ASGI app: the data plane is a raw ASGI handler (the hot path), the rest is Quart.

Management routes share the data plane's prefixes (`/api/v2/aibridge/sessions`, `.../models`, ...):
a first path segment naming one of them goes to the control app, never to a provider.

The control app's sends are shielded from cancellation. quart-trio cancels its request nursery as
soon as the response is out, and hypercorn closes a connection the client asked to close
(`Connection: close`, HTTP/1.0) from inside that last send: unshielded, the close was cancelled
half-way and the connection stayed open until the keep-alive timeout.
"""

from __future__ import annotations

from typing import Any

import trio

from aibridged.api.http import ASGIApp
from aibridged.providers.pool import RESERVED_NAMES

DATAPLANE_PREFIXES = ("/api/v2/aibridge/", "/api/v2/ai-gateway/")


def is_dataplane_path(path: str) -> bool:
    """True for `<prefix><provider>/...`, False for the management routes under the prefixes."""
    for prefix in DATAPLANE_PREFIXES:
        if path.startswith(prefix):
            first = path[len(prefix) :].partition("/")[0]
            return first not in RESERVED_NAMES
    return False


class GatewayApp:
    def __init__(self, control: ASGIApp, dataplane: ASGIApp | None = None) -> None:
        self._control = control
        self._dataplane = dataplane

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            self._dataplane is not None
            and scope["type"] == "http"
            and is_dataplane_path(scope["path"])
        ):
            await self._dataplane(scope, receive, send)
        else:
            await self._control(scope, receive, _shielded(send))


def _shielded(send: Any) -> Any:
    async def shielded_send(message: Any) -> None:
        with trio.CancelScope(shield=True):
            await send(message)

    return shielded_send
