-- Threads by one index probe. A request that answers a tool call its gateway does not remember
-- finds the interception that made the call as part of its start's commit. Searching
-- aibridge_tool_usages for the call id probes every day partition of it (and of the
-- interceptions, for the root): with 60 days kept, 1.26 ms a commit against 0.46 ms for a start
-- without the lookup, measured back to back. This table holds, per provider call id, the newest tool call
-- with that id: its interception, that interception's thread root, and the interception's
-- start (retention deletes rows past the cutoff, in batches; it is small: one row per call).
CREATE TABLE aibridge_tool_calls (
    call_id          text PRIMARY KEY,
    interception_id  uuid NOT NULL,
    thread_root_id   uuid NOT NULL,
    started_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL
);
CREATE INDEX aibridge_tool_calls_started_at_idx ON aibridge_tool_calls (started_at);

INSERT INTO aibridge_tool_calls (call_id, interception_id, thread_root_id, started_at, created_at)
SELECT DISTINCT ON (tu.provider_tool_call_id)
       tu.provider_tool_call_id, tu.interception_id, coalesce(i.thread_root_id, i.id),
       tu.started_at, tu.created_at
FROM aibridge_tool_usages tu
JOIN aibridge_interceptions i ON i.id = tu.interception_id AND i.started_at = tu.started_at
WHERE tu.provider_tool_call_id <> ''
ORDER BY tu.provider_tool_call_id, tu.created_at DESC;
