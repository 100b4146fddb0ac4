"""The listing bench's data set: a million recorded interceptions over 60 days, made by the server.

Everything is generated inside PostgreSQL (``INSERT ... SELECT generate_series``), one statement per
table, so a fill costs the server's time only, not a million round trips. The shapes follow what a
gateway records from coding agents:

- 500 users in ``users`` (real rows, the listing joins them), a few of them heavy: a session's
  user is drawn as ``500 * random()^2``, so the heaviest makes ~4.5 % of the traffic, the
  lightest ~0.1 %;
- sessions of 1-79 interceptions (mean 40), a few seconds to a minute apart, each of one user, one
  client and one provider; clients that send a session id (Claude Code, Codex, Copilot, Kilo Code)
  get a client session id, the others (Cursor, Zed, Unknown) a thread: every interception after
  the first names the first as its root, so ``session_id`` is the root's id;
- 8 clients, 6 provider names over the two wire formats, 20 models (10 per format), a model per
  session with a fifth of its interceptions on the format's small model;
- each interception has a token usage row and a prompt row (60-1,160 characters), 60 % a tool
  usage row, 10 % a model thought; ended, as the recorder leaves them once the answer is done.

Rows are inserted in start-time order, as the recorder appends them. ``random()`` is seeded, so two
fills have the same shape (the ids differ).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from aibridged.store.db import Connection

SEED = 0.42
MEAN_SESSION = 40  # interceptions, 1 + floor(random() * 79) on average
PROMPT = (
    "Refactor the retry loop in the upstream client so that a connection reset while reading the "
    "head of the answer is retried once on a fresh connection, and add a test that fails without "
    "the change. Keep the public interface as it is and explain what you changed. The tests live "
    "in tests/test_upstream.py; run them with make test and show me the failures first. Also look "
    "at how the pool hands out connections after a reset: a connection that saw a reset must not "
    "go back to the pool. If the change touches the timeout handling, keep the deadlines as they "
    "are and say so. Use the existing fakes for the upstream rather than a new one, and keep the "
    "commit small: one behaviour, its test, and the docs line in docs/api.md if the retry is "
    "visible to a client. When you are done, summarise the diff in three lines and list anything "
    "you were unsure about, with the file and line, so that I can review those parts first. Do "
    "not reformat unrelated code, and do not change the public names even where you would name "
    "them differently today; we will rename in a separate change once this one is merged."
)
TOOL_INPUT = (
    '{"file_path": "aibridged/intercept/upstream.py", "old_string": "        except '
    'ConnectionResetError:\\n            raise\\n", "new_string": "        except '
    'ConnectionResetError:\\n            if retried:\\n                raise\\n"}'
)
THOUGHT = (
    "The reset happens while the head is read, so nothing reached the client yet: a retry is safe "
    "there, but not once the first byte of the body was relayed. I should check where the relay "
    "starts before moving the retry."
)

CLIENT = """CASE
    WHEN r_client < 0.40 THEN 'Claude Code'
    WHEN r_client < 0.60 THEN 'Codex'
    WHEN r_client < 0.72 THEN 'Cursor'
    WHEN r_client < 0.82 THEN 'GitHub Copilot (VS Code)'
    WHEN r_client < 0.88 THEN 'GitHub Copilot (CLI)'
    WHEN r_client < 0.93 THEN 'Zed'
    WHEN r_client < 0.97 THEN 'Kilo Code'
    ELSE 'Unknown' END"""
PROVIDER_NAME = """CASE client
    WHEN 'Claude Code' THEN CASE WHEN r_provider < 0.75 THEN 'anthropic' ELSE 'anthropic-eu' END
    WHEN 'Codex' THEN CASE WHEN r_provider < 0.7 THEN 'openai' ELSE 'azure-openai' END
    WHEN 'GitHub Copilot (VS Code)' THEN 'copilot'
    WHEN 'GitHub Copilot (CLI)' THEN 'copilot'
    ELSE (ARRAY['openrouter', 'anthropic', 'openai', 'openrouter'])[1 + floor(r_provider * 4)::int]
    END"""
USER_AGENT = """CASE client
    WHEN 'Claude Code' THEN 'claude-cli/2.0.14 (external, cli)'
    WHEN 'Codex' THEN 'codex_cli_rs/0.46.0 (Ubuntu 24.4.0; x86_64) xterm-256color'
    WHEN 'Cursor' THEN 'connect-es/1.6.1'
    WHEN 'GitHub Copilot (VS Code)' THEN 'GitHubCopilotChat/0.32.4'
    WHEN 'GitHub Copilot (CLI)' THEN 'copilot/0.0.339 (linux v22.20.0) term/xterm-256color'
    WHEN 'Zed' THEN 'Zed/0.207.3 (linux; x86_64)'
    WHEN 'Kilo Code' THEN 'Kilo-Code/4.98.0'
    ELSE 'python-httpx/0.28.1' END"""
ANTHROPIC_MODELS = (
    "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "claude-sonnet-4",
    "claude-opus-4-5", "claude-3-7-sonnet", "claude-opus-4", "claude-3-5-haiku",
    "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001",
)  # fmt: skip
OPENAI_MODELS = (
    "gpt-5-codex", "gpt-5", "gpt-5-mini", "gpt-4.1", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini",
    "gpt-5.1", "gpt-5.1-codex",
)  # fmt: skip
TOOLS = ("Read", "Edit", "Bash", "Grep", "Glob", "Write", "TodoWrite", "WebFetch", "read_file",
         "apply_patch", "shell")  # fmt: skip
THREADED_CLIENTS = ("Cursor", "Zed", "Unknown")  # no session id of their own: threads


def _array(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


@dataclass(frozen=True, slots=True)
class Shape:
    interceptions: int
    days: int
    users: int
    end: datetime  # the newest interception starts before this

    @property
    def first_day(self) -> date:
        return (self.end - timedelta(days=self.days - 1)).date()


USERS_SQL = """
CREATE UNLOGGED TABLE bench_listing_users (n integer PRIMARY KEY, id uuid, api_key_id text);
WITH made AS (
    INSERT INTO users (id, username, name, email, role)
    SELECT gen_random_uuid(), 'user' || lpad(n::text, 3, '0'), 'User ' || n,
           'user' || n || '@example.com', 'member'
    FROM generate_series(0, {users} - 1) AS n
    RETURNING id, username
)
INSERT INTO bench_listing_users
SELECT substr(username, 5)::integer, id, 'k' || substr(md5(username), 1, 9) FROM made;
"""

# Sessions first (who, which client, provider and model, when, how long), then their
# interceptions; the values formatted in are the bench's own numbers. 1.25 x the sessions needed
# on average: the cut at `interceptions` keeps the first ones whole and the last one partial.
SESSIONS_SQL = f"""
CREATE UNLOGGED TABLE bench_listing_sessions AS
WITH drawn AS (
    SELECT s, floor({{users}} * random() ^ 2)::integer AS user_n, random() AS r_client,
           random() AS r_provider, random() AS r_model,
           1 + floor(random() * 79)::integer AS len, 5 + floor(random() * 55)::integer AS step_s,
           random() AS r_start
    FROM generate_series(0, {{sessions}} - 1) AS s
), clients AS (
    SELECT drawn.*, {CLIENT} AS client FROM drawn
), providers AS (
    SELECT clients.*, {PROVIDER_NAME} AS provider_name FROM clients
), formats AS (
    SELECT providers.*, CASE WHEN provider_name LIKE 'anthropic%' THEN 'anthropic'
                        ELSE 'openai' END AS provider
    FROM providers
)
SELECT f.s, f.len, f.step_s, f.client, f.provider, f.provider_name, u.id AS user_id,
       u.api_key_id, {USER_AGENT} AS user_agent,
       CASE f.provider WHEN 'anthropic'
            THEN ({_array(ANTHROPIC_MODELS)})[1 + floor(10 * f.r_model ^ 2)::integer]
            ELSE ({_array(OPENAI_MODELS)})[1 + floor(10 * f.r_model ^ 2)::integer] END AS model,
       CASE f.provider WHEN 'anthropic' THEN 'claude-haiku-4-5' ELSE 'gpt-5-mini' END
           AS small_model,
       f.client IN ({", ".join(f"'{c}'" for c in THREADED_CLIENTS)}) AS threaded,
       gen_random_uuid() AS root_id,
       CASE WHEN f.client NOT IN ({", ".join(f"'{c}'" for c in THREADED_CLIENTS)})
            THEN gen_random_uuid()::text END AS client_session_id,
       'sk-a...' || substr(md5(u.api_key_id), 1, 4) AS hint,
       '{{first_at}}'::timestamptz + make_interval(secs => f.r_start * {{span_s}}) AS first_at,
       sum(f.len) OVER (ORDER BY f.s) - f.len AS first_g
FROM formats f JOIN bench_listing_users u ON u.n = f.user_n
"""

INTERCEPTIONS_SQL = """
INSERT INTO aibridge_interceptions (id, initiator_id, api_key_id, provider, provider_name, model,
    client, client_session_id, user_agent, credential_kind, credential_hint, thread_parent_id,
    thread_root_id, metadata, started_at, ended_at)
SELECT CASE WHEN k = 0 THEN s.root_id ELSE gen_random_uuid() END, s.user_id, s.api_key_id,
       s.provider, s.provider_name,
       CASE WHEN random() < 0.2 THEN s.small_model ELSE s.model END,
       s.client, s.client_session_id, s.user_agent, 'centralized', s.hint,
       CASE WHEN s.threaded AND k > 0 THEN s.root_id END,
       CASE WHEN s.threaded AND k > 0 THEN s.root_id END,
       '{"status": "completed"}', t.at, t.at + make_interval(secs => 1 + 40 * random())
FROM bench_listing_sessions s
CROSS JOIN LATERAL generate_series(0, s.len - 1) AS k
CROSS JOIN LATERAL (SELECT s.first_at + make_interval(secs => k * s.step_s + random()) AS at) t
WHERE s.first_g + k < $1
ORDER BY t.at
"""

TOKEN_USAGES_SQL = """
INSERT INTO aibridge_token_usages (id, interception_id, provider_response_id, input_tokens,
    output_tokens, cache_read_input_tokens, cache_write_input_tokens, metadata, created_at,
    started_at)
SELECT gen_random_uuid(), i.id, 'msg_' || substr(md5(i.id::text), 1, 24), u.input,
       (20 + 4000 * random() ^ 2)::bigint, (u.input * 0.85)::bigint, (2000 * random())::bigint,
       '{}', i.ended_at, i.started_at
FROM aibridge_interceptions i, LATERAL (SELECT (2000 + 150000 * random())::bigint AS input) u
"""

PROMPTS_SQL = """
INSERT INTO aibridge_user_prompts (id, interception_id, provider_response_id, prompt, created_at,
    started_at)
SELECT gen_random_uuid(), i.id, 'msg_' || substr(md5(i.id::text), 1, 24),
       left($1, 60 + floor(random() * 1100)::integer), i.started_at, i.started_at
FROM aibridge_interceptions i
"""

TOOLS_SQL = f"""
INSERT INTO aibridge_tool_usages (id, interception_id, provider_response_id,
    provider_tool_call_id, provider_item_id, tool, input, created_at, started_at)
SELECT gen_random_uuid(), i.id, 'msg_' || substr(md5(i.id::text), 1, 24),
       'toolu_' || substr(md5(i.id::text || 't'), 1, 24), '',
       ({_array(TOOLS)})[1 + floor(random() * {len(TOOLS)})::integer], $1::text, i.ended_at,
       i.started_at
FROM aibridge_interceptions i WHERE random() < 0.6
"""

THOUGHTS_SQL = """
INSERT INTO aibridge_model_thoughts (interception_id, content, metadata, created_at, started_at)
SELECT i.id, $1::text, '{"source": "reasoning"}', i.ended_at, i.started_at
FROM aibridge_interceptions i WHERE random() < 0.1
"""

RECORDING_TABLES = ("aibridge_interceptions", "aibridge_token_usages", "aibridge_user_prompts",
                    "aibridge_tool_usages", "aibridge_model_thoughts")  # fmt: skip


async def fill(conn: Connection, shape: Shape) -> dict[str, float]:
    """Fill an empty, migrated, partitioned database; seconds per step."""
    steps: dict[str, float] = {}

    async def step(name: str, sql: str, *args: object) -> None:
        started = time.perf_counter()
        await conn.execute(sql, *args)
        steps[name] = round(time.perf_counter() - started, 2)
        print(f"  fill: {name} {steps[name]:.1f} s", flush=True)

    first_at = datetime.combine(shape.first_day, datetime.min.time(), shape.end.tzinfo)
    # The last session may run for 79 x 60 s after its first interception: keep it before `end`.
    span_s = (shape.end - first_at).total_seconds() - 80 * 60
    sessions = int(shape.interceptions / MEAN_SESSION * 1.25) + 100
    await conn.execute(f"SET work_mem = '256MB'; SELECT setseed({SEED})")
    await step("users", USERS_SQL.format(users=shape.users))
    sessions_sql = SESSIONS_SQL.format(
        users=shape.users, sessions=sessions, first_at=first_at.isoformat(), span_s=span_s
    )
    await step("sessions", sessions_sql)
    await step("interceptions", INTERCEPTIONS_SQL, shape.interceptions)
    await step("token usages", TOKEN_USAGES_SQL)
    await step("prompts", PROMPTS_SQL, PROMPT)
    await step("tool usages", TOOLS_SQL, TOOL_INPUT)
    await step("model thoughts", THOUGHTS_SQL, THOUGHT)
    await conn.execute("DROP TABLE bench_listing_sessions, bench_listing_users")
    # What autovacuum would have done by the time anyone lists: statistics for the planner and
    # the visibility map (index-only scans).
    await step("vacuum analyze", f"VACUUM (ANALYZE) {', '.join(RECORDING_TABLES)}, users")
    await conn.execute("RESET work_mem")
    return steps
