"""Backup, damage, restore: every row comes back exactly (count and md5 per partition)."""

import re
import subprocess
import threading

from conftest import OWNER_ROLE, census, seed


def backup(run_op, database):
    result = run_op("backup.sh", database=database)
    assert result.returncode == 0, result.stderr
    match = re.search(r"backup written: (\S+\.dump)", result.stdout)
    assert match, result.stdout
    return match.group(1)


def restored_name(stdout):
    match = re.search(r"creating database (\S+)", stdout)
    assert match, stdout
    return match.group(1)


def test_backup_then_changes_and_deletes_then_restore_brings_back_every_row(server, database, run_op):
    seed(server, database, rows=30000, first_year=2021, years=3)
    original = census(server, database)
    assert sum(n for n, _ in original.values()) == 30000

    dump = backup(run_op, database)

    # Damage: change marks, delete rows, add a row, empty a whole year.
    server.psql(database, """
        UPDATE student_results SET marks = (marks + 1) % 101 WHERE exam_year = 2021 AND roll_number % 7 = 0;
        DELETE FROM student_results WHERE exam_year = 2022 AND roll_number % 3 = 0;
        INSERT INTO student_results VALUES (999999999, 1, 2024);
        TRUNCATE student_results_2023;
    """)
    damaged = census(server, database)
    for name in ("student_results_2021", "student_results_2022", "student_results_2023", "student_results_2024"):
        assert damaged[name] != original[name], name

    result = run_op("restore.sh", dump, database=database)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "MATCHES the backup's census" in result.stdout
    target = restored_name(result.stdout)
    try:
        # Independent of the scripts' own census: same partitions, rows, checksums.
        assert census(server, target) == original
        # Constraints and the primary key came back too.
        assert server.psql(target, "INSERT INTO student_results VALUES (100000001, 10, 2021)",
                           check=False).returncode != 0
        assert server.psql(target, "INSERT INTO student_results VALUES (5, 101, 2021)",
                           check=False).returncode != 0
        assert server.scalar(target, "SELECT ensure_exam_year_partition(2035)") == "student_results_2035"
    finally:
        server.psql("postgres", f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")


def test_restore_with_replace_swaps_the_restored_copy_in_and_keeps_the_old_one(server, database, run_op):
    seed(server, database, rows=3000, first_year=2024, years=2)
    original = census(server, database)
    dump = backup(run_op, database)
    server.psql(database, "DELETE FROM student_results WHERE roll_number % 2 = 0")

    result = run_op("restore.sh", dump, "--replace", database=database)
    assert result.returncode == 0, result.stderr + result.stdout
    old = re.search(r"previous database is (\S+)", result.stdout).group(1)
    try:
        assert census(server, database) == original
        assert server.scalar(old, "SELECT count(*) FROM student_results") == "1500"
    finally:
        server.psql("postgres", f"DROP DATABASE IF EXISTS {old} WITH (FORCE)")


def test_a_restored_database_keeps_the_settings_of_the_dumped_one(server, database, run_op):
    # 0008 sets idle_in_transaction_session_timeout on the database itself
    # (ALTER DATABASE ... SET): a restored copy, swapped in with --replace,
    # must not lose it.
    setting = "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase " \
              "WHERE d.datname = '{}' AND s.setrole = 0"
    assert "idle_in_transaction_session_timeout=10s" in server.scalar("postgres", setting.format(database))
    dump = backup(run_op, database)

    result = run_op("restore.sh", dump, "--replace", database=database)
    assert result.returncode == 0, result.stderr + result.stdout
    old = re.search(r"previous database is (\S+)", result.stdout).group(1)
    try:
        assert "idle_in_transaction_session_timeout=10s" in server.scalar("postgres", setting.format(database))
        assert server.scalar(database, "SHOW idle_in_transaction_session_timeout") == "10s"
    finally:
        server.psql("postgres", f"DROP DATABASE IF EXISTS {old} WITH (FORCE)")


def test_the_backup_is_one_consistent_snapshot_while_writes_continue(server, database, run_op):
    seed(server, database, rows=20000, first_year=2021, years=2)
    stop = threading.Event()

    def writer():
        n = 0
        env = server.env(database, PGUSER=OWNER_ROLE)
        while not stop.is_set():
            n += 1
            subprocess.run(["psql", "-X", "-q", "-c",
                            f"INSERT INTO student_results VALUES ({500000000 + n}, 50, 2021); "
                            f"DELETE FROM student_results WHERE exam_year = 2022 AND roll_number = {100000000 + n}"],
                           env=env, capture_output=True)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        dump = backup(run_op, database)
    finally:
        stop.set()
        thread.join()
    # The census was taken in the dump's own snapshot, so the restored copy matches it exactly.
    result = run_op("restore.sh", dump, "--dbname", "restored_during_writes", database=database)
    try:
        assert result.returncode == 0, result.stderr + result.stdout
        assert "MATCHES the backup's census" in result.stdout
        rows_2021 = int(server.scalar("restored_during_writes", "SELECT count(*) FROM student_results_2021"))
        rows_2022 = int(server.scalar("restored_during_writes", "SELECT count(*) FROM student_results_2022"))
        # Each writer transaction adds one 2021 row and removes one 2022 row: a consistent
        # snapshot sees both halves of every transaction or neither.
        assert rows_2021 - 10000 == 10000 - rows_2022
    finally:
        server.psql("postgres", "DROP DATABASE IF EXISTS restored_during_writes WITH (FORCE)")


def test_a_restore_that_does_not_match_the_census_fails_and_never_replaces(server, database, run_op):
    seed(server, database, rows=1000, first_year=2024, years=1)
    dump = backup(run_op, database)
    # Tamper with the recorded census: the restore must notice.
    with open(dump + ".census") as f:
        text = f.read()
    with open(dump + ".census", "w") as f:
        f.write(text.replace("student_results_2024|1000|", "student_results_2024|999|"))
    server.psql(database, "DELETE FROM student_results WHERE roll_number = 100000001")

    result = run_op("restore.sh", dump, "--replace", database=database)
    assert result.returncode != 0
    assert "MISMATCH" in result.stdout
    target = restored_name(result.stdout)
    server.psql("postgres", f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
    # Not replaced: the live database still has the deletion.
    assert server.scalar(database, "SELECT count(*) FROM student_results") == "999"


def test_restore_refuses_a_file_that_is_not_a_backup_and_an_existing_target(server, database, run_op, tmp_path):
    junk = tmp_path / "junk.dump"
    junk.write_text("not a dump")
    result = run_op("restore.sh", str(junk), database=database)
    assert result.returncode != 0 and "not a pg_dump custom-format archive" in result.stderr
    dump = backup(run_op, database)
    result = run_op("restore.sh", dump, "--dbname", database, database="postgres")
    assert result.returncode != 0 and "already exists" in result.stderr
