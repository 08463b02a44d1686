-- Seeds student_results with random marks, set-based (one INSERT ... SELECT
-- over generate_series, no client loop). Idempotent: existing keys are kept.
--
--   psql -v ON_ERROR_STOP=1 -v rows=1000000 -v first_year=2021 -v years=5 -f sql/seed.sql
--
-- Rows are spread evenly over `years` exam years starting at `first_year`;
-- within a year, roll numbers run from 100000001 upwards.
\if :{?rows}
\else
  \set rows 1000000
\endif
\if :{?first_year}
\else
  \set first_year 2021
\endif
\if :{?years}
\else
  \set years 5
\endif

-- A bulk load is not a request: lift any role-level statement timeout.
SET statement_timeout = 0;

\timing on
INSERT INTO student_results (roll_number, exam_year, marks)
SELECT 100000000 + ((n - 1) / :years) + 1 AS roll_number,
       :first_year + ((n - 1) % :years)   AS exam_year,
       floor(random() * 101)::int          AS marks
FROM generate_series(1, :rows) AS n
ON CONFLICT DO NOTHING;
\timing off

ANALYZE student_results;
