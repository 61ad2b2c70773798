-- One instrument served by several sources (include/pipeline.yaml, instruments), compared bar by
-- bar after each load (market_ingest.reconcile), and read as one series.
--
-- market.instruments: the configuration's mapping, kept in step by every reconcile task: one row
-- per instrument and source, the source's symbol for it, and the close tolerance its bars are
-- compared with (basis points of the lower close).
CREATE TABLE IF NOT EXISTS market.instruments (
    instrument          text   NOT NULL,
    source              text   NOT NULL,
    symbol              text   NOT NULL,
    close_tolerance_bps float8 NOT NULL,
    CONSTRAINT instruments_pkey PRIMARY KEY (instrument, source),
    CONSTRAINT instruments_source_symbol_key UNIQUE (source, symbol)
);

-- market.cross_source_checks: the bars two sources disagree on, as of the latest check of them.
-- A pair of sources is named in byte order (source_a < source_b, COLLATE "C", as Python sorts the
-- configuration's names whatever the database's collation); both figures are kept, as traded, in
-- the currency both state. reason: 'close' (the closes differ by more than close_tolerance_bps of
-- the lower one), 'volume' (the volumes by more than volume_tolerance of the larger one, for a
-- source pair configured to compare volume), 'close, volume', or 'currency' (the two state
-- different currencies: no figure compared). A later check of the same bars that finds them
-- agreeing deletes the row: the table says what disagrees now, never what once did.
CREATE TABLE IF NOT EXISTS market.cross_source_checks (
    instrument          text        NOT NULL,
    interval            text        NOT NULL,
    time                timestamptz NOT NULL,
    source_a            text        NOT NULL,
    symbol_a            text        NOT NULL,
    source_b            text        NOT NULL,
    symbol_b            text        NOT NULL,
    currency_a          text,
    currency_b          text,
    close_a             float8      NOT NULL,
    close_b             float8      NOT NULL,
    close_diff_bps      float8,
    close_tolerance_bps float8      NOT NULL,
    volume_a            float8      NOT NULL,
    volume_b            float8      NOT NULL,
    volume_diff_share   float8,
    volume_tolerance    float8,
    reason              text        NOT NULL,
    run_id              text        NOT NULL,
    checked_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cross_source_checks_pkey PRIMARY KEY (instrument, interval, time, source_a, source_b),
    CONSTRAINT cross_source_checks_pair_order CHECK (source_a COLLATE "C" < source_b COLLATE "C"),
    CONSTRAINT cross_source_checks_reason CHECK (reason IN ('close', 'volume', 'close, volume', 'currency'))
);
CREATE INDEX IF NOT EXISTS cross_source_checks_by_source_a ON market.cross_source_checks (source_a, symbol_a, interval, time);
CREATE INDEX IF NOT EXISTS cross_source_checks_by_source_b ON market.cross_source_checks (source_b, symbol_b, interval, time);

COMMENT ON TABLE market.cross_source_checks IS
    'Bars of one instrument on which two sources disagree beyond the configured tolerances, both figures kept (as traded); '
    'rows are deleted when a later check finds the bars agreeing';

-- market.bars_consensus: one series per instrument, interval and currency. For each bar time, the
-- median close of every source that has the bar as traded; a source agrees when its close lies
-- within half the instrument's tolerance of that median, so any two agreeing sources are within
-- the tolerance of each other, as the pairwise check (market_ingest.reconcile) measures them:
-- two sources that disagree there have no consensus bar here, three with one apart have the two.
-- The consensus bar is the median open, high, low, close and volume of the agreeing sources
-- (volume: the median of what each venue counted, not a total); as traded, bar open time UTC.
-- One grouped pass: a reader's filter on instrument, interval and time (grouping columns) reaches
-- the bar tables' indexes, and each bar's sources are judged from arrays of that group alone.
CREATE OR REPLACE VIEW market.bars_consensus AS
SELECT g.instrument,
       g.interval,
       g.time,
       g.currency,
       a.open,
       a.high,
       a.low,
       a.close,
       a.volume,
       a.agreeing,
       g.sources,
       a.agreeing_sources
  FROM (SELECT i.instrument, b.interval, b.time, b.currency, i.close_tolerance_bps,
               count(*)::integer AS sources,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY b.close) AS median_close,
               array_agg(b.source) AS srcs, array_agg(b.open) AS opens, array_agg(b.high) AS highs,
               array_agg(b.low) AS lows, array_agg(b.close) AS closes, array_agg(b.volume) AS volumes
          FROM market.instruments i
          JOIN market.bars b ON b.source = i.source AND b.symbol = i.symbol AND b.price_basis = 'as_traded'
         GROUP BY i.instrument, b.interval, b.time, b.currency, i.close_tolerance_bps) g
 CROSS JOIN LATERAL (
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY u.open)   AS open,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY u.high)   AS high,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY u.low)    AS low,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY u.close)  AS close,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY u.volume) AS volume,
               count(*)::integer                                     AS agreeing,
               array_agg(u.source ORDER BY u.source COLLATE "C")     AS agreeing_sources
          FROM unnest(g.srcs, g.opens, g.highs, g.lows, g.closes, g.volumes) AS u(source, open, high, low, close, volume)
         WHERE abs(u.close - g.median_close) <= g.median_close * g.close_tolerance_bps / 20000.0) a
 WHERE a.agreeing > 0;

COMMENT ON VIEW market.bars_consensus IS
    'One series per instrument (market.instruments): per bar, the median OHLCV of the sources (as traded) whose close lies '
    'within half the instrument''s tolerance of the median close of all sources having the bar; bar open time UTC';

-- The coverage view's read-only role reads the checks (its cross-source layer) and the consensus.
GRANT SELECT ON market.instruments, market.cross_source_checks, market.bars_consensus TO market_reader;
