-- Repairs that converge (market_ingest.repair): attempts per ledger day, and the state the repair
-- leaves a day in when it gives up on it.
--
--   attempts  times a run asked a partial, missing or failed day again (the repair, a clear, a
--             backfill) and its load left the day partial, missing or failed; 0 once a run leaves
--             it in any other state. A first ask and a run whose bars were not loaded do not count.
--   state     adds 'unrecoverable': the repair no longer asks for the day, because the vendor no
--             longer serves it (beyond its lookback) or did not serve it in repair.max_attempts
--             attempts; the reason says which, and what the day was before.
--
-- market.coverage is a plain table (never a hypertable): these are catalog changes and a fast
-- default, no rewrite. Every statement is safe to run again.
ALTER TABLE market.coverage ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0);

ALTER TABLE market.coverage DROP CONSTRAINT IF EXISTS coverage_state_check;
ALTER TABLE market.coverage ADD CONSTRAINT coverage_state_check CHECK (
    state IN ('complete', 'partial', 'missing', 'vendor_empty', 'deferred', 'failed', 'rejected', 'unrecoverable')
);

-- Days the repair of V009..V010 marked with the reason prefix 'unrecoverable: ' (beyond the
-- vendor's lookback) take the state; the reason keeps the rest of its text.
UPDATE market.coverage
SET state = 'unrecoverable', reason = substr(reason, length('unrecoverable: ') + 1)
WHERE reason LIKE 'unrecoverable: %' AND state IN ('partial', 'missing', 'failed');
