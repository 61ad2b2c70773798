-- Prices on one basis (market_ingest.actions): bars stored as traded, corporate actions beside
-- them, adjusted series computed on read. Every statement is safe to run again.
--
-- 1. price_basis, the last column of every market.bars_<interval> (BAR_SCHEMA version 2):
--    'as_traded' on every row written from this version on; NULL on rows stored before it, whose
--    prices are on their vendor's basis at ingestion (Yahoo's: adjusted for every split up to
--    ingested_at; the other sources': as traded) until market.rebase_bars converts them (the
--    market_setup DAG's rebase_bars task). A nullable column without a default is a catalog
--    change: no row is rewritten, on TimescaleDB's columnstore chunks neither. The rollups of V008
--    name their columns and are not touched. market.bars is redefined so that its columns stay
--    BAR_SCHEMA's; market_reader keeps its grant on it (V012).
-- 2. market.corporate_actions (market_ingest.actions.action_schema) and
--    market.corporate_actions_checked (when each symbol's whole history of actions was last asked),
--    written by the warehouse load from the lake's per-symbol action objects.
-- 3. market.bars_adjusted: a series adjusted for splits (and dividends) on read, as known at a time.
-- 4. market.rebase_bars: one series' rows stored before this version, converted to as traded.
DO $$
DECLARE
    bar_table text;
BEGIN
    FOREACH bar_table IN ARRAY ARRAY['bars_1m', 'bars_5m', 'bars_15m', 'bars_30m', 'bars_1h', 'bars_1d', 'bars_1wk', 'bars_1mo'] LOOP
        EXECUTE format('ALTER TABLE market.%I ADD COLUMN IF NOT EXISTS price_basis text', bar_table);
        EXECUTE format('ALTER TABLE market.%I DROP CONSTRAINT IF EXISTS %I', bar_table, bar_table || '_price_basis');
        EXECUTE format('ALTER TABLE market.%I ADD CONSTRAINT %I CHECK (price_basis = %L)',
                       bar_table, bar_table || '_price_basis', 'as_traded');
        EXECUTE format('COMMENT ON COLUMN market.%I.price_basis IS %L', bar_table,
                       'as_traded: open, high, low, close, volume and dividend as printed on the bar''s day. NULL: stored '
                       'before schema 2, on the vendor''s basis at ingested_at (Yahoo: adjusted for every split up to it), '
                       'until market.rebase_bars converts the row');
    END LOOP;
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
    'Every bar (market_ingest.schema.BAR_SCHEMA), as traded, one table per interval underneath: market.bars_<interval>. '
    'Adjusted prices: market.bars_adjusted';

CREATE TABLE IF NOT EXISTS market.corporate_actions (
    source        text             NOT NULL,
    symbol        text             NOT NULL,
    ex_date       date             NOT NULL,
    kind          text             NOT NULL,
    ratio         double precision CHECK (ratio > 0),
    amount        double precision,
    currency      text,
    first_seen    timestamptz      NOT NULL,
    extracted_at  timestamptz      NOT NULL,
    CONSTRAINT corporate_actions_pkey PRIMARY KEY (source, symbol, ex_date, kind)
);

COMMENT ON TABLE market.corporate_actions IS
    'Splits, dividends and capital gains as each vendor states them (market_ingest.actions.action_schema), '
    'one row per (source, symbol, ex_date, kind); loaded from the lake''s corporate_actions/ objects';
COMMENT ON COLUMN market.corporate_actions.ex_date IS
    'the exchange-local date from which the action applies: bars dated before it are adjusted for it';
COMMENT ON COLUMN market.corporate_actions.kind IS 'split, dividend or capital_gain (whatever else a vendor states is kept, not applied)';
COMMENT ON COLUMN market.corporate_actions.ratio IS
    'splits only: new shares per old share (4:1 -> 4, a 1:10 reverse split -> 0.1); a price before the ex-date / ratio is on today''s basis';
COMMENT ON COLUMN market.corporate_actions.amount IS
    'dividends and capital gains only: cash per share in currency, as traded on the ex-date (not split-adjusted)';
COMMENT ON COLUMN market.corporate_actions.currency IS 'of amount, as the vendor states it (USD, GBp for pence)';
COMMENT ON COLUMN market.corporate_actions.first_seen IS
    'the vendor''s clock (UTC) of the first answer of this product that stated the action: '
    'market.bars_adjusted as of an earlier time does not apply it';
COMMENT ON COLUMN market.corporate_actions.extracted_at IS 'the vendor''s clock (UTC) of the latest answer that stated it';

CREATE TABLE IF NOT EXISTS market.corporate_actions_checked (
    source      text        NOT NULL,
    symbol      text        NOT NULL,
    checked_at  timestamptz NOT NULL,
    CONSTRAINT corporate_actions_checked_pkey PRIMARY KEY (source, symbol)
);

COMMENT ON TABLE market.corporate_actions_checked IS
    'symbols whose whole history of actions the vendor was asked for, and the vendor''s clock (UTC) of the latest '
    'answer: every action it stated up to then is in market.corporate_actions, also when there were none';

-- The product of the non-null values (1 for none): cumulative adjustment factors, multiplied
-- exactly rather than through exp(sum(ln(x))).
CREATE OR REPLACE AGGREGATE market.product(double precision) (SFUNC = float8mul, STYPE = double precision, INITCOND = '1');

-- The exchange-local date of a bar: daily and longer bars are stamped 00:00 UTC of theirs; an
-- intraday bar's is the date of its open time in the exchange's timezone p_tz (IANA).
CREATE OR REPLACE FUNCTION market.bar_date(p_time timestamptz, p_interval text, p_tz text DEFAULT 'America/New_York')
RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (p_time AT TIME ZONE CASE WHEN p_interval IN ('1d', '1wk', '1mo') THEN 'UTC' ELSE p_tz END)::date $$;

-- The adjustment events of a series as known at as_of: actions first seen by then, with an
-- ex-date up to as_of's exchange-local date (in tz). One row per event with its price factor,
-- which every price dated before ex_date is multiplied by:
--   split:    1 / ratio;
--   dividend (adjust 'split_dividend' only; CRSP's convention, as Yahoo's adjclose):
--             1 - amount / prior_close, prior_close being the close of the last 1d bar of the same
--             source and symbol dated before the ex-date (prior_date), divided by the ratios of the
--             splits after prior_date up to the ex-date, so that it is on the amount's basis (as
--             traded on the ex-date). NULL when no such bar is stored within the 10 days before
--             the ex-date (a weekend and a holiday or two; an older close is not the one before
--             the ex-date, and would give a wrong factor): market.bars_adjusted then gives NULL
--             prices before the ex-date, and a NOTICE. prior_basis: that bar's price_basis.
-- Capital gains and other kinds are not applied.
CREATE OR REPLACE FUNCTION market.adjustment_events(
    p_source text, p_symbol text, adjust text DEFAULT 'split', as_of timestamptz DEFAULT now(),
    tz text DEFAULT 'America/New_York'
)
RETURNS TABLE (ex_date date, kind text, factor double precision, ratio double precision, amount double precision,
               prior_close double precision, prior_date date, prior_basis text)
LANGUAGE sql STABLE
AS $$
    WITH known AS (
        SELECT a.ex_date, a.kind, a.ratio, a.amount
        FROM market.corporate_actions a
        WHERE a.source = p_source AND a.symbol = p_symbol AND a.first_seen <= as_of
          AND a.ex_date <= (as_of AT TIME ZONE tz)::date
          AND ((a.kind = 'split' AND a.ratio IS NOT NULL) OR (a.kind = 'dividend' AND a.amount IS NOT NULL))
    )
    SELECT k.ex_date, k.kind, 1.0 / k.ratio, k.ratio, NULL::double precision, NULL::double precision, NULL::date, NULL::text
    FROM known k
    WHERE k.kind = 'split'
    UNION ALL
    SELECT d.ex_date, d.kind, 1.0 - d.amount / (p.close / s.ratios), NULL, d.amount, p.close / s.ratios, p.day, p.price_basis
    FROM known d
    LEFT JOIN LATERAL (
        SELECT b.close, (b.time AT TIME ZONE 'UTC')::date AS day, b.price_basis
        FROM market.bars_1d b
        WHERE b.source = p_source AND b.symbol = p_symbol AND b.time < (d.ex_date::timestamp AT TIME ZONE 'UTC')
          AND b.time >= ((d.ex_date - 10)::timestamp AT TIME ZONE 'UTC')
        ORDER BY b.time DESC
        LIMIT 1
    ) p ON true
    LEFT JOIN LATERAL (
        SELECT market.product(k.ratio) AS ratios FROM known k WHERE k.kind = 'split' AND k.ex_date > p.day AND k.ex_date <= d.ex_date
    ) s ON true
    WHERE adjust = 'split_dividend' AND d.kind = 'dividend'
$$;

-- market.bars_adjusted(source, symbol, interval, from, to, adjust, as_of, tz): the bars of one
-- series with time in [p_from, p_to), ordered by time, adjusted as someone would have seen them at
-- as_of (point in time: only actions first seen by then, with an ex-date up to its local date).
--
--   adjust 'split':          open, high, low, close, vwap and dividend times the product of
--                            1 / ratio over the splits with ex-date after the bar's date; volume
--                            divided by it (shares of today's size).
--   adjust 'split_dividend': prices also times the product of (1 - amount / prior close) over
--                            the dividends with ex-date after the bar's date (CRSP; see
--                            market.adjustment_events); volume adjusted for splits only. A dividend
--                            whose prior close is not stored (no 1d bar of the series in the 10
--                            days before its ex-date) cannot be applied: the prices of the bars
--                            before it are NULL, never silently mis-adjusted, and a NOTICE names it.
--
-- The bar's date is market.bar_date(time, interval, tz): tz, the exchange's timezone, dates
-- intraday bars (America/New_York by default, right for US listings) and as_of. adj_close,
-- trade_count, split_ratio, currency and ingested_at come as stored; price_basis says what the
-- row's prices are: 'split_adjusted' or 'split_dividend_adjusted'.
--
-- Raises (SQLSTATE 55000, object_not_in_prerequisite_state) when the range holds rows stored before
-- price_basis existed (NULL: a Yahoo row's prices are adjusted as of its ingestion, not traded), or
-- a dividend's prior close is such a row, naming the series: trigger market_setup to convert them.
-- Raises 22023 (invalid_parameter_value) for an interval or adjust it does not know.
CREATE OR REPLACE FUNCTION market.bars_adjusted(
    p_source text, p_symbol text, p_interval text, p_from timestamptz, p_to timestamptz,
    adjust text DEFAULT 'split', as_of timestamptz DEFAULT now(), tz text DEFAULT 'America/New_York'
)
RETURNS SETOF market.bars
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    v_legacy bigint;
    v_first timestamptz;
    v_event record;
BEGIN
    IF p_interval IS NULL OR p_interval NOT IN ('1m', '5m', '15m', '30m', '1h', '1d', '1wk', '1mo') THEN
        RAISE EXCEPTION 'market.bars_adjusted(%, %): interval % is not one of 1m 5m 15m 30m 1h 1d 1wk 1mo', p_source, p_symbol, p_interval
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF adjust IS NULL OR adjust NOT IN ('split', 'split_dividend') THEN
        RAISE EXCEPTION 'market.bars_adjusted(%, %, %): adjust % is not split or split_dividend', p_source, p_symbol, p_interval, adjust
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'market.bars_adjusted(%, %, %): as_of is null', p_source, p_symbol, p_interval
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('SELECT count(*) FILTER (WHERE price_basis IS NULL), min(time) FROM market.%I '
                   'WHERE source = $1 AND symbol = $2 AND time >= $3 AND time < $4', 'bars_' || p_interval)
        INTO v_legacy, v_first USING p_source, p_symbol, p_from, p_to;
    IF v_legacy > 0 THEN
        RAISE EXCEPTION '%:% %: % bars between % and % were stored before price_basis (schema 2), on their vendor''s basis at ingestion (Yahoo''s: split-adjusted then), and cannot be adjusted',
            p_source, p_symbol, p_interval, v_legacy, p_from, p_to
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'trigger the DAG market_setup: its rebase_bars task converts them to as traded (docs/operations.md, Upgrading to as-traded prices)';
    END IF;
    IF v_first IS NULL THEN
        RETURN;
    END IF;
    FOR v_event IN
        SELECT * FROM market.adjustment_events(p_source, p_symbol, adjust, as_of, tz) e
        WHERE e.kind = 'dividend' AND e.ex_date > market.bar_date(v_first, p_interval, tz)
          AND (e.prior_close IS NULL OR e.prior_basis IS NULL)
        ORDER BY e.ex_date
    LOOP
        IF v_event.prior_close IS NOT NULL THEN
            RAISE EXCEPTION '%:% 1d: the close of % (before the dividend of %) was stored before price_basis (schema 2) and cannot be used',
                p_source, p_symbol, v_event.prior_date, v_event.ex_date
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'trigger the DAG market_setup: its rebase_bars task converts it to as traded (docs/operations.md, Upgrading to as-traded prices)';
        END IF;
        RAISE NOTICE '%:%: the dividend of % (% per share) cannot be applied: no 1d bar of the series is stored in the 10 days before its ex-date (the close it is measured against), so prices before it are NULL',
            p_source, p_symbol, v_event.ex_date, v_event.amount;
    END LOOP;
    RETURN QUERY EXECUTE format($q$
        WITH events AS (
            SELECT * FROM market.adjustment_events($1, $2, $5, $6, $7)
        ), steps AS (  -- per ex-date: the factors of the events on or after it
            SELECT e.ex_date,
                   CASE WHEN bool_or(e.factor IS NULL) OVER w THEN NULL ELSE market.product(e.factor) OVER w END AS price,
                   market.product(e.ratio) OVER w AS split
            FROM events e
            WINDOW w AS (ORDER BY e.ex_date DESC)
        )
        SELECT b.time, b.source, b.symbol, b.interval,
               b.open * f.price, b.high * f.price, b.low * f.price, b.close * f.price, b.volume * f.split,
               b.adj_close, b.vwap * f.price, b.trade_count, b.dividend * f.price, b.split_ratio, b.currency,
               b.ingested_at, $8
        FROM market.%I b
        LEFT JOIN LATERAL (  -- the first ex-date after the bar's date: its factors are the bar's
            SELECT true AS found, s.price, s.split FROM steps s WHERE s.ex_date > market.bar_date(b.time, b.interval, $7)
            ORDER BY s.ex_date LIMIT 1
        ) st ON true
        CROSS JOIN LATERAL (
            SELECT CASE WHEN st.found THEN st.price ELSE 1.0 END AS price, CASE WHEN st.found THEN st.split ELSE 1.0 END AS split
        ) f
        WHERE b.source = $1 AND b.symbol = $2 AND b.time >= $3 AND b.time < $4
        ORDER BY b.time
    $q$, 'bars_' || p_interval)
    USING p_source, p_symbol, p_from, p_to, adjust, as_of, tz,
          CASE adjust WHEN 'split' THEN 'split_adjusted' ELSE 'split_dividend_adjusted' END;
END
$fn$;

-- market.rebase_bars(interval, source, symbol, split_adjusted, tz): converts the rows of one series
-- stored before price_basis existed (NULL) to as traded, and returns how many it converted.
--
--   split_adjusted false (sources whose vendor sent traded prices: Alpha Vantage, ccxt):
--     price_basis = 'as_traded', prices unchanged.
--   split_adjusted true (Yahoo, whose chart prices were adjusted for every split up to the answer):
--     open, high, low, close, vwap and dividend times the product of the ratios of the splits in
--     market.corporate_actions with (the bar's date) < ex_date <= (ingested_at's local date), volume
--     divided by it, price_basis = 'as_traded'; adj_close stays as Yahoo stated it. Only rows whose
--     symbol's actions were asked on or after their ingestion's local date
--     (market.corporate_actions_checked) are converted: before that, the splits Yahoo had applied to
--     them are not all known, and the rows stay NULL (market.bars_adjusted refuses them).
--
-- Dates in p_tz, the exchange's timezone (America/New_York by default). A converted row is not
-- NULL any more: calling it again converts nothing and returns 0.
CREATE OR REPLACE FUNCTION market.rebase_bars(
    p_interval text, p_source text, p_symbol text, p_split_adjusted boolean, p_tz text DEFAULT 'America/New_York'
)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_rows bigint;
BEGIN
    IF p_interval IS NULL OR p_interval NOT IN ('1m', '5m', '15m', '30m', '1h', '1d', '1wk', '1mo') THEN
        RAISE EXCEPTION 'market.rebase_bars(%, %): interval % is not one of 1m 5m 15m 30m 1h 1d 1wk 1mo', p_source, p_symbol, p_interval
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT p_split_adjusted THEN
        EXECUTE format('UPDATE market.%I SET price_basis = %L WHERE source = $1 AND symbol = $2 AND price_basis IS NULL',
                       'bars_' || p_interval, 'as_traded')
            USING p_source, p_symbol;
    ELSE
        EXECUTE format($q$
            UPDATE market.%I b
            SET (open, high, low, close, volume, vwap, dividend, price_basis) = (
                SELECT b.open * f.f, b.high * f.f, b.low * f.f, b.close * f.f, b.volume / f.f, b.vwap * f.f,
                       b.dividend * f.f, 'as_traded'
                FROM (
                    SELECT market.product(a.ratio) AS f
                    FROM market.corporate_actions a
                    WHERE a.source = b.source AND a.symbol = b.symbol AND a.kind = 'split' AND a.ratio IS NOT NULL
                      AND a.ex_date > market.bar_date(b.time, b.interval, $3)
                      AND a.ex_date <= (b.ingested_at AT TIME ZONE $3)::date
                ) f
            )
            WHERE b.source = $1 AND b.symbol = $2 AND b.price_basis IS NULL
              AND EXISTS (
                  SELECT 1 FROM market.corporate_actions_checked c
                  WHERE c.source = b.source AND c.symbol = b.symbol
                    AND (c.checked_at AT TIME ZONE $3)::date >= (b.ingested_at AT TIME ZONE $3)::date
              )
        $q$, 'bars_' || p_interval)
            USING p_source, p_symbol, p_tz;
    END IF;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$fn$;

GRANT SELECT ON market.corporate_actions, market.corporate_actions_checked TO market_reader;
GRANT EXECUTE ON FUNCTION market.bar_date(timestamptz, text, text),
    market.adjustment_events(text, text, text, timestamptz, text),
    market.bars_adjusted(text, text, text, timestamptz, timestamptz, text, timestamptz, text) TO market_reader;
GRANT EXECUTE ON FUNCTION market.product(double precision) TO market_reader;
