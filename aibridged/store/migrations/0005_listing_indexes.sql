-- The interceptions listing at scale (bench/listing_scale.py: a million interceptions over 60
-- days). Every page is ordered by (started_at DESC, id DESC) and a cursor page continues after
-- its row with `(started_at, id) < (cursor)`; the indexes of 0004 stopped at started_at.
--
-- - An index in exactly the page order: the unfiltered list and the time-range filters read
--   their page off it. Without it, the first page with no filter sorted every row (~0.9 s at a
--   million), and so did a page after started_after or started_before.
-- - Each filter's index gets `id DESC` after `started_at DESC`, so its rows come out in page
--   order and the cursor's row comparison bounds the index scan instead of filtering it.
-- - `provider` (the wire format) had no index: a filter on it read every row, for the page and
--   for the count.
--
-- The indexes are built inside the migration's transaction: writes to aibridge_interceptions
-- wait while it runs (measured in bench/results/2026-12-02-listing-scale.md; see
-- docs/recording.md).
CREATE INDEX aibridge_interceptions_order_idx
    ON aibridge_interceptions (started_at DESC, id DESC);
CREATE INDEX aibridge_interceptions_initiator_order_idx
    ON aibridge_interceptions (initiator_id, started_at DESC, id DESC);
CREATE INDEX aibridge_interceptions_provider_order_idx
    ON aibridge_interceptions (provider, started_at DESC, id DESC);
CREATE INDEX aibridge_interceptions_provider_name_order_idx
    ON aibridge_interceptions (provider_name, started_at DESC, id DESC);
CREATE INDEX aibridge_interceptions_model_order_idx
    ON aibridge_interceptions (model, started_at DESC, id DESC);
CREATE INDEX aibridge_interceptions_client_order_idx
    ON aibridge_interceptions (client, started_at DESC, id DESC);
CREATE INDEX aibridge_interceptions_session_order_idx
    ON aibridge_interceptions (session_id, started_at DESC, id DESC);

-- Each is a prefix of its replacement above.
DROP INDEX aibridge_interceptions_initiator_idx;
DROP INDEX aibridge_interceptions_provider_idx;  -- it was on provider_name
DROP INDEX aibridge_interceptions_model_idx;
DROP INDEX aibridge_interceptions_client_idx;
DROP INDEX aibridge_interceptions_session_idx;
