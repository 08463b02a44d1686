-- 0002: partition upkeep, and the partitions for the supported years.
--
-- ensure_exam_year_partition(year) creates student_results_<year> if it does
-- not exist and returns its name; calling it again changes nothing. Operators
-- call it for next year before results day (make partitions YEAR=...).
BEGIN;

CREATE OR REPLACE FUNCTION ensure_exam_year_partition(year int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := format('student_results_%s', year);
BEGIN
    IF year < 2000 OR year > 2100 THEN
        RAISE EXCEPTION 'exam year % is outside 2000..2100', year;
    END IF;
    IF to_regclass(partition_name) IS NULL THEN
        -- Serialise concurrent callers; the second finds the table and returns.
        PERFORM pg_advisory_xact_lock(hashtext('ensure_exam_year_partition'), year);
        IF to_regclass(partition_name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF student_results FOR VALUES IN (%s)', partition_name, year);
        END IF;
    END IF;
    RETURN partition_name;
END;
$$;

COMMENT ON FUNCTION ensure_exam_year_partition(int) IS
    'Creates the student_results partition for one exam year if missing; idempotent.';

-- Supported years at install time: 2018 through 2028. Later years are added
-- by the upkeep job (ensure_exam_year_partition(next year)).
SELECT ensure_exam_year_partition(year) FROM generate_series(2018, 2028) AS year;

INSERT INTO schema_migrations (version) VALUES ('0002_partitions') ON CONFLICT DO NOTHING;

COMMIT;
