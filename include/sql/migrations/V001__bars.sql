-- Canonical bars (market_ingest.schema.BAR_SCHEMA, version 1). Idempotent.
-- Natural key (source, symbol, interval, time): includes the time column, as a hypertable needs.
CREATE SCHEMA IF NOT EXISTS market;

CREATE TABLE IF NOT EXISTS market.bars (
    time         timestamptz      NOT NULL,   -- bar open time, UTC
    source       text             NOT NULL,
    symbol       text             NOT NULL,
    interval     text             NOT NULL,
    open         double precision NOT NULL,   -- listing currency
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       double precision NOT NULL,   -- units traded
    adj_close    double precision,
    vwap         double precision,
    trade_count  bigint,
    dividend     double precision,
    split_ratio  double precision,
    currency     text,
    ingested_at  timestamptz      NOT NULL,
    CONSTRAINT bars_pkey PRIMARY KEY (source, symbol, interval, time)
);

-- Latest bars first for one series; the primary key serves equality on the series key.
CREATE INDEX IF NOT EXISTS bars_series_time_desc ON market.bars (source, symbol, interval, time DESC);

-- A hypertable when TimescaleDB is installed; the same table, key and indexes otherwise.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('market.bars', 'time', chunk_time_interval => INTERVAL '7 days',
                                  if_not_exists => TRUE, migrate_data => TRUE);
    END IF;
END
$$;
