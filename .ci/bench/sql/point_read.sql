-- pgbench: the point read get-result sends, for a uniformly random existing
-- roll number (pgbench -D year=.. -D roll_min=.. -D roll_max=..).
-- With -M extended pgbench sends it as an unnamed statement with parameters,
-- like the function (tokio-postgres query_typed).
\set roll random(:roll_min, :roll_max)
SELECT roll_number, exam_year, marks FROM student_results WHERE exam_year = :year AND roll_number = :roll;
