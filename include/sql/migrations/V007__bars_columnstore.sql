-- TimescaleDB only (a no-op on plain PostgreSQL): the columnstore on every bar table, with the
-- current API (2.18+). Segments by series (source, symbol; interval is constant per table), so one
-- segment holds a series' bars of one chunk (up to 1,440: see V006) and a one-symbol read
-- decompresses only its own segments; ordered by time descending, the order of latest-first reads.
-- When chunks convert is a policy the market_setup DAG sets from the pipeline config
-- (timescale.columnstore_after), as is retention (timescale.retention): see TimescaleHook.apply_policies.
DO $$
DECLARE
    bar_interval text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        FOREACH bar_interval IN ARRAY ARRAY['1m', '5m', '15m', '30m', '1h', '1d', '1wk', '1mo'] LOOP
            EXECUTE format('ALTER TABLE market.%I SET (timescaledb.enable_columnstore = true, '
                           'timescaledb.segmentby = %L, timescaledb.orderby = %L)',
                           'bars_' || bar_interval, 'source, symbol', 'time DESC');
        END LOOP;
    END IF;
END
$$;
