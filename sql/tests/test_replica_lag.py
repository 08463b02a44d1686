"""replica-lag.sh against a real streaming replica whose WAL replay is paused."""

import os
import shutil
import subprocess
import time

import pytest

from conftest import as_pg, free_port, pg_bindir


@pytest.fixture
def make_standby(server):
    """Starts streaming replicas of the throwaway server (pg_basebackup -R); stops them afterwards."""
    bindir = pg_bindir()
    started = []

    def make(extra_conf: str = "") -> int:
        parent = server.root / "standbys"
        parent.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(parent, "postgres", "postgres")
        data = parent / f"standby-{os.getpid()}-{time.monotonic_ns()}"
        port = free_port()
        # No commit may land while the copy is taken: commits replayed before
        # the standby is consistent skip recovery_min_apply_delay. Autovacuum's
        # are the only ones here; pause it for the copy.
        server.psql("postgres", "ALTER SYSTEM SET autovacuum = off")
        server.psql("postgres", "SELECT pg_reload_conf()")
        # The sandbox's replication role; its password through the environment only.
        subprocess.run(as_pg([str(bindir / "pg_basebackup"),
                              "-h", "127.0.0.1", "-p", str(server.port), "-U", "replicator",
                              "-D", str(data), "-R", "-X", "stream", "-c", "fast", "--no-sync"]),
                       check=True, capture_output=True, env=dict(os.environ, PGPASSWORD=server.password_of("replicator")))
        server.psql("postgres", "ALTER SYSTEM RESET autovacuum")
        server.psql("postgres", "SELECT pg_reload_conf()")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {port}\n{extra_conf}\n")
        (data / "sandbox.conf").unlink(missing_ok=True)  # the sandbox primary's own settings
        subprocess.run(as_pg([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "start"]),
                       check=True, capture_output=True)
        started.append(data)
        return port

    yield make
    for data in started:
        subprocess.run(as_pg([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def standby(make_standby):
    return make_standby()


def test_lag_is_zero_when_the_replica_has_replayed_everything(server, database, run_op, standby):
    result = run_op("replica-lag.sh", "--max-lag", "5", database=database, REPLICA_PGPORT=str(standby))
    assert result.returncode == 0, result.stderr + result.stdout
    assert "streaming" in result.stdout
    assert "lag as the read functions see it: 0s" in result.stdout


def test_paused_replay_shows_growing_lag_on_both_sides_and_fails_the_limit(server, database, run_op, standby):
    replica = dict(PGPORT=str(standby), PGUSER="postgres", PGPASSWORD=server.password, PGDATABASE=database)
    env = {**server.env(database), **replica}
    for _ in range(100):  # the standby must have the database before we pause it
        if subprocess.run(["psql", "-X", "-Atc", "SELECT 1"], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    # One replayed commit first: until a standby has replayed a commit since it
    # started, pg_last_xact_replay_timestamp() is NULL and the functions' lag
    # measure reads 0 (see the next test).
    server.psql(database, "INSERT INTO student_results VALUES (100, 50, 2024)")
    for _ in range(100):
        if subprocess.run(["psql", "-X", "-Atc", "SELECT count(*) FROM student_results"], env=env,
                          capture_output=True, text=True).stdout.strip() == "1":
            break
        time.sleep(0.1)
    subprocess.run(["psql", "-X", "-c", "SELECT pg_wal_replay_pause()"], env=env, check=True, capture_output=True)
    for n in range(3):
        server.psql(database, f"INSERT INTO student_results VALUES ({n + 1}, 50, 2024)")
        time.sleep(1)

    result = run_op("replica-lag.sh", "--max-lag", "1", database=database, REPLICA_PGPORT=str(standby))

    assert result.returncode == 1, result.stdout + result.stderr
    assert "replica is LAGGING" in result.stdout
    lag = float(result.stdout.split("lag as the read functions see it: ")[1].split("s")[0])
    assert lag >= 2
    replica_row = result.stdout.split("== replica")[1].splitlines()[3]
    assert replica_row.split("|")[1].strip() == "t"  # replay_paused
    assert int(replica_row.split("|")[4]) > 0  # unreplayed bytes
    # The primary sees the same standby behind by some WAL.
    primary_row = result.stdout.split("pg_stat_replication")[1].splitlines()[3]
    assert int(primary_row.split("|")[6]) > 0

    subprocess.run(["psql", "-X", "-c", "SELECT pg_wal_replay_resume()"], env=env, check=True, capture_output=True)
    for _ in range(50):
        ok = run_op("replica-lag.sh", "--max-lag", "1", database=database, REPLICA_PGPORT=str(standby))
        if ok.returncode == 0:
            break
        time.sleep(0.2)
    assert ok.returncode == 0, ok.stdout


def test_an_unreachable_replica_is_reported_and_fails_the_limit(server, database, run_op):
    result = run_op("replica-lag.sh", "--max-lag", "5", database=database, REPLICA_PGPORT=str(free_port()))
    assert result.returncode == 1
    assert "replica unreachable" in result.stdout


def test_a_standby_that_has_replayed_no_commit_yet_is_flagged(server, database, run_op, make_standby):
    # recovery_min_apply_delay holds back every commit record, so the standby
    # replays no commit at all: pg_last_xact_replay_timestamp() stays NULL; the
    # functions then count the replica's uptime as its lag instead of reading 0.
    port = make_standby("recovery_min_apply_delay = '1h'")
    server.psql(database, "INSERT INTO student_results VALUES (1, 50, 2024)")
    env = {**server.env(database), "PGPORT": str(port)}
    for _ in range(100):
        waiting = subprocess.run(["psql", "-X", "-Atc", "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()"],
                                 env=env, capture_output=True, text=True).stdout.strip()
        if waiting == "t":
            break
        time.sleep(0.1)
    result = run_op("replica-lag.sh", database=database, REPLICA_PGPORT=str(port))
    assert result.returncode == 0
    assert "lag as the read functions see it: 0s" not in result.stdout
    assert "no commit has been replayed since the replica started" in result.stdout
