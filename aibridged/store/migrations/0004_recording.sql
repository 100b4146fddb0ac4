-- Recording: one row per interception, and its token usages, prompts, tool calls and thoughts.
--
-- Every table is range-partitioned by day on the interception's start time (child rows carry
-- it as `started_at`), so retention drops whole days across all tables at once, and a day's
-- rows of every table live together. The daemon creates partitions ahead of time
-- (aibridge_create_partitions); a DEFAULT partition catches rows of days not created yet, so a
-- missing partition never fails a request. No foreign keys: they would cost every insert, and
-- deletes are by partition.
CREATE TABLE aibridge_interceptions (
    id                 uuid NOT NULL,
    initiator_id       uuid NOT NULL,
    api_key_id         text NOT NULL DEFAULT '',
    provider           text NOT NULL,
    provider_name      text NOT NULL DEFAULT '',
    model              text NOT NULL DEFAULT '',
    client             varchar(64) NOT NULL DEFAULT 'Unknown',
    client_session_id  varchar(256),
    user_agent         text NOT NULL DEFAULT '',
    credential_kind    text NOT NULL DEFAULT 'centralized'
                           CHECK (credential_kind IN ('centralized', 'byok')),
    credential_hint    varchar(15) NOT NULL DEFAULT '',
    thread_parent_id   uuid,
    thread_root_id     uuid,
    session_id         text GENERATED ALWAYS AS
                           (COALESCE(client_session_id, thread_root_id::text, id::text)) STORED,
    metadata           jsonb NOT NULL DEFAULT '{}',
    started_at         timestamptz NOT NULL,
    ended_at           timestamptz,
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);

-- The listing filters: by user, provider, model, client and session, newest first.
CREATE INDEX aibridge_interceptions_initiator_idx ON aibridge_interceptions (initiator_id, started_at DESC);
CREATE INDEX aibridge_interceptions_provider_idx ON aibridge_interceptions (provider_name, started_at DESC);
CREATE INDEX aibridge_interceptions_model_idx ON aibridge_interceptions (model, started_at DESC);
CREATE INDEX aibridge_interceptions_client_idx ON aibridge_interceptions (client, started_at DESC);
CREATE INDEX aibridge_interceptions_session_idx ON aibridge_interceptions (session_id, started_at DESC);

CREATE TABLE aibridge_token_usages (
    id                       uuid NOT NULL,
    interception_id          uuid NOT NULL,
    provider_response_id     text NOT NULL DEFAULT '',
    input_tokens             bigint NOT NULL DEFAULT 0,
    output_tokens            bigint NOT NULL DEFAULT 0,
    cache_read_input_tokens  bigint NOT NULL DEFAULT 0,
    cache_write_input_tokens bigint NOT NULL DEFAULT 0,
    metadata                 jsonb NOT NULL DEFAULT '{}',
    created_at               timestamptz NOT NULL,
    started_at               timestamptz NOT NULL,
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);
CREATE INDEX aibridge_token_usages_interception_idx ON aibridge_token_usages (interception_id);

CREATE TABLE aibridge_user_prompts (
    id                    uuid NOT NULL,
    interception_id       uuid NOT NULL,
    provider_response_id  text NOT NULL DEFAULT '',
    prompt                text NOT NULL,
    metadata              jsonb NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL,
    started_at            timestamptz NOT NULL,
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);
CREATE INDEX aibridge_user_prompts_interception_idx ON aibridge_user_prompts (interception_id);

CREATE TABLE aibridge_tool_usages (
    id                     uuid NOT NULL,
    interception_id        uuid NOT NULL,
    provider_response_id   text NOT NULL DEFAULT '',
    provider_tool_call_id  text NOT NULL DEFAULT '',
    provider_item_id       text NOT NULL DEFAULT '',
    tool                   text NOT NULL,
    input                  text NOT NULL DEFAULT '',
    server_url             text,  -- NULL: a tool of the client, not an injected (MCP) one
    injected               boolean NOT NULL DEFAULT false,
    invocation_error       text,
    metadata               jsonb NOT NULL DEFAULT '{}',
    created_at             timestamptz NOT NULL,
    started_at             timestamptz NOT NULL,
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);
CREATE INDEX aibridge_tool_usages_interception_idx ON aibridge_tool_usages (interception_id);
-- Threads: a request answering a tool call finds the interception that made the call.
CREATE INDEX aibridge_tool_usages_call_idx ON aibridge_tool_usages (provider_tool_call_id)
    WHERE provider_tool_call_id <> '';

CREATE TABLE aibridge_model_thoughts (
    interception_id  uuid NOT NULL,
    content          text NOT NULL,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL,
    started_at       timestamptz NOT NULL
) PARTITION BY RANGE (started_at);
CREATE INDEX aibridge_model_thoughts_interception_idx ON aibridge_model_thoughts (interception_id);

CREATE TABLE aibridge_interceptions_default PARTITION OF aibridge_interceptions DEFAULT;
CREATE TABLE aibridge_token_usages_default PARTITION OF aibridge_token_usages DEFAULT;
CREATE TABLE aibridge_user_prompts_default PARTITION OF aibridge_user_prompts DEFAULT;
CREATE TABLE aibridge_tool_usages_default PARTITION OF aibridge_tool_usages DEFAULT;
CREATE TABLE aibridge_model_thoughts_default PARTITION OF aibridge_model_thoughts DEFAULT;

-- Day partitions (UTC) from `first_day` for `days` days, for every recording table; returns how
-- many were created. Replicas may call it at once: the advisory lock takes them one by one.
CREATE FUNCTION aibridge_create_partitions(first_day date, days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    parent  text;
    day     date;
    created integer := 0;
    part    text;
BEGIN
    PERFORM pg_advisory_xact_lock(4705951024661016948);  -- "AIBrpart"
    FOREACH parent IN ARRAY ARRAY['aibridge_interceptions', 'aibridge_token_usages',
                                  'aibridge_user_prompts', 'aibridge_tool_usages',
                                  'aibridge_model_thoughts'] LOOP
        FOR offset_days IN 0 .. days - 1 LOOP
            day := first_day + offset_days;
            part := parent || '_' || to_char(day, 'YYYYMMDD');
            IF to_regclass(part) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    part, parent,
                    (day::timestamp AT TIME ZONE 'UTC'),
                    ((day + 1)::timestamp AT TIME ZONE 'UTC'));
                created := created + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;
