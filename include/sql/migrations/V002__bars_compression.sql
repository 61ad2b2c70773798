-- TimescaleDB only: compress chunks older than 90 days, segmented by series and ordered by time
-- descending. The delay outlasts the trailing-overlap and restatement window (days), so routine
-- reruns and backfills of recent data never touch compressed chunks. No-op on plain PostgreSQL.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        ALTER TABLE market.bars SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'source, symbol, interval',
            timescaledb.compress_orderby = 'time DESC'
        );
        PERFORM add_compression_policy('market.bars', INTERVAL '90 days', if_not_exists => TRUE);
    END IF;
END
$$;
