"""`/api/v2/ai/providers`: providers over HTTP, owner and admin only (docs/management-api.md).

Writes go to the database with a NOTIFY in the same transaction (every replica reloads). This
replica reloads at once as well and answers once it serves the change (read your writes: a
client may call the new provider right after), without depending on its LISTEN connection.
Keys never leave: answers carry ids and masked hints only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from quart import Response
from quart_trio import QuartTrio

from aibridged.api import schemas as shape
from aibridged.api.manage import Management, admin, json_body, json_response
from aibridged.api.openapi import NoContent, documented
from aibridged.auth import Principal
from aibridged.providers.pool import Provider
from aibridged.providers.spec import changed_provider, new_provider
from aibridged.safe import mask_secret
from aibridged.secretbox import SecretBox
from aibridged.store import providers as stored_providers
from aibridged.store.providers import StoredProvider

log = structlog.get_logger("aibridged.api")

Describe = Callable[[StoredProvider], Provider]  # a stored row as the data plane would serve it


@dataclass(frozen=True, slots=True)
class ProviderRoutes:
    management: Management
    box: Callable[[], SecretBox]  # the current key ring (a reload may pick up a rotated one)
    describe: Describe
    changed: Callable[[], Awaitable[None]]  # reload this replica, return once it has


def add_provider_routes(app: QuartTrio, routes: ProviderRoutes) -> None:
    management = routes.management
    base = "/api/v2/ai/providers"

    @app.get(base)
    @documented(200, list[shape.Provider], errors=(403,))
    async def list_all() -> Response:
        """Every provider, by name (owner, admin)."""
        await admin(management)
        rows = await stored_providers.list_providers(management.store)
        return json_response([provider_json(row, routes.describe(row)) for row in rows])

    @app.post(base)
    @documented(201, shape.Provider, errors=(400, 403, 409), body=shape.ProviderCreate)
    async def create() -> Response:
        """Create a provider; it serves once this answers."""
        row = await create_provider(routes, await admin(management), await json_body())
        return json_response(provider_json(row, routes.describe(row)), 201)

    @app.get(base + "/<reference>")
    @documented(200, shape.Provider, errors=(403, 404))
    async def show(reference: str) -> Response:
        """One provider by name or id."""
        await admin(management)
        row = await stored_providers.get_provider(management.store, reference)
        return json_response(provider_json(row, routes.describe(row)))

    @app.patch(base + "/<reference>")
    @documented(200, shape.Provider, errors=(400, 403, 404, 409), body=shape.ProviderChange)
    async def change(reference: str) -> Response:
        """Change a provider: rename, rotate keys, change its endpoint or settings, disable."""
        who = await admin(management)
        row = await change_provider(routes, who, reference, await json_body())
        return json_response(provider_json(row, routes.describe(row)))

    @app.delete(base + "/<reference>")
    @documented(204, NoContent, errors=(403, 404))
    async def delete(reference: str) -> Response:
        """Delete a provider and its keys."""
        await delete_provider(routes, await admin(management), reference)
        return Response(b"", status=204)


# The writes, shared with the dashboard's forms: the same validation (every bad field named),
# the same audit line, and this replica serving the change before they return.


async def create_provider(routes: ProviderRoutes, who: Principal, body: Any) -> StoredProvider:
    write = new_provider(body, routes.box())
    row = await stored_providers.insert_provider(routes.management.store, write)
    _audit("provider.created", who.username, row)
    await routes.changed()
    return row


async def change_provider(
    routes: ProviderRoutes, who: Principal, reference: str, body: Any
) -> StoredProvider:
    row = await stored_providers.update_provider(
        routes.management.store,
        reference,
        lambda current: changed_provider(body, current, routes.box()),
    )
    _audit("provider.changed", who.username, row, fields=sorted(body))
    await routes.changed()
    return row


async def delete_provider(routes: ProviderRoutes, who: Principal, reference: str) -> StoredProvider:
    row = await stored_providers.delete_provider(routes.management.store, reference)
    _audit("provider.deleted", who.username, row)
    await routes.changed()
    return row


def _audit(event: str, username: str, row: StoredProvider, **fields: Any) -> None:
    log.info(event, by=username, provider=row.name, provider_id=str(row.id), **fields)


def provider_json(row: StoredProvider, provider: Provider) -> dict[str, Any]:
    settings: dict[str, Any] = dict(row.settings)
    settings.update({name: mask_secret(value) for name, value in provider.secrets.items()})
    return {
        "id": str(row.id),
        "type": row.type,
        "name": row.name,
        "display_name": row.display_name,
        "enabled": row.enabled,
        "status": provider.status,
        "status_reason": provider.error,
        "base_url": row.base_url,
        "effective_base_url": provider.base_url,
        "settings": settings,
        "api_keys": [{"id": str(key.id), "hint": key.hint} for key in row.keys],
        "source": row.source,
        "created_at": _time(row.created_at),
        "updated_at": _time(row.updated_at),
    }


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
