"""The dashboard's security model over plain HTTP (no browser needed): the session cookie's flags
and contents, the sessions table holding only a hash, CSRF on every state-changing request
(token, Origin, Sec-Fetch-Site), the session ending with sign-out, expiry, revocation and
suspension, and no redirect off the site after signing in."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import asyncpg
import httpx2
import pytest
import trio

from aibridged.store import open_store
from aibridged.store.users import create_token, create_user
from tests.browser import csrf_token_in, sign_in_over_http
from tests.gateway import Gateway, chat_status, self_signed_certificate, start_gateway

DISABLE = "/admin/providers/openai/enabled"


@pytest.fixture
async def gateway(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Gateway:
    return await start_gateway(
        nursery,
        database_url=database_url,
        state_dir=tmp_path,
        flags={"server.dashboard_session_lifetime": "2h"},
    )


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as client:
        yield client


async def _rows(database_url: str, query: str, *args: Any) -> list[Any]:
    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    # asyncpg wants asyncio: a short-lived loop in a worker thread, away from trio's.
    return await trio.to_thread.run_sync(lambda: asyncio.run(fetch()))


async def test_the_cookie_is_httponly_strict_without_the_token_and_only_its_hash_is_stored(
    http: httpx2.AsyncClient, gateway: Gateway, database_url: str
) -> None:
    form = await http.get("/signin")
    answer = await http.post(
        "/signin", data={"csrf_token": csrf_token_in(form.text), "token": gateway.token}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    set_cookie = next(
        v for v in answer.headers.get_list("set-cookie") if v.startswith("aibridged_session=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes and "secure" not in attributes
    assert "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
    assert "Max-Age=7200" in set_cookie  # server.dashboard_session_lifetime
    session_id = http.cookies["aibridged_session"]
    assert gateway.token not in set_cookie and gateway.token.split("-")[1] not in set_cookie
    rows = await _rows(database_url, "SELECT id_hash, token_id FROM dashboard_sessions")
    assert [(bytes(r["id_hash"]), r["token_id"]) for r in rows] == [
        (hashlib.sha256(session_id.encode()).digest(), gateway.token.split("-")[0])
    ]


async def test_over_tls_the_cookie_is_secure(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> None:
    cert, key = await self_signed_certificate(tmp_path)
    gateway = await start_gateway(
        nursery, database_url=database_url, state_dir=tmp_path,
        flags={"server.tls_cert_file": str(cert), "server.tls_key_file": str(key)},
    )  # fmt: skip
    async with httpx2.AsyncClient(base_url=gateway.url, verify=False, timeout=10) as http:
        form = await http.get("/signin")
        assert "; Secure" in form.headers["set-cookie"]  # the sign-in form's own cookie too
        answer = await http.post(
            "/signin", data={"csrf_token": csrf_token_in(form.text), "token": gateway.token}
        )
    session = next(
        v for v in answer.headers.get_list("set-cookie") if v.startswith("aibridged_session=")
    )
    assert "; Secure" in session and "HttpOnly" in session


@pytest.mark.parametrize(
    ("token", "headers"),
    [
        (None, {}),  # no CSRF token at all
        ("wrong", {}),
        ("right", {"Origin": "http://evil.example"}),
        ("right", {"Sec-Fetch-Site": "cross-site"}),
        ("right", {"Origin": "null"}),
    ],
)
async def test_a_state_changing_request_without_the_csrf_token_or_from_another_site_is_refused(
    http: httpx2.AsyncClient, gateway: Gateway, token: str | None, headers: dict[str, str]
) -> None:
    csrf = await sign_in_over_http(http, gateway.token)
    data = {"enabled": "false"}
    if token is not None:
        data["csrf_token"] = csrf if token == "right" else "not-the-token"
    answer = await http.post(DISABLE, data=data, headers=headers)
    assert answer.status_code == 403
    assert "<title>Request refused · aibridged</title>" in answer.text
    assert await chat_status(gateway, "openai") == 200  # nothing changed


async def test_the_same_request_with_the_token_from_the_same_site_goes_through(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    csrf = await sign_in_over_http(http, gateway.token)
    answer = await http.post(
        DISABLE,
        data={"enabled": "false", "csrf_token": csrf},
        headers={"Origin": gateway.url, "Sec-Fetch-Site": "same-origin"},
    )
    assert answer.status_code == 303
    assert await chat_status(gateway, "openai") == 503
    header = await http.post(DISABLE, data={"enabled": "true"}, headers={"X-CSRF-Token": csrf})
    assert header.status_code == 303  # the header works as well as the form field
    assert await chat_status(gateway, "openai") == 200


async def test_signing_in_needs_the_sign_in_forms_own_token(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    answer = await http.post("/signin", data={"token": gateway.token})
    assert answer.status_code == 403
    assert "aibridged_session" not in http.cookies


async def test_signing_out_deletes_the_session(
    http: httpx2.AsyncClient, gateway: Gateway, database_url: str
) -> None:
    csrf = await sign_in_over_http(http, gateway.token)
    old_cookie = http.cookies["aibridged_session"]
    answer = await http.post("/signout", data={"csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"
    assert await _rows(database_url, "SELECT 1 FROM dashboard_sessions") == []
    http.cookies.set("aibridged_session", old_cookie)  # a copy kept from before is worthless
    again = await http.get("/admin/providers")
    assert again.status_code == 302
    assert again.headers["location"] == "/signin?next=/admin/providers"


async def test_an_expired_session_is_over(
    http: httpx2.AsyncClient, gateway: Gateway, database_url: str
) -> None:
    await sign_in_over_http(http, gateway.token)
    rows = await _rows(
        database_url, "SELECT expires_at - created_at AS lifetime FROM dashboard_sessions"
    )
    assert [r["lifetime"].total_seconds() for r in rows] == [7200.0]
    await _rows(database_url, "UPDATE dashboard_sessions SET expires_at = now() - interval '1s'")
    assert (await http.get("/")).status_code == 302


@pytest.mark.parametrize("ending", ["revoke the token", "suspend the user"])
async def test_revoking_the_token_or_suspending_the_user_ends_the_session(
    http: httpx2.AsyncClient, gateway: Gateway, database_url: str, ending: str
) -> None:
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        await create_user(store, username="erin", role="member")
        key, token = await create_token(store, "erin")
    await sign_in_over_http(http, token)
    assert (await http.get("/")).status_code == 200
    admin = {"authorization": f"Bearer {gateway.token}"}
    if ending == "revoke the token":
        done = await http.delete(f"/api/v2/users/erin/keys/{key.id}", headers=admin)
        assert done.status_code == 204
    else:
        done = await http.patch("/api/v2/users/erin", json={"status": "suspended"}, headers=admin)
        assert done.status_code == 200
    assert (await http.get("/")).status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
async def test_after_signing_in_the_redirect_stays_on_this_site(
    http: httpx2.AsyncClient, gateway: Gateway, target: str
) -> None:
    form = await http.get("/signin", params={"next": target})
    answer = await http.post(
        "/signin",
        params={"next": target},
        data={"csrf_token": csrf_token_in(form.text), "token": gateway.token},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"


@pytest.mark.parametrize(
    "target", ["/\t/evil.example/x", "/\n/evil.example", "/\r\n/evil.example", "/\x1b"]
)
async def test_a_control_character_in_next_neither_leaves_the_site_nor_breaks_the_answer(
    http: httpx2.AsyncClient, gateway: Gateway, target: str
) -> None:
    # A browser drops tabs and newlines from a Location before resolving it: `/<TAB>/host`
    # would be `//host`, another site. Signed out (the form) and signed in (at once) alike.
    form = await http.get("/signin", params={"next": target})
    assert form.status_code == 200
    answers = [
        await http.post(
            "/signin",
            params={"next": target},
            data={"csrf_token": csrf_token_in(form.text), "token": gateway.token},
        ),
        await http.get("/signin", params={"next": target}),
    ]
    for answer in answers:
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.isprintable() and " " not in location
        assert location.startswith("/") and not location.startswith("//")
        assert "evil.example" not in urljoin(gateway.url, location).split("/")[2]


async def test_a_next_page_with_any_characters_is_kept_encoded(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    target = "/sessions?user=j\u00fcrgen&model=gpt 4"
    form = await http.get("/signin", params={"next": target})
    answer = await http.post(
        "/signin",
        params={"next": target},
        data={"csrf_token": csrf_token_in(form.text), "token": gateway.token},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sessions?user=j%C3%BCrgen&model=gpt%204"


async def test_pages_are_not_cached_nor_framed_and_the_css_is_served(
    http: httpx2.AsyncClient,
) -> None:
    signin = await http.get("/signin")
    assert signin.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in signin.headers["content-security-policy"]
    assert "script-src" not in signin.headers["content-security-policy"]  # default-src 'self'
    css = await http.get("/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in css.text


async def test_a_username_given_must_be_the_tokens(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    async def sign_in(username: str) -> httpx2.Response:
        form = await http.get("/signin")
        data = {"csrf_token": csrf_token_in(form.text), "token": gateway.token}
        return await http.post("/signin", data={**data, "username": username})

    refused = await sign_in("somebody-else")
    assert refused.status_code == 401 and "This token is not valid." in refused.text
    assert "aibridged_session" not in http.cookies
    assert (await sign_in("admin")).status_code == 303


async def test_a_role_taken_away_closes_the_admin_pages_at_the_next_page(
    http: httpx2.AsyncClient, gateway: Gateway, database_url: str
) -> None:
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        await create_user(store, username="ada", role="admin")
        _, token = await create_token(store, "ada")
    await sign_in_over_http(http, token)
    assert (await http.get("/admin/providers")).status_code == 200
    admin = {"authorization": f"Bearer {gateway.token}"}
    demoted = await http.patch("/api/v2/users/ada", json={"role": "member"}, headers=admin)
    assert demoted.status_code == 200
    assert (await http.get("/admin/providers")).status_code == 403


async def test_the_sign_in_form_of_an_earlier_tab_still_works(
    http: httpx2.AsyncClient, gateway: Gateway
) -> None:
    first = await http.get("/signin")
    await http.get("/signin")  # the same form opened again in another tab
    answer = await http.post(
        "/signin", data={"csrf_token": csrf_token_in(first.text), "token": gateway.token}
    )
    assert answer.status_code == 303


@pytest.mark.parametrize(
    "url",
    [
        "/sessions?user=%00",
        "/sessions?client=a%00b",
        "/sessions?model=%00",
        "/usage?user=%00",
        "/admin/users/a%00",
        "/signin?next=/%00",
    ],
)
async def test_a_nul_character_is_a_bad_request_not_a_database_error(
    http: httpx2.AsyncClient, gateway: Gateway, url: str
) -> None:
    await sign_in_over_http(http, gateway.token)
    answer = await http.get(url)
    assert answer.status_code == 400
    assert "<title>Bad request · aibridged</title>" in answer.text


async def test_a_form_with_a_nul_character_is_a_bad_request_and_changes_nothing(
    http: httpx2.AsyncClient, gateway: Gateway, database_url: str
) -> None:
    csrf = await sign_in_over_http(http, gateway.token)
    answer = await http.post(
        "/admin/users", data={"csrf_token": csrf, "username": "eve\x00", "role": "member"}
    )
    assert answer.status_code == 400
    assert "<title>Bad request · aibridged</title>" in answer.text
    assert await _rows(database_url, "SELECT 1 FROM users WHERE username LIKE 'eve%'") == []


@pytest.mark.parametrize(
    ("page", "shown"), [("/admin/providers", "Provider openai deleted."),
                        ("/admin/users", "User openai created.")],
)  # fmt: skip
async def test_a_notice_names_only_what_a_name_can_be(
    http: httpx2.AsyncClient, gateway: Gateway, page: str, shown: str
) -> None:
    # The notice comes from the query string: a link anyone can write must not put their words
    # on the admin's page.
    await sign_in_over_http(http, gateway.token)
    done = "deleted" if "providers" in page else "created"
    lure = "Session expired: sign in again at https://evil.example/"
    spoofed = await http.get(page, params={"done": done, "name": lure})
    assert spoofed.status_code == 200 and "evil.example" not in spoofed.text
    honest = await http.get(page, params={"done": done, "name": "openai"})
    assert shown in honest.text
