-- 0004: least-privilege group roles for the functions.
--
--   exam_results_writer  SELECT/INSERT/UPDATE/DELETE on student_results and its
--                        partitions (present and future), EXECUTE on
--                        ensure_exam_year_partition; nothing else. The write
--                        functions' login role exam_app is a member.
--   exam_results_reader  SELECT on the same tables only. The read functions'
--                        login role exam_reader is a member (on the replica
--                        and on their primary fallback).
--
-- Both are NOLOGIN; they own nothing, so they can neither DROP, TRUNCATE nor
-- ALTER anything. The tables stay owned by the role that runs the migrations
-- (exam_owner). The login roles are created by CloudNativePG (managed roles)
-- or, on RDS and locally, by sql/migrate.sh when it is given their passwords.
--
-- Roles are cluster-wide: the group roles are created only where missing (a
-- managed-roles operator may have made them already; creating them needs
-- CREATEROLE), and a concurrent creator from another database is not an error.
-- Idempotent: every statement can run again.
BEGIN;

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['exam_results_writer', 'exam_results_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            END;
        END IF;
    END LOOP;
END
$$;

-- This database: connect, use the schema; no CREATE anywhere.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO exam_results_writer, exam_results_reader', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO exam_results_writer, exam_results_reader;

-- The results table and every present partition (reads and writes through
-- the parent are checked on the parent; a partition named directly, as
-- operators and the replica-lag checks do, is checked on itself).
GRANT SELECT, INSERT, UPDATE, DELETE ON student_results TO exam_results_writer;
GRANT SELECT ON student_results TO exam_results_reader;
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'student_results'::regclass LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO exam_results_writer', part);
        EXECUTE format('GRANT SELECT ON %s TO exam_results_reader', part);
    END LOOP;
END
$$;

-- Future partitions: tables this role (the owner) creates in public later,
-- e.g. ensure_exam_year_partition(2031) from the upkeep job, get the same
-- grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO exam_results_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO exam_results_reader;

-- The partition function creates a table, which only the table's owner may
-- do: it runs as its owner (SECURITY DEFINER, with a fixed search_path) and
-- only the owner and the writers may call it.
ALTER FUNCTION ensure_exam_year_partition(int) SECURITY DEFINER SET search_path = public, pg_temp;
REVOKE ALL ON FUNCTION ensure_exam_year_partition(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_exam_year_partition(int) TO exam_results_writer;

INSERT INTO schema_migrations (version) VALUES ('0004_roles') ON CONFLICT DO NOTHING;

COMMIT;
