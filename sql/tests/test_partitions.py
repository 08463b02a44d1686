"""Partition upkeep: ensure is idempotent, detach is concurrent and archives first."""

import pathlib
import subprocess
import time

from conftest import OWNER_ROLE, census, seed


def partitions(server, database):
    return [r[0] for r in server.query(
        database,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'student_results'::regclass ORDER BY 1")]


def test_ensure_creates_a_missing_year_once_and_then_changes_nothing(server, database, run_op):
    assert "student_results_2031" not in partitions(server, database)

    first = run_op("partitions.sh", "ensure", "2031", database=database)
    assert first.returncode == 0, first.stderr
    assert "created partition student_results_2031" in first.stdout
    after_first = partitions(server, database)

    second = run_op("partitions.sh", "ensure", "2031", database=database)
    assert second.returncode == 0, second.stderr
    assert "already exists: nothing to do" in second.stdout
    assert partitions(server, database) == after_first
    assert after_first.count("student_results_2031") == 1
    # The new partition takes rows for its year through the parent.
    server.psql(database, "INSERT INTO student_results VALUES (100000001, 55, 2031)")
    assert server.scalar(database, "SELECT count(*) FROM student_results_2031") == "1"


def test_ensure_created_partition_is_owned_by_the_table_owner_and_has_the_primary_key(server, database, run_op):
    assert run_op("partitions.sh", "ensure", "2040", database=database).returncode == 0
    owner, pk = server.query(database, """
        SELECT pg_get_userbyid(c.relowner),
               (SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = c.oid AND indisprimary)
        FROM pg_class c WHERE relname = 'student_results_2040'""")[0]
    assert owner == OWNER_ROLE
    assert "UNIQUE INDEX" in pk and "(exam_year, roll_number)" in pk


def test_ensure_rejects_years_outside_the_supported_range_and_bad_input(server, database, run_op):
    for bad in ("1999", "2101", "20x5", ""):
        result = run_op("partitions.sh", "ensure", bad, database=database)
        assert result.returncode != 0
        assert "error" in result.stderr
    assert not any(p.endswith(("1999", "2101")) for p in partitions(server, database))


def test_concurrent_ensure_calls_create_the_partition_exactly_once_and_all_succeed(server, database, run_op):
    script = str(pathlib.Path(__file__).parents[1] / "ops" / "partitions.sh")
    for year in (2050, 2051, 2052):
        procs = [subprocess.Popen([script, "ensure", str(year)], env=server.env(database, PGUSER=OWNER_ROLE),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(8)]
        results = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
        assert all(rc == 0 for _, _, rc in results), results
        assert partitions(server, database).count(f"student_results_{year}") == 1


def test_detach_removes_the_year_from_the_table_and_archives_every_row(server, database, run_op, tmp_path):
    seed(server, database, rows=3000, first_year=2019, years=3)
    before = census(server, database)
    assert before["student_results_2019"][0] == 1000

    result = run_op("partitions.sh", "detach", "2019", database=database)
    assert result.returncode == 0, result.stderr
    assert "detaching student_results_2019 CONCURRENTLY" in result.stdout

    # The year is gone from the partitioned table, the other years untouched.
    assert "student_results_2019" not in partitions(server, database)
    assert server.scalar(database, "SELECT count(*) FROM student_results WHERE exam_year = 2019") == "0"
    after = census(server, database)
    for name in ("student_results_2020", "student_results_2021"):
        assert after[name] == before[name]
    # Without --drop the table is kept, standalone, with all its rows.
    assert server.scalar(database, "SELECT count(*) FROM student_results_2019") == "1000"

    dumps = list((tmp_path / "archive").glob("student_results_2019-*.dump"))
    assert len(dumps) == 1
    manifest = dict(line.split("=", 1) for line in
                    pathlib.Path(str(dumps[0]) + ".manifest").read_text().splitlines())
    assert manifest["rows"] == "1000"
    assert manifest["checksum"] == before["student_results_2019"][1]


def test_detach_with_drop_archives_then_drops_and_the_archive_restores_the_year(server, database, run_op, tmp_path):
    seed(server, database, rows=2000, first_year=2019, years=2)
    before = census(server, database)

    result = run_op("partitions.sh", "detach", "2019", "--drop", database=database)
    assert result.returncode == 0, result.stderr
    assert server.scalar(database, "SELECT to_regclass('student_results_2019') IS NULL") == "t"

    # Bring the year back from the archive and re-attach it: every row returns.
    dump = next((tmp_path / "archive").glob("student_results_2019-*.dump"))
    subprocess.run(["pg_restore", "--exit-on-error", "-d", database, str(dump)],
                   env=server.env(database, PGUSER=OWNER_ROLE), check=True, capture_output=True)
    server.psql(database, "ALTER TABLE student_results ATTACH PARTITION student_results_2019 FOR VALUES IN (2019)")
    assert census(server, database) == before


def test_detach_again_after_a_detach_only_archives_and_ensure_refuses_a_detached_year(server, database, run_op):
    seed(server, database, rows=300, first_year=2019, years=3)
    assert run_op("partitions.sh", "detach", "2019", database=database).returncode == 0

    again = run_op("partitions.sh", "detach", "2019", database=database)
    assert again.returncode == 0, again.stderr
    assert "already detached" in again.stdout

    ensure = run_op("partitions.sh", "ensure", "2019", database=database)
    assert ensure.returncode != 0
    assert "not attached" in ensure.stderr


def test_detach_finishes_an_interrupted_concurrent_detach(server, database, run_op):
    seed(server, database, rows=300, first_year=2019, years=3)
    # Simulate an interrupted DETACH ... CONCURRENTLY: mark it pending the way
    # PostgreSQL leaves it when the second transaction is cancelled.
    server.psql("postgres", "SELECT 1")  # server alive
    server.psql(database, "UPDATE pg_inherits SET inhdetachpending = true "
                          "WHERE inhrelid = 'student_results_2019'::regclass")
    result = run_op("partitions.sh", "detach", "2019", database=database)
    assert result.returncode == 0, result.stderr
    assert "FINALIZE" in result.stdout
    assert "student_results_2019" not in partitions(server, database)


def test_detach_of_a_missing_year_fails_and_changes_nothing(server, database, run_op, tmp_path):
    result = run_op("partitions.sh", "detach", "2077", database=database)
    assert result.returncode != 0
    assert "no table student_results_2077" in result.stderr
    assert not (tmp_path / "archive").exists() or not any((tmp_path / "archive").iterdir())


def test_ensure_waiting_on_an_uncommitted_creator_returns_the_partition_instead_of_failing(server, database):
    """Caller B runs while caller A has created the partition but not committed yet."""
    env = server.env(database, PGUSER=OWNER_ROLE)
    a = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    a.stdin.write("BEGIN; SELECT ensure_exam_year_partition(2060);\n")
    a.stdin.flush()
    for _ in range(100):
        if server.scalar(database, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") != "0":
            break
        time.sleep(0.05)
    b = subprocess.Popen(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c",
                          "SELECT ensure_exam_year_partition(2060)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(100):  # B is now waiting for A's advisory lock
        if server.scalar(database, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") != "0":
            break
        time.sleep(0.05)
    a.stdin.write("COMMIT;\n")
    a.stdin.close()
    a.wait(timeout=30)
    out, err = b.communicate(timeout=30)
    assert b.returncode == 0, err
    assert out.strip() == "student_results_2060"
    assert partitions(server, database).count("student_results_2060") == 1


def _hold_open_reader(server, database):
    """A session inside a transaction that has read student_results (like a slow request)."""
    reader = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=server.env(database, PGUSER=OWNER_ROLE))
    reader.stdin.write("BEGIN; SELECT count(*) FROM student_results; SELECT pg_sleep(30);\n")
    reader.stdin.flush()
    for _ in range(100):
        if server.scalar(database, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") == "1":
            return reader
        time.sleep(0.05)
    raise AssertionError("reader did not start")


def _end_reader(server, database, reader):
    server.psql(database, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
    reader.kill()
    reader.wait()


def _wait_until_blocked(server, database, needle):
    for _ in range(200):
        if server.scalar(database, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                   f"AND query LIKE '%{needle}%'") != "0":
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle} never waited")


def _read_other_year(server, database):
    return server.psql(database, "SET statement_timeout = '3s'; "
                                 "SELECT count(*) FROM student_results WHERE exam_year = 2020", check=False)


def test_detach_concurrently_waits_for_a_slow_reader_without_blocking_other_reads_and_writes(server, database, run_op):
    seed(server, database, rows=3000, first_year=2019, years=3)
    reader = _hold_open_reader(server, database)
    detach = subprocess.Popen([str(pathlib.Path(__file__).parents[1] / "ops" / "partitions.sh"), "detach", "2019"],
                              env=server.env(database, PGUSER=OWNER_ROLE, ARCHIVE_DIR=str(server.root / "arch")),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_blocked(server, database, "DETACH PARTITION")
        # While the detach waits for the slow reader, other years stay readable and writable.
        started = time.monotonic()
        read = _read_other_year(server, database)
        assert read.returncode == 0, read.stderr
        assert read.stdout.strip().endswith("1000")
        write = server.psql(database, "SET statement_timeout = '3s'; INSERT INTO student_results VALUES (7, 70, 2020)",
                            check=False)
        assert write.returncode == 0, write.stderr
        assert time.monotonic() - started < 3
        assert detach.poll() is None  # still waiting for the reader
    finally:
        _end_reader(server, database, reader)
    out, err = detach.communicate(timeout=60)
    assert detach.returncode == 0, err
    assert "archived student_results_2019 (1000 rows" in out


def test_a_plain_detach_would_block_every_reader_which_is_why_the_script_uses_concurrently(server, database):
    seed(server, database, rows=3000, first_year=2019, years=3)
    reader = _hold_open_reader(server, database)
    plain = subprocess.Popen(["psql", "-X", "-q", "-c", "ALTER TABLE student_results DETACH PARTITION student_results_2019"],
                             env=server.env(database, PGUSER=OWNER_ROLE), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_blocked(server, database, "DETACH PARTITION")
        read = _read_other_year(server, database)
        assert read.returncode != 0
        assert "statement timeout" in read.stderr
    finally:
        _end_reader(server, database, reader)
        plain.communicate(timeout=60)
