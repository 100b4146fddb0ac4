-- Providers and their keys. Keys and secret settings are sealed (AES-GCM, aibridged/secretbox.py)
-- before they reach the database; only masked hints are stored in the clear.
CREATE TABLE ai_providers (
    id               uuid PRIMARY KEY,
    type             text NOT NULL CHECK (type IN ('openai', 'anthropic', 'azure', 'google',
                         'openrouter', 'vercel', 'openai-compat', 'copilot', 'bedrock')),
    name             text NOT NULL CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 63
                         AND name NOT IN ('sessions', 'interceptions', 'models', 'clients', 'proxy')),
    display_name     text NOT NULL DEFAULT '',
    enabled          boolean NOT NULL DEFAULT true,
    base_url         text NOT NULL DEFAULT '',
    settings         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    secret_settings  bytea,  -- a sealed JSON object, or NULL when there are none
    source           text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'seed', 'demo')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);

-- Unique among live providers only: a deleted provider's name can be used again.
CREATE UNIQUE INDEX ai_providers_live_name_idx ON ai_providers (name) WHERE deleted_at IS NULL;

CREATE TABLE ai_provider_keys (
    id           uuid PRIMARY KEY,
    provider_id  uuid NOT NULL REFERENCES ai_providers (id) ON DELETE CASCADE,
    position     smallint NOT NULL CHECK (position BETWEEN 0 AND 4),  -- at most 5, tried in order
    sealed_key   bytea NOT NULL,
    hint         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider_id, position) DEFERRABLE INITIALLY DEFERRED
);

-- One sealed known value: a secrets key file that is not the one this database was set up
-- with stops startup with a clear message, even before any provider exists.
CREATE TABLE secrets_check (
    id      smallint PRIMARY KEY CHECK (id = 1),
    sealed  bytea NOT NULL
);
