-- Anomaly flags (market_ingest.anomalies): bars that passed validation and were loaded, but look
-- wrong against the symbol's recent history. A flag does not remove the bar; it says why to doubt it.
--
--   flag    return_outlier | unit_100x | stale_close | volume_spike
--   detail  the figures that raised it (the return and its z-score, the ratio, the run length, ...)
--   run_id  the Airflow run whose load computed it
--
-- Written by each load in the same transaction as its bars, replacing the flags of the span it
-- loaded. The ledger counts them per day (market.coverage.flagged).
CREATE TABLE IF NOT EXISTS market.bar_flags (
    source      text        NOT NULL,
    interval    text        NOT NULL,
    symbol      text        NOT NULL,
    time        timestamptz NOT NULL,
    flag        text        NOT NULL CHECK (flag IN ('return_outlier', 'unit_100x', 'stale_close', 'volume_spike')),
    detail      text        NOT NULL,
    run_id      text        NOT NULL,
    flagged_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bar_flags_pkey PRIMARY KEY (source, interval, symbol, time, flag)
);

ALTER TABLE market.coverage ADD COLUMN IF NOT EXISTS flagged integer NOT NULL DEFAULT 0;
