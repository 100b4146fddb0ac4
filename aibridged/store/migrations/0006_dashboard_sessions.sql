-- Signed-in dashboard sessions, shared by every replica behind a load balancer. The cookie holds
-- a random session id; only its SHA-256 is stored, so reading this table gives nobody a usable
-- cookie. A session belongs to the token it was opened with: revoking or expiring the token,
-- or suspending its user, ends the session at the next page (the lookup joins both).
CREATE TABLE dashboard_sessions (
    id_hash     bytea PRIMARY KEY,
    token_id    text NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE INDEX dashboard_sessions_expires_at_idx ON dashboard_sessions (expires_at);
