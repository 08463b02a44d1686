-- 0008: no transaction outlives its client by more than 10 seconds.
--
-- When a pooler dies (a PgBouncer pod killed, a node lost) in the middle of
-- a transaction, PostgreSQL does not notice until it next writes to that
-- connection: the backend stays "idle in transaction", keeping its row locks
-- and the transaction-scoped advisory lock of an idempotency key, so every
-- retry of that write would answer 409 idempotency_key_in_progress until the
-- connection finally dies. The functions never leave a transaction idle
-- (each is a few statements sent back to back; a batch load streams its
-- COPY, which is active, not idle), so 10 s of idleness inside a transaction
-- is always such an orphan. Applies to the database, for every role's new
-- sessions.
BEGIN;

DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L', current_database(), '10s');
END
$$;

INSERT INTO schema_migrations (version) VALUES ('0008_idle_transactions') ON CONFLICT DO NOTHING;

COMMIT;
