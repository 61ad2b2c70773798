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
-- A pair of sources is named in order (source_a < source_b); both figures are kept, as traded, in
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
    CONSTRAINT cross_source_checks_pair_order CHECK (source_a < source_b),
    CONSTRAINT cross_source_checks_reason CHECK (reason IN ('close', 'volume', 'close, volume', 'currency'))
);
CREATE INDEX IF NOT EXISTS cross_source_checks_by_source_a ON market.cross_source_checks (source_a, symbol_a, interval, time);
CREATE INDEX IF NOT EXISTS cross_source_checks_by_source_b ON market.cross_source_checks (source_b, symbol_b, interval, time);

COMMENT ON TABLE market.cross_source_checks IS
    'Bars of one instrument on which two sources disagree beyond the configured tolerances, both figures kept (as traded); '
    'rows are deleted when a later check finds the bars agreeing';

-- market.bars_consensus: one series per instrument, interval and currency. For each bar time, the
-- median close of every source that has the bar; a source agrees when its close lies within its
-- instrument's tolerance of that median; the consensus bar is the median open, high, low, close
-- and volume of the agreeing sources (volume: the median of what each venue counted, not a
-- total). A bar where no source agrees has no consensus row. As traded, bar open time UTC.
-- Plain subqueries, not CTEs: a reader's filter on instrument, interval and time reaches the bar
-- tables' indexes through both.
CREATE OR REPLACE VIEW market.bars_consensus AS
SELECT m.instrument,
       m.interval,
       m.time,
       m.currency,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY m.open)   AS open,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY m.high)   AS high,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY m.low)    AS low,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY m.close)  AS close,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY m.volume) AS volume,
       count(*)::integer                                     AS agreeing,
       max(md.sources)::integer                              AS sources,
       array_agg(m.source ORDER BY m.source)                 AS agreeing_sources
  FROM (SELECT i.instrument, b.interval, b.time, b.currency, b.source, b.open, b.high, b.low, b.close, b.volume,
               i.close_tolerance_bps
          FROM market.instruments i
          JOIN market.bars b ON b.source = i.source AND b.symbol = i.symbol) m
  JOIN (SELECT i.instrument, b.interval, b.time, b.currency,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY b.close) AS median_close,
               count(*) AS sources
          FROM market.instruments i
          JOIN market.bars b ON b.source = i.source AND b.symbol = i.symbol
         GROUP BY i.instrument, b.interval, b.time, b.currency) md
    ON md.instrument = m.instrument AND md.interval = m.interval AND md.time = m.time
   AND md.currency IS NOT DISTINCT FROM m.currency
 WHERE abs(m.close - md.median_close) <= md.median_close * m.close_tolerance_bps / 10000.0
 GROUP BY m.instrument, m.interval, m.time, m.currency;

COMMENT ON VIEW market.bars_consensus IS
    'One series per instrument (market.instruments): per bar, the median OHLCV of the sources whose close lies within '
    'the instrument''s tolerance of the median close of all sources having the bar; as traded, bar open time UTC';
