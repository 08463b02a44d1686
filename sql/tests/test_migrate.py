"""sql/migrate.sh, the one migration runner, against a real PostgreSQL: a fresh
database, a re-run, two concurrent runs (one waits for the other's lock), and
an applied file edited afterwards (refused, naming the file)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time

from conftest import MIGRATE, OWNER_ROLE, REPO

MIGRATIONS = sorted((REPO / "sql" / "migrations").glob("*.sql"))
LEDGER = "public.exam_results_schema_migrations"


def ledger(server, database) -> dict[str, str]:
    return dict(server.query(database, f"SELECT filename, sha256 FROM {LEDGER} ORDER BY filename"))


def test_a_fresh_database_gets_every_file_applied_and_recorded_with_its_checksum(server, empty_database):
    result = server.migrate(empty_database)
    assert result.returncode == 0, result.stderr
    for path in MIGRATIONS:
        assert f"migrate: applying {path.name}" in result.stdout
    assert f"migrate: done, {len(MIGRATIONS)} file(s) applied, 0 already applied" in result.stdout
    assert ledger(server, empty_database) == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in MIGRATIONS}
    owner = server.scalar(empty_database, "SELECT tableowner FROM pg_tables WHERE tablename = 'student_results'")
    assert owner == OWNER_ROLE


def test_running_again_applies_nothing_and_changes_nothing(server, database):
    before = server.query(database, f"SELECT filename, sha256, applied_at FROM {LEDGER} ORDER BY 1")
    again = server.migrate(database)
    assert again.returncode == 0, again.stderr
    assert "applying" not in again.stdout
    assert f"migrate: done, 0 file(s) applied, {len(MIGRATIONS)} already applied" in again.stdout
    assert server.query(database, f"SELECT filename, sha256, applied_at FROM {LEDGER} ORDER BY 1") == before


def copy_migrations(tmp_path):
    directory = tmp_path / "migrations"
    directory.mkdir()
    for path in MIGRATIONS:
        shutil.copy(path, directory / path.name)
    return directory


def test_an_edited_applied_file_is_refused_by_name_and_nothing_else_runs(server, database, tmp_path):
    directory = copy_migrations(tmp_path)
    edited = directory / MIGRATIONS[1].name
    edited.write_text(edited.read_text() + "\n-- an afterthought\n")
    (directory / "9001_new.sql").write_text("CREATE TABLE must_not_exist (x int);\n")

    result = server.migrate(database, MIGRATIONS_DIR=str(directory))

    assert result.returncode != 0
    assert f"migrate: {edited.name} was applied with sha256 {hashlib.sha256(MIGRATIONS[1].read_bytes()).hexdigest()}" \
        in result.stderr
    assert "has been edited since" in result.stderr and "nothing was applied" in result.stderr
    assert server.scalar(database, "SELECT to_regclass('must_not_exist') IS NULL") == "t"
    assert "9001_new.sql" not in ledger(server, database)


def test_a_new_file_is_applied_once_after_the_recorded_ones(server, database, tmp_path):
    directory = copy_migrations(tmp_path)
    (directory / "9001_note.sql").write_text(
        "BEGIN; CREATE TABLE IF NOT EXISTS runs (n int); INSERT INTO runs VALUES (1); COMMIT;\n")
    first = server.migrate(database, MIGRATIONS_DIR=str(directory))
    second = server.migrate(database, MIGRATIONS_DIR=str(directory))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "migrate: applying 9001_note.sql" in first.stdout and "applying" not in second.stdout
    assert server.scalar(database, "SELECT count(*) FROM runs") == "1"


def test_concurrent_runs_take_turns_on_the_lock_and_apply_each_file_once(server, empty_database, tmp_path):
    directory = copy_migrations(tmp_path)
    # Slow enough that the second run starts while the first holds the lock.
    (directory / "9001_slow.sql").write_text(
        "BEGIN; CREATE TABLE IF NOT EXISTS runs (n int); INSERT INTO runs VALUES (1); SELECT pg_sleep(3); COMMIT;\n")
    env = server.env(empty_database, PGUSER=OWNER_ROLE, MIGRATIONS_DIR=str(directory))
    first = subprocess.Popen([str(MIGRATE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    sleeping = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'SELECT pg_sleep(3)%'")
    while server.scalar(empty_database, sleeping) != "1":
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    second = subprocess.run([str(MIGRATE)], env=env, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=120)

    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    assert "another run holds the migration lock; waiting for it" in second.stdout
    assert "migrate: applying 9001_slow.sql" in out and "applying" not in second.stdout
    assert f"0 file(s) applied, {len(MIGRATIONS) + 1} already applied" in second.stdout
    assert server.scalar(empty_database, "SELECT count(*) FROM runs") == "1"


def test_a_failing_file_stops_the_run_and_is_not_recorded(server, database, tmp_path):
    directory = copy_migrations(tmp_path)
    (directory / "9001_broken.sql").write_text("SELECT * FROM no_such_table;\n")
    result = server.migrate(database, MIGRATIONS_DIR=str(directory))
    assert result.returncode != 0 and "no_such_table" in result.stderr
    assert "9001_broken.sql" not in ledger(server, database)


def test_file_names_outside_the_numbering_are_refused(server, database, tmp_path):
    directory = copy_migrations(tmp_path)
    (directory / "later.sql").write_text("SELECT 1;\n")
    result = server.migrate(database, MIGRATIONS_DIR=str(directory))
    assert result.returncode == 1
    assert "later.sql: migration files are named NNNN_name.sql" in result.stderr


def test_the_runner_names_a_missing_secret_key(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    for key in ("rw-host", "port", "dbname", "username"):
        (secret / key).write_text("x")
    env = {"PATH": "/usr/bin:/bin", "DATABASE_SECRET_DIR": str(secret), "DATABASE_SECRET_NAME": "exam-results-db"}
    result = subprocess.run([str(MIGRATE)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"PGPASSWORD is not set and {secret}/password is missing or empty (Secret exam-results-db)" in result.stderr


def test_the_runner_and_the_sandbox_pass_shellcheck():
    scripts = [str(MIGRATE), str(REPO / ".ci" / "sandbox.sh"), str(REPO / ".ci" / "stack.sh")]
    result = subprocess.run(["shellcheck", "-S", "warning", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
