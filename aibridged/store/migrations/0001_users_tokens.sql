-- Users and their API tokens. Only a SHA-256 hash of a token's secret is stored.
CREATE TABLE users (
    id          uuid PRIMARY KEY,
    username    text NOT NULL UNIQUE CHECK (username = lower(username) AND username ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    name        text NOT NULL DEFAULT '',
    email       text NOT NULL DEFAULT '',
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'auditor', 'member')),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id             text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{10}$'),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           text NOT NULL DEFAULT '',
    hashed_secret  bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    revoked_at     timestamptz
);

CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);
