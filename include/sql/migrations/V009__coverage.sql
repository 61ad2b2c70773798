-- The coverage ledger (market_ingest.coverage): one row per (source, interval, symbol, UTC day)
-- saying what the warehouse holds against what the symbol's market should have had.
--
--   covered_from, covered_until  the part of the day the runs so far asked for ([from, until), UTC);
--                                 runs widen it, never narrow it
--   expected                     bars the market's calendar has in that part (closed bars only)
--   loaded                       bars stored in market.bars_<interval> in that part
--   state                        complete | partial | missing | vendor_empty | deferred | failed | rejected
--   reason                       why, when not complete (the vendor's answer, the failure, the checks)
--   run_id                       the Airflow run that wrote the row last
--
-- Written by each load in the same transaction as its bars. Days with no expected and no stored
-- bar (weekends, holidays of the market) have no row.
CREATE TABLE IF NOT EXISTS market.coverage (
    source         text        NOT NULL,
    interval       text        NOT NULL,
    symbol         text        NOT NULL,
    day            date        NOT NULL,
    covered_from   timestamptz NOT NULL,
    covered_until  timestamptz NOT NULL,
    expected       integer     NOT NULL CHECK (expected >= 0),
    loaded         integer     NOT NULL CHECK (loaded >= 0),
    state          text        NOT NULL CHECK (state IN ('complete', 'partial', 'missing', 'vendor_empty', 'deferred', 'failed', 'rejected')),
    reason         text        NOT NULL DEFAULT '',
    run_id         text        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coverage_pkey PRIMARY KEY (source, interval, symbol, day),
    CONSTRAINT coverage_range CHECK (covered_from < covered_until)
);

-- What the repair DAG and the coverage view look for: the rows that are not complete.
CREATE INDEX IF NOT EXISTS coverage_incomplete ON market.coverage (source, interval, day) WHERE state <> 'complete';
