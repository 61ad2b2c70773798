-- market_reader: a role that may read the market schema and nothing else, for the coverage view
-- (market_ingest.ui, connection timescale.reader_conn_id) and any other reader of the warehouse.
-- NOLOGIN: a deployment makes a login a member of it (README, Connections):
--     CREATE ROLE market_view LOGIN PASSWORD '...' IN ROLE market_reader;
-- It gets USAGE on schema market and SELECT on every table, view and materialized view in it (the
-- per-interval bar tables, market.bars, the rollups, quotes, the ledger, the flags), and, through
-- default privileges, SELECT on those the migrating role creates in market later. TimescaleDB
-- copies a hypertable's grants to its chunks. No INSERT, UPDATE, DELETE, TRUNCATE or DDL anywhere.
--
-- Roles belong to the whole PostgreSQL cluster: an existing market_reader (another database of the
-- cluster, or one an administrator made) is kept. Creating it needs CREATEROLE; without it this
-- migration fails saying what an administrator runs first.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'market_reader') THEN
        CREATE ROLE market_reader NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object THEN NULL;  -- created meanwhile by a migration of another database
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'role market_reader does not exist and role % may not create it', current_user
            USING HINT = 'an administrator runs CREATE ROLE market_reader NOLOGIN; then trigger market_setup again';
END
$$;

GRANT USAGE ON SCHEMA market TO market_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA market TO market_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA market GRANT SELECT ON TABLES TO market_reader;
