"""The production roles in the sandbox, through PgBouncer as the functions
connect: the write functions' exam_app can read and write results and nothing
else; the read functions' exam_reader can only read, on the replica's pooler
database and on the primary alike; neither can reach PostgreSQL except through
PgBouncer, nor PgBouncer's console."""

from __future__ import annotations

import subprocess

import pytest

from conftest import APP_ROLE, OWNER_ROLE, READER_ROLE


def as_role(server, database, role, sql, port=None):
    env = server.bouncer_env(database, role)
    if port is not None:
        env["PGPORT"] = str(port)
    return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          env=env, capture_output=True, text=True, timeout=30)


def test_the_write_role_reads_and_writes_results(server, database):
    result = as_role(server, database, APP_ROLE,
                     "INSERT INTO student_results VALUES (1, 50, 2024); "
                     "UPDATE student_results SET marks = 51 WHERE exam_year = 2024 AND roll_number = 1; "
                     "SELECT current_user, marks FROM student_results; "
                     "DELETE FROM student_results WHERE exam_year = 2024 AND roll_number = 1;")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"{APP_ROLE}|51"]


@pytest.mark.parametrize("sql, error", [
    ("DROP TABLE student_results", "must be owner of table student_results"),
    ("DROP TABLE student_results_2024", "must be owner of table student_results_2024"),
    ("TRUNCATE student_results", "permission denied for table student_results"),
    ("ALTER TABLE student_results ADD COLUMN note text", "must be owner of table student_results"),
    ("ALTER TABLE student_results DROP CONSTRAINT student_results_marks_range", "must be owner of table student_results"),
    ("DROP FUNCTION ensure_exam_year_partition(int)", "must be owner of function ensure_exam_year_partition"),
    ("CREATE TABLE scratch (x int)", "permission denied for schema public"),
    ("SELECT * FROM schema_migrations", "permission denied for table schema_migrations"),
    ("DELETE FROM exam_results_schema_migrations", "permission denied for table exam_results_schema_migrations"),
    ("CREATE ROLE intruder", "permission denied to create role"),
])
def test_the_write_role_cannot_drop_truncate_alter_or_touch_anything_else(server, database, sql, error):
    result = as_role(server, database, APP_ROLE, sql)
    assert result.returncode != 0
    assert error in result.stderr


def test_a_partition_the_write_role_creates_is_owned_by_the_owner_and_granted_like_the_others(server, database):
    created = as_role(server, database, APP_ROLE, "SELECT ensure_exam_year_partition(2033)")
    assert created.returncode == 0, created.stderr
    assert server.scalar(database, "SELECT tableowner FROM pg_tables WHERE tablename = 'student_results_2033'") \
        == OWNER_ROLE
    assert as_role(server, database, APP_ROLE, "INSERT INTO student_results_2033 VALUES (7, 70, 2033)").returncode == 0
    read = as_role(server, database, READER_ROLE, "SELECT marks FROM student_results_2033")
    assert read.returncode == 0 and read.stdout.strip() == "70", read.stderr
    truncate = as_role(server, database, APP_ROLE, "TRUNCATE student_results_2033")
    assert "permission denied for table student_results_2033" in truncate.stderr


@pytest.mark.parametrize("sql", [
    "INSERT INTO student_results VALUES (2, 50, 2024)",
    "UPDATE student_results SET marks = 0",
    "DELETE FROM student_results",
    "TRUNCATE student_results",
    "SELECT ensure_exam_year_partition(2034)",
])
def test_the_read_role_cannot_write(server, database, sql):
    server.psql(database, "INSERT INTO student_results VALUES (1, 50, 2024)")
    result = as_role(server, database, READER_ROLE, sql)
    assert result.returncode != 0
    assert "permission denied" in result.stderr
    assert server.scalar(database, "SELECT count(*) || ':' || sum(marks) FROM student_results") == "1:50"


def test_the_read_role_reads_through_both_pooler_databases(server):
    # exam_results_ro is the replica (here: the sandbox's primary, which has no replica).
    for pooled in ("exam_results", "exam_results_ro"):
        result = as_role(server, pooled, READER_ROLE, "SELECT current_user, count(*) FROM student_results")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{READER_ROLE}|")
        refused = as_role(server, pooled, READER_ROLE, "INSERT INTO student_results VALUES (3, 50, 2024)")
        assert "permission denied for table student_results" in refused.stderr


@pytest.mark.parametrize("role", [APP_ROLE, READER_ROLE])
def test_the_functions_roles_cannot_log_in_to_postgresql_directly(server, database, role):
    env = server.env(database, PGUSER=role)
    result = subprocess.run(["psql", "-X", "-Atc", "SELECT 1"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "pg_hba.conf rejects connection" in result.stderr


@pytest.mark.parametrize("role", [APP_ROLE, READER_ROLE])
def test_the_functions_roles_cannot_open_pgbouncers_console(server, role):
    result = as_role(server, "pgbouncer", role, "SHOW POOLS")
    assert result.returncode != 0 and "not allowed" in result.stderr


def test_pgbouncers_admin_and_stats_users_are_its_own(server):
    facts, secrets = server.facts, server.secrets
    for user, var in (("pgbouncer_stats", "PGBOUNCER_STATS_PASSWORD"), ("pgbouncer_admin", "PGBOUNCER_ADMIN_PASSWORD")):
        env = server.env("pgbouncer", PGUSER=user, PGPASSWORD=secrets[var], PGPORT=facts["PGBOUNCER_PORT"])
        result = subprocess.run(["psql", "-X", "-Atc", "SHOW POOLS"], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    stats = server.env("pgbouncer", PGUSER="pgbouncer_stats", PGPASSWORD=secrets["PGBOUNCER_STATS_PASSWORD"],
                       PGPORT=facts["PGBOUNCER_PORT"])
    pause = subprocess.run(["psql", "-X", "-Atc", "PAUSE"], env=stats, capture_output=True, text=True, timeout=30)
    assert pause.returncode != 0 and "admin access needed" in pause.stderr
    assert server.scalar("postgres", "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pgbouncer%'") == "0"


def test_group_roles_log_in_nowhere_and_the_owner_is_no_superuser(server):
    rows = dict(server.query("postgres", "SELECT rolname, rolcanlogin::text || rolsuper::text FROM pg_roles "
                                         "WHERE rolname IN ('exam_results_writer', 'exam_results_reader', "
                                         "'exam_owner', 'exam_app', 'exam_reader', 'exam_monitor')"))
    assert rows == {"exam_results_writer": "falsefalse", "exam_results_reader": "falsefalse",
                    "exam_owner": "truefalse", "exam_app": "truefalse", "exam_reader": "truefalse",
                    "exam_monitor": "truefalse"}
