-- Symbols a run could not request because the vendor's daily quota was spent. The next run of the
-- same (source, interval) widens those symbols' windows back to window_start, and deletes the rows
-- once the symbol was fetched (bars or a confirmed empty window).
CREATE TABLE IF NOT EXISTS market.deferred_symbols (
    source        text        NOT NULL,
    interval      text        NOT NULL,
    symbol        text        NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    reason        text        NOT NULL,
    deferred_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deferred_symbols_pkey PRIMARY KEY (source, interval, symbol, window_start)
);
