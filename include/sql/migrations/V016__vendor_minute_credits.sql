-- Per-minute credit budgets shared by every task and DAG on one vendor key (Twelve Data: 8 API
-- credits per minute on the Basic plan). One row per key and minute (the workers' wall clock,
-- which NTP keeps within a second of the vendor's, truncated to the minute); a task takes credits with an atomic upsert that refuses past the limit, and
-- waits for the next minute when refused. Rows older than a day are deleted as new ones come.
CREATE TABLE IF NOT EXISTS market.vendor_minute_credits (
    vendor   text        NOT NULL,
    minute   timestamptz NOT NULL,
    credits  integer     NOT NULL DEFAULT 0,
    CONSTRAINT vendor_minute_credits_pkey PRIMARY KEY (vendor, minute)
);
