-- pgbench: one keyset page as list-results sends it (limit + 1 rows), for a
-- random page of the year (pgbench -D year=.. -D roll_min=.. -D pages=.. -D lim=101).
\set after :roll_min - 1 + random(0, :pages - 1) * 100
SELECT roll_number, exam_year, marks FROM student_results WHERE exam_year = :year AND roll_number > :after ORDER BY roll_number LIMIT :lim;
