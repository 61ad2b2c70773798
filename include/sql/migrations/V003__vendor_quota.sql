-- Daily request budgets shared by every task and DAG of a vendor (Alpha Vantage: 25 a day on a
-- free key). One row per vendor and UTC day; exhausted_at is set when the vendor says the day's
-- quota is spent, after which no task calls it again until the next UTC day.
CREATE TABLE IF NOT EXISTS market.vendor_quota (
    vendor        text        NOT NULL,
    day           date        NOT NULL,
    requests      integer     NOT NULL DEFAULT 0,
    exhausted_at  timestamptz,
    CONSTRAINT vendor_quota_pkey PRIMARY KEY (vendor, day)
);
