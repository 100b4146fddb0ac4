"""The control-plane app (quart-trio): health, readiness, the management API and the dashboard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from aibridged import __version__
from aibridged.api.manage import Management, add_management_errors
from aibridged.api.openapi import enable_openapi, hide
from aibridged.api.provider_routes import ProviderRoutes, add_provider_routes
from aibridged.api.proxy_routes import add_proxy_routes
from aibridged.api.record_routes import add_record_routes
from aibridged.api.usage_routes import add_usage_routes
from aibridged.api.user_routes import add_user_routes
from aibridged.dashboard import Dashboard, create_dashboard
from aibridged.dashboard.guard import DEFAULT_SESSION_LIFETIME_S

ReadinessProbe = Callable[[], Awaitable[str | None]]  # None = ready, else the reason
Details = Callable[[], dict[str, object]]  # components' statistics shown by /readyz


def create_control_app(
    readiness: ReadinessProbe,
    *,
    max_body_bytes: int,
    management: Management | None = None,
    providers: ProviderRoutes | None = None,
    details: Details | None = None,
    dashboard_session_lifetime_s: float = DEFAULT_SESSION_LIFETIME_S,
    proxy_ca_cert_file: Path | None = None,
) -> QuartTrio:
    # No static folder of its own: `/static/` is the dashboard's (its blueprint serves it).
    app = QuartTrio("aibridged", static_folder=None)
    # Quart's defaults would cut responses after 60 s and bodies at 16 MiB (ARCHITECTURE pitfalls).
    app.config.update(
        RESPONSE_TIMEOUT=None,
        BODY_TIMEOUT=60,
        MAX_CONTENT_LENGTH=max_body_bytes,
        JSON_SORT_KEYS=False,
    )

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> tuple[dict[str, object], int]:
        # The management API's error shape (docs/api.md), also for routes that do not exist.
        status = error.code or 500
        message = error.name if status != 404 else "not found"
        detail = f"{request.method} {request.path}"
        return {"message": message, "detail": detail, "validations": []}, status

    if management is not None:
        enable_openapi(app)
        add_management_errors(app)
        add_user_routes(app, management)
        add_record_routes(app, management)
        add_usage_routes(app, management)
        if providers is not None:
            add_provider_routes(app, providers)
        dashboard = Dashboard(management, providers, dashboard_session_lifetime_s)
        app.register_blueprint(create_dashboard(dashboard))
        if proxy_ca_cert_file is not None:
            add_proxy_routes(app, management, proxy_ca_cert_file)

    @app.get("/healthz")
    @hide
    async def healthz() -> Response:
        return Response("ok\n", content_type="text/plain")

    @app.get("/readyz")
    @hide
    async def readyz() -> tuple[dict[str, object], int]:
        extra = details() if details is not None else {}
        with trio.move_on_after(2):
            reason = await readiness()
            if reason is None:
                return {"status": "ready", "version": __version__, **extra}, 200
            return {"status": "not ready", "reason": reason, **extra}, 503
        return {"status": "not ready", "reason": "readiness check timed out", **extra}, 503

    return app
