-- 0006: idempotency keys for the write functions.
--
-- A write sent with an `Idempotency-Key` header records its response here,
-- in the same transaction as the write itself: either both are committed or
-- neither is. A retry with the same key and the same request gets the
-- recorded response back without the write running again; the same key with
-- another request is refused (422). `request` is a SHA-256 over the request
-- (method, path, canonical body, conditions), never the body itself.
--
-- A key lives until `expires_at` (the function's IDEMPOTENCY_KEY_TTL_SECONDS,
-- default 24 h, from the moment of the write); an expired key counts as
-- unused, and purge_expired_idempotency_keys() (run by the partition-upkeep
-- job) deletes it.
--
-- Idempotent: IF NOT EXISTS / CREATE OR REPLACE; the grant runs only where
-- the group role `exam_results_writer` exists.
BEGIN;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    -- Its length and characters are checked by the functions (http.rs).
    idempotency_key text PRIMARY KEY,
    request text NOT NULL,
    status smallint NOT NULL CHECK (status BETWEEN 200 AND 299),
    headers jsonb NOT NULL,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- Deletes the expired keys; returns how many.
CREATE OR REPLACE FUNCTION purge_expired_idempotency_keys() RETURNS bigint
LANGUAGE sql AS $$
    WITH purged AS (DELETE FROM idempotency_keys WHERE expires_at <= now() RETURNING 1)
    SELECT count(*) FROM purged
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'exam_results_writer') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO exam_results_writer;
        GRANT EXECUTE ON FUNCTION purge_expired_idempotency_keys() TO exam_results_writer;
    END IF;
END
$$;

INSERT INTO schema_migrations (version) VALUES ('0006_idempotency_keys') ON CONFLICT DO NOTHING;

COMMIT;
