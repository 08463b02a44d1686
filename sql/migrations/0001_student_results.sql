-- 0001: the partitioned student_results table.
--
-- Idempotent: safe on a fresh database and on one that already has it.
-- Run with: psql -v ON_ERROR_STOP=1 -f sql/migrations/0001_student_results.sql
--
-- PostgreSQL cannot enforce a primary key on a partitioned table unless the
-- key includes the partition key, so the key is (exam_year, roll_number):
-- a roll number is unique within one exam year (docs/database.md).
BEGIN;

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS student_results (
    roll_number BIGINT NOT NULL,
    marks       INT    NOT NULL,
    exam_year   INT    NOT NULL,
    CONSTRAINT student_results_pkey PRIMARY KEY (exam_year, roll_number),
    -- These mirror the API's validation (functions/exam-results/src/model.rs).
    CONSTRAINT student_results_marks_range CHECK (marks BETWEEN 0 AND 100),
    CONSTRAINT student_results_roll_number_range CHECK (roll_number BETWEEN 1 AND 999999999999),
    CONSTRAINT student_results_exam_year_range CHECK (exam_year BETWEEN 2000 AND 2100)
) PARTITION BY LIST (exam_year);

COMMENT ON TABLE student_results IS
    'One row per student per exam year; LIST-partitioned by exam_year, one partition per year.';

INSERT INTO schema_migrations (version) VALUES ('0001_student_results') ON CONFLICT DO NOTHING;

COMMIT;
