"""Migrating a non-partitioned student_results with data to the partitioned layout."""

import subprocess
import time

from conftest import OWNER_ROLE, census

LEGACY = """
CREATE TABLE student_results (
    roll_number bigint NOT NULL,
    marks       int    NOT NULL,
    exam_year   int    NOT NULL,
    PRIMARY KEY (roll_number, exam_year)
);
CREATE INDEX student_results_marks_idx ON student_results (marks);
INSERT INTO student_results
SELECT 100000000 + n / 4 + 1, n % 101, 2019 + n % 4 FROM generate_series(0, 19999) n;
"""


def legacy_census(server, database):
    rows = server.query(database, """
        SELECT exam_year, count(*), md5(string_agg(roll_number || ',' || marks, ';' ORDER BY roll_number))
        FROM student_results GROUP BY exam_year ORDER BY exam_year""")
    return {f"student_results_{y}": (int(n), h) for y, n, h in rows}


def partitioned_census(server, database):
    rows = server.query(database, """
        SELECT c.relname, count(*), md5(string_agg(r.roll_number || ',' || r.marks, ';' ORDER BY r.roll_number))
        FROM student_results r JOIN pg_class c ON c.oid = r.tableoid GROUP BY c.relname ORDER BY 1""")
    return {name: (int(n), h) for name, n, h in rows}


def relkind(server, database, name="student_results"):
    return server.scalar(database, f"SELECT relkind FROM pg_class WHERE oid = to_regclass('{name}')")


def make_legacy(server, database):
    server.psql(database, f"SET ROLE {OWNER_ROLE};" + LEGACY)


def test_migration_moves_every_row_into_year_partitions_and_keeps_the_old_table(server, empty_database, run_op):
    db = empty_database
    make_legacy(server, db)
    server.psql(db, "CREATE ROLE results_reader; GRANT SELECT ON student_results TO results_reader")
    before = legacy_census(server, db)
    assert sum(n for n, _ in before.values()) == 20000

    result = run_op("migrate-to-partitioned.sh", database=db)

    assert result.returncode == 0, result.stderr + result.stdout
    assert "copied 20000 rows; per-year counts and checksums match" in result.stdout
    assert relkind(server, db) == "p"
    assert partitioned_census(server, db) == before
    # The old table is kept, untouched, under a new name; its index names moved with it.
    assert relkind(server, db, "student_results_unpartitioned") == "r"
    assert server.scalar(db, "SELECT count(*) FROM student_results_unpartitioned") == "20000"
    assert server.scalar(db, "SELECT to_regclass('student_results_unpartitioned_pkey') IS NOT NULL") == "t"
    # The new table has the layout of sql/migrations: PK, checks, upkeep function, privileges, owner.
    pk = server.scalar(db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'student_results_pkey' "
                           "AND conrelid = 'student_results'::regclass")
    assert pk == "PRIMARY KEY (exam_year, roll_number)"
    assert server.psql(db, "INSERT INTO student_results VALUES (1, 101, 2020)", check=False).returncode != 0
    assert server.scalar(db, "SELECT ensure_exam_year_partition(2030)") == "student_results_2030"
    assert server.scalar(db, "SELECT has_table_privilege('results_reader', 'student_results', 'SELECT')") == "t"
    assert server.scalar(db, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'student_results'::regclass") \
        == OWNER_ROLE
    assert "student_results_2028" in result.stdout  # migrations added the supported years
    server.psql(db, "DROP TABLE student_results_unpartitioned; DROP OWNED BY results_reader; DROP ROLE results_reader")


def test_running_the_migration_again_changes_nothing(server, empty_database, run_op):
    db = empty_database
    make_legacy(server, db)
    assert run_op("migrate-to-partitioned.sh", "--drop-old", database=db).returncode == 0
    assert relkind(server, db, "student_results_unpartitioned") == ""
    after_first = census(server, db)

    again = run_op("migrate-to-partitioned.sh", database=db)
    assert again.returncode == 0, again.stderr
    assert "already partitioned: nothing to do" in again.stdout
    assert census(server, db) == after_first


def test_a_row_that_breaks_a_constraint_aborts_the_migration_and_changes_nothing(server, empty_database, run_op):
    db = empty_database
    make_legacy(server, db)
    server.psql(db, "INSERT INTO student_results VALUES (777, 150, 2020)")  # marks out of range
    before = legacy_census(server, db)

    result = run_op("migrate-to-partitioned.sh", database=db)

    assert result.returncode != 0
    assert "student_results_marks_range" in result.stderr
    assert relkind(server, db) == "r"
    assert legacy_census(server, db) == before
    leftovers = server.scalar(db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'student\\_results\\_2%' "
                                  "OR relname = 'student_results_partitioned'")
    assert leftovers == "0"


def test_duplicate_keys_in_the_old_table_abort_the_migration(server, empty_database, run_op):
    db = empty_database
    server.psql(db, f"SET ROLE {OWNER_ROLE}; CREATE TABLE student_results (roll_number bigint, marks int, exam_year int);"
                    "INSERT INTO student_results VALUES (5, 10, 2020), (5, 11, 2020), (6, 12, 2021)")
    result = run_op("migrate-to-partitioned.sh", database=db)
    assert result.returncode != 0
    assert "duplicate key" in result.stderr
    assert relkind(server, db) == "r"
    assert server.scalar(db, "SELECT count(*) FROM student_results") == "3"


def test_the_migration_gives_up_after_lock_timeout_instead_of_queueing_behind_a_writer(server, empty_database, run_op):
    db = empty_database
    make_legacy(server, db)
    # An open write transaction holds ROW EXCLUSIVE, which conflicts with SHARE.
    writer = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env(db))
    try:
        writer.stdin.write("BEGIN; INSERT INTO student_results VALUES (42, 42, 2020); SELECT pg_sleep(60);\n")
        writer.stdin.flush()
        for _ in range(50):
            if server.scalar(db, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                 "WHERE c.relname = 'student_results' AND l.mode = 'RowExclusiveLock'") != "0":
                break
            time.sleep(0.1)
        started = time.monotonic()
        result = run_op("migrate-to-partitioned.sh", "--lock-timeout", "1s", database=db)
        took = time.monotonic() - started
    finally:
        writer.kill()
        writer.wait()
    assert result.returncode != 0
    assert "lock timeout" in result.stderr
    assert took < 15
    assert relkind(server, db) == "r"


def test_an_empty_database_is_left_for_the_migrations(server, empty_database, run_op):
    result = run_op("migrate-to-partitioned.sh", database=empty_database)
    assert result.returncode == 0, result.stderr
    assert "nothing to migrate" in result.stdout
    assert relkind(server, empty_database) == "p"
