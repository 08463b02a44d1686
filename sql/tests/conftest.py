"""The database sandbox (.ci/sandbox.sh) for the sql/ tests.

One sandbox per test session: PostgreSQL on a free 127.0.0.1 port with the
production roles, started by the same script `make up` uses. Each test gets
its own fresh database, owned by exam_owner with sql/migrations applied by
sql/migrate.sh, and an environment (PGHOST/PGPORT/PGUSER/PGPASSWORD/
PGDATABASE, ARCHIVE_DIR, BACKUP_DIR) that points the sql/ops scripts at it.
Nothing here touches .local/ or the local stack's ports.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import tempfile
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
OPS = REPO / "sql" / "ops"
SANDBOX = REPO / ".ci" / "sandbox.sh"
MIGRATE = REPO / "sql" / "migrate.sh"
SUPERUSER = "postgres"
OWNER_ROLE = "exam_owner"
APP_ROLE = "exam_app"
READER_ROLE = "exam_reader"


def read_env_file(path: pathlib.Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))


def pg_bindir() -> pathlib.Path:
    return pathlib.Path(SANDBOX_FACTS["PG_BIN"])


def as_pg(cmd: list[str]) -> list[str]:
    """Runs server commands as the unprivileged postgres OS user when root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SANDBOX_FACTS: dict[str, str] = {}


class Server:
    """The running sandbox and helpers to talk to it (as the superuser unless told)."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.facts = read_env_file(root / "sandbox.env")
        self.secrets = read_env_file(root / "secrets.env")
        SANDBOX_FACTS.update(self.facts)
        self.port = int(self.facts["PRIMARY_PORT"])
        self.bouncer_port = int(self.facts["PGBOUNCER_PORT"])
        self.password = self.secrets["POSTGRES_PASSWORD"]

    def password_of(self, role: str) -> str:
        return self.secrets[{SUPERUSER: "POSTGRES_PASSWORD", OWNER_ROLE: "EXAM_OWNER_PASSWORD",
                             APP_ROLE: "EXAM_APP_PASSWORD", READER_ROLE: "EXAM_READER_PASSWORD",
                             "replicator": "REPLICATOR_PASSWORD"}[role]]

    def env(self, database: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        user = extra.get("PGUSER", SUPERUSER)
        env.update(
            PGHOST="127.0.0.1",
            PGPORT=str(self.port),
            PGUSER=user,
            PGPASSWORD=self.password_of(user) if user in (SUPERUSER, OWNER_ROLE, APP_ROLE, READER_ROLE) else "",
            PGDATABASE=database,
            PGCONNECT_TIMEOUT="5",
            STATE_DIR=str(self.root / "state"),
        )
        env.update(extra)
        return env

    def bouncer_env(self, database: str, role: str) -> dict[str, str]:
        """Through PgBouncer as one of the functions' roles."""
        return self.env(database, PGUSER=role, PGPORT=str(self.bouncer_port), PGPASSWORD=self.password_of(role))

    def psql(self, database: str, sql: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={**self.env(database), **env}, capture_output=True, text=True, check=check,
        )

    def query(self, database: str, sql: str) -> list[list[str]]:
        out = self.psql(database, sql).stdout
        return [line.split("|") for line in out.splitlines() if line]

    def scalar(self, database: str, sql: str) -> str:
        return self.psql(database, sql).stdout.strip()

    def migrate(self, database: str, **env: str) -> subprocess.CompletedProcess:
        """sql/migrate.sh as the owner, the way make up and the chart's Job run it."""
        return subprocess.run([str(MIGRATE)], env=self.env(database, PGUSER=OWNER_ROLE, **env),
                              capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def server():
    root = pathlib.Path(tempfile.mkdtemp(prefix="er-sql-"))
    env = dict(os.environ, SANDBOX_FAST="1", SANDBOX_QUIET="1")
    for var in ("PRIMARY_PORT", "REPLICA_PORT", "PGBOUNCER_PORT", "SANDBOX_REPLICA"):
        env.pop(var, None)
    started = subprocess.run([str(SANDBOX), "start", str(root)], env=env, capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield Server(root)
    finally:
        subprocess.run([str(SANDBOX), "destroy", str(root)], capture_output=True, timeout=120)


def create_database(srv: Server, migrated: bool) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    srv.psql("postgres", f"CREATE DATABASE {name} OWNER {OWNER_ROLE}")
    if migrated:
        result = srv.migrate(name)
        assert result.returncode == 0, result.stdout + result.stderr
    return name


@pytest.fixture
def database(server):
    """A fresh database owned by exam_owner with sql/migrations applied."""
    name = create_database(server, migrated=True)
    yield name
    server.psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)


@pytest.fixture
def empty_database(server):
    """A fresh database owned by exam_owner with nothing in it."""
    name = create_database(server, migrated=False)
    yield name
    server.psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)


@pytest.fixture
def run_op(server, tmp_path):
    """Runs one sql/ops script against a database; returns the CompletedProcess."""
    os.chmod(tmp_path, 0o755)

    def run(script: str, *args: str, database: str, **env: str) -> subprocess.CompletedProcess:
        full_env = server.env(
            database,
            PGUSER=OWNER_ROLE,
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
        env=srv.env(database, PGUSER=OWNER_ROLE), check=True, capture_output=True, text=True,
    )
