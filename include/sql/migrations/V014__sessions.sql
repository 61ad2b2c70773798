-- Market sessions (market_ingest.sessions): what the coverage ledger counts expected bars against,
-- in SQL, joined with the bars a load stored (one statement per load, market_ingest.coverage.record).
--
--   market       a calendar name of market_ingest.calendars: exchange_calendars' XNYS, XLON, CMES,
--                ..., '24/7' (crypto: every UTC day from 00:00 to 24:00) or '24/5' (foreign
--                exchange: New York 17:00 to 17:00, market_ingest.forex_calendar)
--   day          the session's date (its label); a daily bar of it is stamped 00:00 UTC of that date
--   open, close  the regular session's instants, UTC; close is the early close on such a day
--   early_close  the market closed early that day (exchange_calendars' early_closes)
--
-- Filled by the loads, lazily and idempotently, a (market, year) at a time, from exchange_calendars
-- (market.session_years says which are filled and by which version of exchange_calendars: a newer
-- version, whose rules may add a holiday or an unscheduled closure, fills the year again).
CREATE TABLE IF NOT EXISTS market.sessions (
    market       text        NOT NULL,
    day          date        NOT NULL,
    open         timestamptz NOT NULL,
    close        timestamptz NOT NULL,
    early_close  boolean     NOT NULL DEFAULT false,
    CONSTRAINT sessions_pkey PRIMARY KEY (market, day),
    CONSTRAINT sessions_range CHECK (open < close)
);

CREATE TABLE IF NOT EXISTS market.session_years (
    market     text        NOT NULL,
    year       integer     NOT NULL,
    calendars  text        NOT NULL,
    filled_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT session_years_pkey PRIMARY KEY (market, year)
);

COMMENT ON TABLE market.sessions IS
    'trading sessions per market and date from exchange_calendars (24/7 and 24/5 included): open and close in UTC';
COMMENT ON TABLE market.session_years IS
    'the (market, year)s whose sessions market.sessions holds, and the exchange_calendars version that computed them';

GRANT SELECT ON market.sessions, market.session_years TO market_reader;
