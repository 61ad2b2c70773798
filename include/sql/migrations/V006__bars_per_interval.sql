-- One table per canonical interval, so that each TimescaleDB chunk holds a sensible amount of data:
-- the chunk interval is 1,440 bars of the table's interval (1m: 1 day, 5m: 5 days, 15m: 15 days,
-- 30m: 30 days, 1h: 60 days, 1d: 1,440 days, 1wk: 1,440 weeks, 1mo: 43,200 days). A chunk then
-- holds 1,440 bars of each series (288,000 rows at 200 symbols), and a columnstore segment (one
-- series in one chunk) up to 1,440 rows. With one table and 7-day chunks for every interval, 25
-- years of daily bars for 200 symbols made 1,250 chunks of about 7 rows per series, and planning a
-- one-symbol range query took seconds.
--
-- market.bars stays the name to query: a view over the eight tables (UNION ALL). Each table checks
-- its interval, so a query filtering on interval reads one table (constraint exclusion of UNION ALL
-- branches). Loads write the table of their interval (TimescaleHook.upsert). Rows of the former
-- market.bars table are moved here, then it is dropped (with its compression policy).
-- Plain PostgreSQL: the same tables, keys and view, without hypertables.
DO $$
DECLARE
    spec record;
    tsdb boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb');
    legacy boolean := EXISTS (
        SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'market' AND c.relname = 'bars' AND c.relkind IN ('r', 'p')
    );
BEGIN
    FOR spec IN
        SELECT * FROM (VALUES
            ('1m', INTERVAL '1 day'), ('5m', INTERVAL '5 days'), ('15m', INTERVAL '15 days'),
            ('30m', INTERVAL '30 days'), ('1h', INTERVAL '60 days'), ('1d', INTERVAL '1440 days'),
            ('1wk', INTERVAL '10080 days'), ('1mo', INTERVAL '43200 days')
        ) AS v(bar_interval, chunk)
    LOOP
        EXECUTE format($ddl$
            CREATE TABLE IF NOT EXISTS market.%1$I (
                time         timestamptz      NOT NULL,   -- bar open time, UTC
                source       text             NOT NULL,
                symbol       text             NOT NULL,
                interval     text             NOT NULL CONSTRAINT %2$I CHECK (interval = %3$L),
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
                CONSTRAINT %4$I PRIMARY KEY (source, symbol, interval, time)
            )$ddl$,
            'bars_' || spec.bar_interval, 'bars_' || spec.bar_interval || '_interval',
            spec.bar_interval, 'bars_' || spec.bar_interval || '_pkey');
        IF tsdb THEN
            PERFORM create_hypertable(format('market.%I', 'bars_' || spec.bar_interval)::regclass, 'time',
                                      chunk_time_interval => spec.chunk, if_not_exists => TRUE);
        END IF;
        IF legacy THEN
            EXECUTE format('INSERT INTO market.%I SELECT time, source, symbol, interval, open, high, low, close, volume, '
                           'adj_close, vwap, trade_count, dividend, split_ratio, currency, ingested_at '
                           'FROM market.bars WHERE interval = %L', 'bars_' || spec.bar_interval, spec.bar_interval);
        END IF;
    END LOOP;
    IF legacy THEN
        DROP TABLE market.bars CASCADE;
    END IF;
END
$$;

CREATE OR REPLACE VIEW market.bars AS
          SELECT * FROM market.bars_1m
UNION ALL SELECT * FROM market.bars_5m
UNION ALL SELECT * FROM market.bars_15m
UNION ALL SELECT * FROM market.bars_30m
UNION ALL SELECT * FROM market.bars_1h
UNION ALL SELECT * FROM market.bars_1d
UNION ALL SELECT * FROM market.bars_1wk
UNION ALL SELECT * FROM market.bars_1mo;

COMMENT ON VIEW market.bars IS
    'Every bar (market_ingest.schema.BAR_SCHEMA), one table per interval underneath: market.bars_<interval>';
