"""A throwaway PostgreSQL for the sql/ops tests.

One server per test session: initdb in a temporary directory, listening on a
free 127.0.0.1 port, run as the `postgres` OS user (via runuser) when the
tests run as root. Each test gets its own fresh database with the project's
migrations applied, and an environment (PGHOST/PGPORT/PGUSER/PGPASSWORD/
PGDATABASE, ARCHIVE_DIR, BACKUP_DIR) that points the sql/ops scripts at it.
Nothing here touches .local/ or the local stack's ports.
"""

from __future__ import annotations

import glob
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
OPS = REPO / "sql" / "ops"
MIGRATIONS = sorted((REPO / "sql" / "migrations").glob("*.sql"))
SUPERUSER = "postgres"
APP_ROLE = "exam_app"


def pg_bindir() -> pathlib.Path:
    if os.environ.get("PG_BIN"):
        return pathlib.Path(os.environ["PG_BIN"])
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[4]))
    if dirs:
        return pathlib.Path(dirs[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return pathlib.Path(initdb).parent
    pytest.exit("PostgreSQL server binaries not found (apt-get install postgresql)", returncode=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_pg(cmd: list[str]) -> list[str]:
    """Runs server commands as the unprivileged postgres OS user when root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class Server:
    """A running throwaway PostgreSQL and helpers to talk to it."""

    def __init__(self, root: pathlib.Path, port: int, password: str):
        self.root = root
        self.port = port
        self.password = password

    def env(self, database: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGHOST="127.0.0.1",
            PGPORT=str(self.port),
            PGUSER=SUPERUSER,
            PGPASSWORD=self.password,
            PGDATABASE=database,
            PGCONNECT_TIMEOUT="5",
            STATE_DIR=str(self.root / "state"),
        )
        env.update(extra)
        return env

    def psql(self, database: str, sql: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env=self.env(database), capture_output=True, text=True, check=check,
        )

    def query(self, database: str, sql: str) -> list[list[str]]:
        out = self.psql(database, sql).stdout
        return [line.split("|") for line in out.splitlines() if line]

    def scalar(self, database: str, sql: str) -> str:
        return self.psql(database, sql).stdout.strip()


@pytest.fixture(scope="session")
def server():
    bindir = pg_bindir()
    root = pathlib.Path(tempfile.mkdtemp(prefix="exam-results-sqltests-"))
    os.chmod(root, 0o755)
    data = root / "data"
    password = secrets.token_urlsafe(16)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(
        as_pg([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
               "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--no-sync"]),
        check=True, capture_output=True,
    )
    pwfile.unlink()
    port = free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{root}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "shared_buffers = 64MB\nmax_connections = 40\n"
        )
    log = root / "server.log"
    subprocess.run(
        as_pg([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"]),
        check=True, capture_output=True,
    )
    srv = Server(root, port, password)
    try:
        srv.psql("postgres", f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{password}'")
        yield srv
    finally:
        subprocess.run(as_pg([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def migrate(srv: Server, database: str) -> None:
    for migration in MIGRATIONS:
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(migration)],
            env=srv.env(database, PGUSER=APP_ROLE, PGOPTIONS="-c client_min_messages=warning"),
            check=True, capture_output=True, text=True,
        )


@pytest.fixture
def database(server):
    """A fresh database owned by exam_app with sql/migrations applied."""
    name = "t_" + uuid.uuid4().hex[:12]
    server.psql("postgres", f"CREATE DATABASE {name} OWNER {APP_ROLE}")
    migrate(server, name)
    yield name
    server.psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)


@pytest.fixture
def empty_database(server):
    """A fresh database owned by exam_app with nothing in it."""
    name = "t_" + uuid.uuid4().hex[:12]
    server.psql("postgres", f"CREATE DATABASE {name} OWNER {APP_ROLE}")
    yield name
    server.psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)


@pytest.fixture
def run_op(server, tmp_path):
    """Runs one sql/ops script against a database; returns the CompletedProcess."""
    os.chmod(tmp_path, 0o755)

    def run(script: str, *args: str, database: str, **env: str) -> subprocess.CompletedProcess:
        full_env = server.env(
            database,
            PGUSER=APP_ROLE,
            ADMIN_PGUSER=SUPERUSER,
            ADMIN_PGPASSWORD=server.password,
            ARCHIVE_DIR=str(tmp_path / "archive"),
            BACKUP_DIR=str(tmp_path / "backups"),
            **env,
        )
        return subprocess.run([str(OPS / script), *args], env=full_env, capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)

    return run


def census(srv: Server, database: str) -> dict[str, tuple[int, str]]:
    """partition -> (rows, md5 over rows in key order), computed independently of the scripts."""
    rows = srv.query(
        database,
        """SELECT c.relname, count(r.*),
                  md5(coalesce(string_agg(r.exam_year || ',' || r.roll_number || ',' || r.marks, E'\\n'
                                          ORDER BY r.roll_number), ''))
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           LEFT JOIN student_results r ON r.tableoid = c.oid
           WHERE i.inhparent = 'student_results'::regclass
           GROUP BY c.relname ORDER BY c.relname""",
    )
    return {name: (int(n), md5) for name, n, md5 in rows}


def seed(srv: Server, database: str, rows: int, first_year: int = 2021, years: int = 3) -> None:
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"rows={rows}", "-v", f"first_year={first_year}",
         "-v", f"years={years}", "-f", str(REPO / "sql" / "seed.sql")],
        env=srv.env(database, PGUSER=APP_ROLE), check=True, capture_output=True, text=True,
    )
