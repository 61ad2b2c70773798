-- Quote snapshots (market_ingest.schema.QUOTE_SCHEMA, version 1). Idempotent.
CREATE TABLE IF NOT EXISTS market.quotes (
    time                timestamptz      NOT NULL,   -- quote time, UTC
    source              text             NOT NULL,
    symbol              text             NOT NULL,
    price               double precision NOT NULL,   -- listing currency
    open                double precision,
    high                double precision,
    low                 double precision,
    previous_close      double precision,
    change              double precision,
    volume              double precision,
    latest_trading_day  date,
    currency            text,
    ingested_at         timestamptz      NOT NULL,
    CONSTRAINT quotes_pkey PRIMARY KEY (source, symbol, time)
);

CREATE INDEX IF NOT EXISTS quotes_series_time_desc ON market.quotes (source, symbol, time DESC);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('market.quotes', 'time', chunk_time_interval => INTERVAL '30 days',
                                  if_not_exists => TRUE, migrate_data => TRUE);
    END IF;
END
$$;
