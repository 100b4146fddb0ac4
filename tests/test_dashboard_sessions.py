"""The dashboard's Sessions and Usage pages in headless Chromium, over requests the official SDKs
made through the gateway to the fake upstream: a session with its prompt, tool call and thinking,
the filters, who sees what, and the usage chart drawn from the recorded tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import openai
import pytest

from aibridged.records import TokenUsage
from aibridged.store import open_store
from aibridged.store.users import get_user
from tests.browser import DashboardPage, DashboardSetup
from tests.gateway import recorded_interceptions
from tests.test_dataplane_sdk import TOOLS_ANTHROPIC as TOOLS
from tests.test_usage_store import record

ASK = "Read the config file #demo-tool"


@dataclass
class Recorded:
    admin_session: str  # the session of the admin's tool call
    member_session: str
    rows: list[dict[str, Any]]  # every interception, newest first


@pytest.fixture
async def recorded(dash: DashboardSetup) -> Recorded:
    gateway = dash.gateway
    async with anthropic.AsyncAnthropic(
        base_url=gateway.base("anthropic"), api_key=gateway.token, max_retries=0
    ) as claude:
        await claude.messages.create(
            model="claude-demo",
            max_tokens=2048,
            tools=TOOLS,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": ASK}],
        )
    async with openai.AsyncOpenAI(
        base_url=gateway.base("openai") + "/v1", api_key=dash.member_token, max_retries=0
    ) as oai:
        await oai.chat.completions.create(
            model="gpt-demo", messages=[{"role": "user", "content": "the member's question"}]
        )
    rows = await recorded_interceptions(gateway, 2)
    by_model = {r["model"]: r for r in rows}
    return Recorded(by_model["claude-demo"]["session_id"], by_model["gpt-demo"]["session_id"], rows)


async def test_a_recorded_session_is_listed_and_shows_its_prompt_tool_call_and_thinking(
    admin_page: DashboardPage, recorded: Recorded
) -> None:
    assert await admin_page.goto("/sessions") == 200
    rows = await admin_page.do(lambda p: p.locator("tr.session-row").all_inner_texts())
    assert len(rows) == 2
    mine = next(r for r in rows if "claude-demo" in r)
    assert ASK in mine and "admin" in mine and "anthropic" in mine
    assert "the member's question" in next(r for r in rows if "gpt-demo" in r)
    await admin_page.screenshot("sessions")

    link = f'a[href="/sessions/{recorded.admin_session}"]'
    await admin_page.do(lambda p: p.locator(link).click())
    await admin_page.do(lambda p: p.wait_for_url(f"**/sessions/{recorded.admin_session}"))
    thread = admin_page.do
    assert await thread(lambda p: p.locator(".interception .prompt pre").inner_text()) == ASK
    assert await thread(lambda p: p.locator(".tool-name").inner_text()) == "read_file"
    tool_input = await thread(lambda p: p.locator(".tool-input").inner_text())
    assert re.fullmatch(r'\{\s*"path": "demo"\s*\}', tool_input), tool_input
    await thread(lambda p: p.locator(".thinking summary").click())  # open the details
    thinking = await thread(lambda p: p.locator(".thinking pre").inner_text())
    assert thinking.startswith("demo thinking about: Read the config")
    meta = await thread(lambda p: p.locator(".interception .meta").inner_text())
    claude = next(r for r in recorded.rows if r["model"] == "claude-demo")
    usage = claude["token_usages"][0]
    assert f"{usage['input_tokens']:,} in · {usage['output_tokens']:,} out" in meta
    assert "claude-demo" in meta
    await admin_page.screenshot("session")


async def test_recorded_text_is_shown_as_text_never_as_markup(
    admin_page: DashboardPage, recorded: Recorded, database_url: str
) -> None:
    hostile = '<script>document.title = "owned"</script><img src=x onerror="alert(1)"> & more'
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        admin = (await get_user(store, "admin")).id
        session = await record(store, admin, datetime.now(UTC), prompt=hostile)
    assert await admin_page.goto(f"/sessions/{session}") == 200
    assert await admin_page.do(lambda p: p.locator(".prompt pre").inner_text()) == hostile
    assert await admin_page.do(lambda p: p.locator("main script, main img").count()) == 0
    assert await admin_page.do(lambda p: p.title()) == f"Session {session} · aibridged"


async def test_the_filters_narrow_the_list_and_a_bad_time_is_shown_at_its_field(
    admin_page: DashboardPage, recorded: Recorded
) -> None:
    await admin_page.goto("/sessions")
    await admin_page.do(lambda p: p.get_by_label("Model").select_option("gpt-demo"))
    await admin_page.do(lambda p: p.get_by_role("button", name="Apply filters").click())
    await admin_page.do(lambda p: p.wait_for_url("**/sessions?*model=gpt-demo*"))
    rows = await admin_page.do(lambda p: p.locator("tr.session-row").all_inner_texts())
    assert len(rows) == 1 and "gpt-demo" in rows[0]
    await admin_page.do(lambda p: p.get_by_label("User").fill("nobody-like-this"))
    await admin_page.do(lambda p: p.get_by_role("button", name="Apply filters").click())
    await admin_page.do(lambda p: p.wait_for_url("**user=nobody-like-this*"))
    assert await admin_page.do(lambda p: p.locator("tr.session-row").count()) == 0

    assert await admin_page.goto("/sessions?from=yesterday") == 400
    error = await admin_page.do(lambda p: p.locator(".has-error .error").inner_text())
    assert "not an RFC 3339 time" in error
    described = await admin_page.do(
        lambda p: p.get_by_label("Started after (UTC)").get_attribute("aria-describedby")
    )
    assert described == "from-error"


async def test_a_member_sees_only_their_own_sessions_and_usage(
    member_page: DashboardPage, recorded: Recorded
) -> None:
    await member_page.goto("/sessions")
    rows = await member_page.do(lambda p: p.locator("tr.session-row").all_inner_texts())
    assert len(rows) == 1 and "the member's question" in rows[0]
    assert await member_page.do(lambda p: p.get_by_label("User").count()) == 0
    assert await member_page.goto(f"/sessions/{recorded.admin_session}") == 404
    assert await member_page.goto(f"/sessions/{recorded.member_session}") == 200
    assert await member_page.goto("/usage?group_by=user") == 200  # not theirs to choose: model
    options = await member_page.do(
        lambda p: p.get_by_label("Group by").locator("option").all_inner_texts()
    )
    assert options == ["Model", "Client"]
    users = await member_page.do(lambda p: p.locator("#by-user tbody th").all_inner_texts())
    assert users == ["member1"]


async def test_the_usage_chart_draws_the_recorded_tokens(
    admin_page: DashboardPage, recorded: Recorded
) -> None:
    assert await admin_page.goto("/usage") == 200
    bars = await admin_page.do(
        lambda p: p.locator("svg.chart rect.bar").evaluate_all(
            "els => els.map(e => [e.dataset.series, Number(e.dataset.value)])"
        )
    )
    by_user: dict[str, int] = {}
    for row in recorded.rows:
        name = row["initiator"]["username"]
        by_user[name] = by_user.get(name, 0) + sum(_total(u) for u in row["token_usages"])
    assert by_user["admin"] > 0 and by_user["member1"] > 0
    drawn: dict[str, int] = {}
    for name, value in bars:  # one bar each, or two if the calls straddled an hour
        drawn[name] = drawn.get(name, 0) + value
    assert drawn == by_user
    label = await admin_page.do(lambda p: p.locator("svg.chart").get_attribute("aria-labelledby"))
    assert label == "usage-chart-title usage-chart-desc"
    assert await admin_page.do(lambda p: p.locator("svg.chart title").first.inner_html()) == (
        "Tokens per hour by user"
    )
    users = await admin_page.do(lambda p: p.locator("#by-user tbody th").all_inner_texts())
    assert sorted(users) == ["admin", "member1"]
    models = await admin_page.do(lambda p: p.locator("#by-model tbody th").all_inner_texts())
    assert sorted(models) == ["claude-demo", "gpt-demo"]

    await admin_page.do(lambda p: p.get_by_label("Group by").select_option("model"))
    await admin_page.do(lambda p: p.get_by_label("Last 7 days").check())
    await admin_page.do(lambda p: p.get_by_role("button", name="Show").click())
    await admin_page.do(lambda p: p.wait_for_url("**/usage?*group_by=model*"))
    legend = await admin_page.do(
        lambda p: p.locator("svg.chart .legend-item text").all_text_contents()
    )
    assert sorted(legend) == ["claude-demo", "gpt-demo"]
    assert "per day" in await admin_page.do(lambda p: p.locator("#chart-title").inner_text())

    assert (
        await admin_page.goto("/usage?range=custom&from=2026-12-02T10:00&to=2026-12-01T10:00")
        == 400
    )
    error = await admin_page.do(lambda p: p.locator(".has-error .error").inner_text())
    assert error == "must be later than start_time"


def _total(usage: dict[str, int]) -> int:
    keys = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")
    return sum(usage[k] for k in keys)


async def test_the_usage_chart_spreads_the_day_over_its_hours(
    admin_page: DashboardPage, recorded: Recorded, database_url: str
) -> None:
    # Earlier traffic, written as the recorder writes it: a model per hour over the last day.
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    models = ("claude-sonnet-4-5", "gpt-4o", "claude-haiku-4-5")
    async with open_store(database_url, pool_size=2, connect_timeout_s=10) as store:
        admin = (await get_user(store, "admin")).id
        for hours_ago in range(2, 23):
            usage = TokenUsage("r", 200 * hours_ago, 50 * hours_ago, 1000, 0)
            await record(
                store,
                admin,
                now - timedelta(hours=hours_ago),
                usage,
                model=models[hours_ago % 3],
                client="Claude Code",
            )
    assert await admin_page.goto("/usage?range=24h&group_by=model") == 200
    bars = await admin_page.do(
        lambda p: p.locator("svg.chart rect.bar").evaluate_all(
            "els => els.map(e => [e.dataset.series, Number(e.dataset.value)])"
        )
    )
    history = [(m, v) for m, v in bars if m in models]
    assert sorted(history) == sorted((models[h % 3], 250 * h + 1000) for h in range(2, 23))
    legend = await admin_page.do(
        lambda p: p.locator("svg.chart .legend-item text").all_text_contents()
    )
    # largest first: gpt-4o had hours 4, 7 ... 22, claude-sonnet 3, 6 ... 21, claude-haiku the rest
    assert legend[:3] == ["gpt-4o", "claude-sonnet-4-5", "claude-haiku-4-5"]
    table = await admin_page.do(lambda p: p.locator("#usage-chart table tbody tr").count())
    assert table == 25  # a row per hour bucket, the first one partial
    await admin_page.screenshot("usage")
