-- 0003: ensure_exam_year_partition(year) safe under concurrent callers.
--
-- 0002's version re-checks with to_regclass() after taking its advisory lock,
-- but an advisory lock does not make the backend process catalog
-- invalidations, so a caller that waited on the lock can still see its own
-- cached "no such table" and then fail with `relation "student_results_Y"
-- already exists` (reproduced by sql/tests/test_partitions.py with four
-- concurrent `partitions.sh ensure`). This version re-checks pg_class with a
-- fresh statement snapshot after the lock, and treats "already exists" from
-- a racing creator as success. Same signature and result as 0002.
--
-- Idempotent (CREATE OR REPLACE); 0001 and 0002 are unchanged.
BEGIN;

CREATE OR REPLACE FUNCTION ensure_exam_year_partition(year int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := format('student_results_%s', year);
BEGIN
    IF year < 2000 OR year > 2100 THEN
        RAISE EXCEPTION 'exam year % is outside 2000..2100', year;
    END IF;
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN partition_name;
    END IF;
    -- Serialise concurrent callers for this year.
    PERFORM pg_advisory_xact_lock(hashtext('ensure_exam_year_partition'), year);
    -- A catalog read with this statement's snapshot sees a partition that a
    -- caller we waited for has just committed.
    IF EXISTS (SELECT 1 FROM pg_class c
               WHERE c.relname = partition_name
                 AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())) THEN
        RETURN partition_name;
    END IF;
    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF student_results FOR VALUES IN (%s)', partition_name, year);
    EXCEPTION WHEN duplicate_table OR unique_violation THEN
        -- Created concurrently (e.g. by a caller in a REPEATABLE READ
        -- transaction whose snapshot predates it): the partition exists.
        NULL;
    END;
    RETURN partition_name;
END;
$$;

COMMENT ON FUNCTION ensure_exam_year_partition(int) IS
    'Creates the student_results partition for one exam year if missing; idempotent and safe under concurrent callers.';

INSERT INTO schema_migrations (version) VALUES ('0003_ensure_partition_concurrency') ON CONFLICT DO NOTHING;

COMMIT;
