-- market.float8_stats(x): the state PostgreSQL's avg(float8) and stddev_samp(float8) share, as an
-- aggregate of its own: {N, Sx, Sxx} (float8_accum, Youngs-Cramer; NULLs skipped). The anomaly
-- checks (market_ingest.anomalies) read the trailing mean, standard deviation and count of a
-- series from one such state instead of three aggregates that each re-read the trailing window
-- for every bar: avg = Sx / N (N > 0), stddev_samp = sqrt(Sxx / (N - 1)) (N > 1), count = N,
-- what float8_avg and float8_stddev_samp compute from the same state.
CREATE OR REPLACE AGGREGATE market.float8_stats(float8) (
    SFUNC = float8_accum,
    STYPE = float8[],
    INITCOND = '{0,0,0}'
);
