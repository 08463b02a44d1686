-- 0007: publication times, their audit trail, and per-year mark counts.
--
-- Idempotent: safe on a fresh database and on one that already has it.
--
-- publications: a year with a row is public from publish_at on; before it,
-- the read functions answer 404 results_not_published. publish_at =
-- 'infinity' means withdrawn (not public, no time announced). A year without
-- a row is public as soon as its results are written (docs/architecture.md,
-- "Publication").
--
-- publication_audit: one row per change (who as a token fingerprint, never
-- the token; when; old and new value). The runtime roles may only append.
--
-- result_mark_counts: how many results of each year have each mark, kept
-- in step with student_results by a statement trigger in the writing
-- transaction, so a year's statistics are one indexed read of at most 101
-- rows. Writes made straight into a partition (sql/ops/load-csv.sh) bypass
-- the parent's trigger and call refresh_result_mark_counts(year) instead.
BEGIN;

CREATE TABLE IF NOT EXISTS publications (
    exam_year  int         PRIMARY KEY CHECK (exam_year BETWEEN 2000 AND 2100),
    publish_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE publications IS
    'When each exam year''s results become public; publish_at = infinity: withdrawn.';

CREATE TABLE IF NOT EXISTS publication_audit (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    exam_year      int         NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    changed_by     text        NOT NULL CHECK (changed_by ~ '^sha256:[0-9a-f]{16}$'),
    -- NULL: the year had no publication row (public as written).
    old_publish_at timestamptz,
    new_publish_at timestamptz NOT NULL
);

COMMENT ON TABLE publication_audit IS
    'Append-only trail of publication changes; changed_by is a token fingerprint (sha256:<16 hex>).';

-- Append-only for every role, whatever its grants (a later migration that
-- grants the group roles all privileges on all tables cannot undo it): only
-- an owner who drops these triggers can rewrite the trail.
CREATE OR REPLACE FUNCTION publication_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'publication_audit is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE OR REPLACE TRIGGER publication_audit_no_change BEFORE UPDATE OR DELETE ON publication_audit
    FOR EACH ROW EXECUTE FUNCTION publication_audit_append_only();
CREATE OR REPLACE TRIGGER publication_audit_no_truncate BEFORE TRUNCATE ON publication_audit
    FOR EACH STATEMENT EXECUTE FUNCTION publication_audit_append_only();

CREATE TABLE IF NOT EXISTS result_mark_counts (
    exam_year int    NOT NULL,
    marks     int    NOT NULL CHECK (marks BETWEEN 0 AND 100),
    results   bigint NOT NULL,
    PRIMARY KEY (exam_year, marks)
);

COMMENT ON TABLE result_mark_counts IS
    'Results per (exam_year, marks), maintained by triggers on student_results; statistics read it.';

-- Applies one statement's changes to the counts as one upsert of signed
-- deltas, in key order, so concurrent writers take the count rows' locks in
-- the same order. SECURITY DEFINER: the writing role needs no privilege on
-- the counts. (No CHECK on results: a delta row is inserted only where no
-- count exists, which a removed row always has.)
CREATE OR REPLACE FUNCTION result_mark_counts_apply() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO result_mark_counts AS c (exam_year, marks, results)
        SELECT exam_year, marks, count(*) FROM new_rows
        GROUP BY exam_year, marks ORDER BY exam_year, marks
        ON CONFLICT (exam_year, marks) DO UPDATE SET results = c.results + EXCLUDED.results;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO result_mark_counts AS c (exam_year, marks, results)
        SELECT exam_year, marks, -count(*) FROM old_rows
        GROUP BY exam_year, marks ORDER BY exam_year, marks
        ON CONFLICT (exam_year, marks) DO UPDATE SET results = c.results + EXCLUDED.results;
    ELSE
        INSERT INTO result_mark_counts AS c (exam_year, marks, results)
        SELECT exam_year, marks, sum(delta) FROM (
            SELECT exam_year, marks, 1 AS delta FROM new_rows
            UNION ALL
            SELECT exam_year, marks, -1 FROM old_rows
        ) AS changes
        GROUP BY exam_year, marks HAVING sum(delta) <> 0 ORDER BY exam_year, marks
        ON CONFLICT (exam_year, marks) DO UPDATE SET results = c.results + EXCLUDED.results;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER result_mark_counts_insert AFTER INSERT ON student_results
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION result_mark_counts_apply();
CREATE OR REPLACE TRIGGER result_mark_counts_update AFTER UPDATE ON student_results
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION result_mark_counts_apply();
CREATE OR REPLACE TRIGGER result_mark_counts_delete AFTER DELETE ON student_results
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION result_mark_counts_apply();

-- Recomputes one year's counts from its rows (after writes straight into a
-- partition, a detach or a restore). Locks the year's counts while it runs.
CREATE OR REPLACE FUNCTION refresh_result_mark_counts(year int) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    total bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('refresh_result_mark_counts'), year);
    DELETE FROM result_mark_counts WHERE exam_year = year;
    INSERT INTO result_mark_counts (exam_year, marks, results)
    SELECT exam_year, marks, count(*) FROM student_results
    WHERE exam_year = year GROUP BY exam_year, marks;
    SELECT coalesce(sum(results), 0) INTO total FROM result_mark_counts WHERE exam_year = year;
    RETURN total;
END;
$$;

REVOKE ALL ON FUNCTION refresh_result_mark_counts(int) FROM PUBLIC;

-- Counts for the rows that exist already (first run only).
INSERT INTO result_mark_counts (exam_year, marks, results)
SELECT exam_year, marks, count(*) FROM student_results GROUP BY exam_year, marks
ON CONFLICT DO NOTHING;

-- The group roles come from 0004 (docs/database.md); where they do not exist
-- yet this block grants nothing and the migration still applies. Exactly
-- these privileges, whatever default privileges granted before: the writer
-- reads and sets publication times, appends to the trail and recounts a
-- year; the reader reads times and counts; nobody else writes the counts.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'exam_results_writer') THEN
        REVOKE ALL ON publications, publication_audit, result_mark_counts FROM exam_results_writer;
        GRANT SELECT, INSERT, UPDATE ON publications TO exam_results_writer;
        GRANT INSERT ON publication_audit TO exam_results_writer;
        GRANT SELECT ON result_mark_counts TO exam_results_writer;
        GRANT EXECUTE ON FUNCTION refresh_result_mark_counts(int) TO exam_results_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'exam_results_reader') THEN
        REVOKE ALL ON publications, publication_audit, result_mark_counts FROM exam_results_reader;
        GRANT SELECT ON publications, result_mark_counts TO exam_results_reader;
    END IF;
END;
$$;

INSERT INTO schema_migrations (version) VALUES ('0007_publications') ON CONFLICT DO NOTHING;

COMMIT;
