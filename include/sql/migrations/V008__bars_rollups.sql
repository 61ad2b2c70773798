-- 1-minute bars rolled up to hours and days: market.bars_1m_rollup_1h and market.bars_1m_rollup_1d,
-- one row per (source, symbol, bucket) with open = first(open), high = max(high), low = min(low),
-- close = last(close), volume = sum(volume), and bar_count (how many 1m bars the bucket holds, so
-- an incomplete bucket shows). Buckets are UTC hours and UTC days.
--
-- TimescaleDB: continuous aggregates, the daily one built on the hourly one (hierarchical).
-- Materialized only, a stated choice: they hold buckets the refresh policy has materialized, which
-- ends one bucket before now, so a bucket still filling never appears (the product stores closed
-- bars only). The refresh policies (how far back a refresh reaches: the restatement window) are set
-- by the market_setup DAG from the pipeline config (TimescaleHook.apply_policies).
-- Plain PostgreSQL: ordinary views with the same names and columns, computed when queried.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        CREATE MATERIALIZED VIEW IF NOT EXISTS market.bars_1m_rollup_1h
        WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
        SELECT time_bucket(INTERVAL '1 hour', time) AS time, source, symbol, '1h'::text AS interval,
               first(open, time) AS open, max(high) AS high, min(low) AS low, last(close, time) AS close,
               sum(volume) AS volume, count(*) AS bar_count
        FROM market.bars_1m
        GROUP BY 1, source, symbol
        WITH NO DATA;

        CREATE MATERIALIZED VIEW IF NOT EXISTS market.bars_1m_rollup_1d
        WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
        SELECT time_bucket(INTERVAL '1 day', time) AS time, source, symbol, '1d'::text AS interval,
               first(open, time) AS open, max(high) AS high, min(low) AS low, last(close, time) AS close,
               sum(volume) AS volume, sum(bar_count) AS bar_count
        FROM market.bars_1m_rollup_1h
        GROUP BY 1, source, symbol
        WITH NO DATA;
    ELSE
        CREATE OR REPLACE VIEW market.bars_1m_rollup_1h AS
        SELECT date_trunc('hour', time, 'UTC') AS time, source, symbol, '1h'::text AS interval,
               (array_agg(open ORDER BY time))[1] AS open, max(high) AS high, min(low) AS low,
               (array_agg(close ORDER BY time DESC))[1] AS close, sum(volume) AS volume, count(*) AS bar_count
        FROM market.bars_1m
        GROUP BY 1, source, symbol;

        CREATE OR REPLACE VIEW market.bars_1m_rollup_1d AS
        SELECT date_trunc('day', time, 'UTC') AS time, source, symbol, '1d'::text AS interval,
               (array_agg(open ORDER BY time))[1] AS open, max(high) AS high, min(low) AS low,
               (array_agg(close ORDER BY time DESC))[1] AS close, sum(volume) AS volume, count(*) AS bar_count
        FROM market.bars_1m
        GROUP BY 1, source, symbol;
    END IF;
END
$$;
