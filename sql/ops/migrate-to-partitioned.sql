-- Migrates an existing, non-partitioned student_results table (with data) to
-- the partitioned layout of sql/migrations/0001, without losing a row.
--
--   psql -v ON_ERROR_STOP=1 -f sql/ops/migrate-to-partitioned.sql
--   psql -v ON_ERROR_STOP=1 -v drop_old=1 -v lock_timeout=30s -f sql/ops/migrate-to-partitioned.sql
--
-- (sql/ops/migrate-to-partitioned.sh runs this, then sql/migrations.)
--
-- Everything happens in ONE transaction; if anything fails (a row breaks a
-- constraint, a duplicate (exam_year, roll_number), a lock cannot be had in
-- time) nothing changes. Locking:
--   1. SHARE lock on the old table while rows are copied: reads go on,
--      writes wait (seconds per million rows, see docs/database.md).
--   2. ACCESS EXCLUSIVE lock only for the final renames (milliseconds):
--      reads wait for that moment.
-- lock_timeout (default 10s) bounds how long either lock may be waited for,
-- so the migration gives up instead of stalling traffic behind it.
--
-- Afterwards: the partitioned table is `student_results`, one partition per
-- exam year found in the data; the old table is kept as
-- `student_results_unpartitioned` (dropped in the same transaction with
-- -v drop_old=1). Running it again on a partitioned table changes nothing.
\set ON_ERROR_STOP 1
\if :{?lock_timeout}
\else
  \set lock_timeout 10s
\endif
\if :{?drop_old}
\else
  \set drop_old 0
\endif
SET statement_timeout = 0;
SET client_min_messages = warning;

SELECT coalesce((SELECT relkind::text FROM pg_class WHERE oid = to_regclass('student_results')), 'missing') AS kind \gset
SELECT :'kind' = 'p' AS already_done, :'kind' = 'missing' AS missing, :'kind' = 'r' AS to_migrate \gset
\if :already_done
  \echo 'student_results is already partitioned: nothing to do'
  \quit
\endif
\if :missing
  \echo 'there is no student_results table: nothing to migrate (apply sql/migrations to create it)'
  \quit
\endif
\if :to_migrate
\else
  \warn 'student_results is not an ordinary table (relkind ' :kind '): refusing to migrate'
  SELECT 1/0 AS refusing;
\endif

BEGIN;
SET LOCAL lock_timeout = :'lock_timeout';

-- 1. Writes wait from here on; reads continue.
LOCK TABLE student_results IN SHARE MODE;
SELECT clock_timestamp() AS t_share \gset

SELECT count(*) AS old_rows FROM student_results \gset
SELECT count(*) AS clashes FROM pg_class
WHERE relname IN ('student_results_partitioned', 'student_results_unpartitioned')
   OR relname IN (SELECT DISTINCT 'student_results_' || exam_year FROM student_results) \gset
SELECT :clashes > 0 AS has_clashes \gset
\if :has_clashes
  \warn 'a table named student_results_partitioned, student_results_unpartitioned or student_results_<year> already exists: rename it first'
  SELECT 1/0 AS refusing;
\endif

-- 2. The partitioned table, exactly as in sql/migrations/0001.
CREATE TABLE student_results_partitioned (
    roll_number BIGINT NOT NULL,
    marks       INT    NOT NULL,
    exam_year   INT    NOT NULL,
    CONSTRAINT student_results_partitioned_pkey PRIMARY KEY (exam_year, roll_number),
    CONSTRAINT student_results_marks_range CHECK (marks BETWEEN 0 AND 100),
    CONSTRAINT student_results_roll_number_range CHECK (roll_number BETWEEN 1 AND 999999999999),
    CONSTRAINT student_results_exam_year_range CHECK (exam_year BETWEEN 2000 AND 2100)
) PARTITION BY LIST (exam_year);

-- 3. One partition per exam year present in the data.
SELECT format('CREATE TABLE %I PARTITION OF student_results_partitioned FOR VALUES IN (%s)',
              'student_results_' || exam_year, exam_year)
FROM (SELECT DISTINCT exam_year FROM student_results WHERE exam_year BETWEEN 2000 AND 2100) years
ORDER BY exam_year \gexec

-- 4. Move the rows (a row that breaks a constraint aborts everything).
INSERT INTO student_results_partitioned (roll_number, marks, exam_year)
SELECT roll_number, marks, exam_year FROM student_results;

-- 5. Prove nothing was lost or changed: per-year count and md5 over all rows.
SELECT (SELECT string_agg(format('%s:%s:%s', exam_year, n, h), ' ' ORDER BY exam_year) FROM (
          SELECT exam_year, count(*) n, md5(string_agg(roll_number || ',' || marks, ';' ORDER BY roll_number)) h
          FROM student_results GROUP BY exam_year) o) AS old_census,
       (SELECT string_agg(format('%s:%s:%s', exam_year, n, h), ' ' ORDER BY exam_year) FROM (
          SELECT exam_year, count(*) n, md5(string_agg(roll_number || ',' || marks, ';' ORDER BY roll_number)) h
          FROM student_results_partitioned GROUP BY exam_year) p) AS new_census \gset
SELECT :'old_census' = :'new_census' AS same \gset
\if :same
  \echo 'copied' :old_rows 'rows; per-year counts and checksums match'
\else
  \warn 'row census differs between the old and the new table: rolling back'
  SELECT 1/0 AS census_mismatch;
\endif

-- 6. Keep the old table's privileges and owner on the new one.
SELECT format('GRANT %s ON student_results_partitioned TO %I', privilege_type, grantee)
FROM information_schema.role_table_grants
WHERE table_schema = current_schema() AND table_name = 'student_results'
  AND grantee <> (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'student_results'::regclass) \gexec
SELECT format('ALTER TABLE %I OWNER TO %I', c.relname, pg_get_userbyid(o.relowner))
FROM pg_class c, pg_class o
WHERE o.oid = 'student_results'::regclass AND c.relowner <> o.relowner
  AND (c.oid = 'student_results_partitioned'::regclass
       OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'student_results_partitioned'::regclass)) \gexec

-- 7. The swap: reads wait only for these renames.
LOCK TABLE student_results IN ACCESS EXCLUSIVE MODE;
SELECT clock_timestamp() AS t_exclusive \gset
ALTER TABLE student_results RENAME TO student_results_unpartitioned;
-- Free the old table's index and constraint names (student_results_pkey, ...).
SELECT format('ALTER INDEX %I RENAME TO %I', i.relname, 'student_results_unpartitioned' || substr(i.relname, 16))
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = 'student_results_unpartitioned'::regclass AND i.relname LIKE 'student\_results\_%' \gexec
ALTER TABLE student_results_partitioned RENAME TO student_results;
ALTER TABLE student_results RENAME CONSTRAINT student_results_partitioned_pkey TO student_results_pkey;

\if :drop_old
  DROP TABLE student_results_unpartitioned;
  \echo 'dropped the old table'
\else
  COMMENT ON TABLE student_results_unpartitioned IS
      'The pre-partitioning student_results, kept by sql/ops/migrate-to-partitioned.sql; drop when no longer needed.';
  \echo 'the old table is kept as student_results_unpartitioned (drop it when no longer needed)'
\endif
COMMENT ON TABLE student_results IS
    'One row per student per exam year; LIST-partitioned by exam_year, one partition per year.';
SELECT format('locks held until commit: writes blocked %s s, reads blocked %s ms',
              round(extract(epoch FROM clock_timestamp() - :'t_share'::timestamptz)::numeric, 2),
              round(extract(epoch FROM clock_timestamp() - :'t_exclusive'::timestamptz)::numeric * 1000, 1)) AS lock_report \gset
COMMIT;
\echo :lock_report
\echo 'student_results is now partitioned by exam_year'
