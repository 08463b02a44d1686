"""The chart's two shell scripts run for real against a throw-away PostgreSQL
and PgBouncer on 127.0.0.1: migrate.sh (the migration Job) applies
sql/migrations and is safe to re-run; render-config.sh (PgBouncer's init
container) writes a configuration PgBouncer starts with, serving both logical
databases over SCRAM; SIGINT (what the preStop hook sends) lets an in-flight
transaction finish before PgBouncer exits.

Needs the Debian packages postgresql and pgbouncer (.ci/apt-knative.txt). The
machine's PgBouncer may be older than the chart's image (1.24): settings it
does not know (max_prepared_statements before 1.21) are dropped from the
generated file for this test only, and the test says so in its output.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

import chart_support as cs

PASSWORD = 'pa"ss\'w0rd$x'  # a double quote, a single quote and a dollar: exercises the userlist escaping
APP_USER = "chart_app"  # the chart PgBouncer's login roles here (the sandbox's exam_app and exam_reader
READER_USER = "chart_reader"  # log in only through the sandbox's own PgBouncer)
JOB_DB = "chart_job"  # the database the chart's migration Job migrates here
SANDBOX = cs.REPO / ".ci" / "sandbox.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_user() -> dict:
    """Popen/run arguments that drop to the postgres user when we are root
    (initdb, postgres and pgbouncer refuse to run as root). The child is the
    program itself, so signals reach it directly."""
    if os.geteuid() == 0:
        return {"user": "postgres", "group": "postgres", "extra_groups": []}
    return {}


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def psql(port, database, sql, *, user=APP_USER, password=PASSWORD, check=True):
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="3")
    return subprocess.run(["psql", "-X", "-Atq", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", database, "-c", sql],
                          capture_output=True, text=True, env=env, check=check, timeout=30)


@pytest.fixture(scope="module")
def workdir():
    """A private directory the postgres user (when we are root) owns; removed afterwards."""
    import pathlib
    import tempfile

    path = pathlib.Path(tempfile.mkdtemp(prefix="exam-results-knative-live-"))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def sandboxed_postgres(root, server_conf: str = ""):
    """The database sandbox (.ci/sandbox.sh) in `root`, its primary also reading `server_conf`
    (postgresql.conf lines, e.g. TLS), with the chart's login roles; yields its facts and passwords."""
    env = {k: v for k, v in os.environ.items() if k not in ("PRIMARY_PORT", "REPLICA_PORT", "PGBOUNCER_PORT")}
    env.update(SANDBOX_FAST="1", SANDBOX_QUIET="1", SANDBOX_REPLICA="0")

    def start():
        started = subprocess.run([str(SANDBOX), "start", str(root)], env=env, capture_output=True, text=True,
                                 timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr

    try:
        start()
        if server_conf:  # the sandbox's primary reads its local.conf on every start
            subprocess.run(["sh", "-c", f"cat > {root / 'primary' / 'local.conf'}"], input=server_conf, text=True,
                           check=True, **service_user())
            subprocess.run([str(SANDBOX), "stop", str(root)], env=env, capture_output=True, timeout=120, check=True)
            start()
        facts = {}
        for name in ("sandbox.env", "secrets.env"):
            facts.update(line.split("=", 1) for line in (root / name).read_text().splitlines()
                         if "=" in line and not line.startswith("#"))
        port = int(facts["PRIMARY_PORT"])
        superuser = {"user": "postgres", "password": facts["POSTGRES_PASSWORD"]}
        escaped = PASSWORD.replace("'", "''")
        psql(port, "postgres", f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{escaped}' IN ROLE exam_results_writer",
             **superuser)
        psql(port, "postgres", f"CREATE ROLE {READER_USER} LOGIN PASSWORD '{escaped}' IN ROLE exam_results_reader",
             **superuser)
        yield facts
    finally:
        subprocess.run([str(SANDBOX), "destroy", str(root)], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def sandbox(workdir):
    """The database sandbox every live test uses: its facts and passwords."""
    with sandboxed_postgres(workdir / "sandbox") as facts:
        yield facts


@pytest.fixture(scope="module")
def postgres(sandbox):
    """The sandbox's primary, with login roles for the chart's PgBouncer whose password
    exercises the userlist escaping, and an empty database for the chart's migration Job."""
    port = int(sandbox["PRIMARY_PORT"])
    superuser = {"user": "postgres", "password": sandbox["POSTGRES_PASSWORD"]}
    psql(port, "postgres", f"CREATE DATABASE {JOB_DB} OWNER exam_owner", **superuser)
    yield port


def rendered_script(rendered, configmap, key):
    return rendered.one("ConfigMap", configmap)["data"][key]


def write_secret(directory, port, **override):
    """The connection Secret's keys as files, the way a Secret volume mounts them."""
    directory.mkdir(exist_ok=True)
    keys = {"rw-host": "127.0.0.1", "ro-host": "127.0.0.1", "port": str(port), "dbname": "exam_results",
            "username": APP_USER, "password": PASSWORD, "app-username": APP_USER, "app-password": PASSWORD,
            "reader-username": READER_USER, "reader-password": PASSWORD}
    keys.update(override)
    for key, value in keys.items():
        (directory / key).write_text(value)
    if os.geteuid() == 0:
        for path in [directory, *directory.iterdir()]:
            shutil.chown(path, "postgres", "postgres")
    return directory


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def run_migrate(script_path, sandbox, workdir):
    """migrate.sh as the Job runs it: connection settings only from the mounted Secret (the owner)."""
    secret = write_secret(workdir / "db-secret", sandbox["PRIMARY_PORT"], dbname=JOB_DB, username="exam_owner",
                          password=sandbox["EXAM_OWNER_PASSWORD"])
    env = clean_env(DATABASE_SECRET_DIR=str(secret), MIGRATIONS_DIR=str(cs.CHART / "migrations"), TMPDIR=str(workdir))
    return subprocess.run(["sh", str(script_path)], capture_output=True, text=True, env=env, timeout=120)


def test_migrate_script_applies_sql_migrations_and_is_safe_to_rerun(sandbox, postgres, workdir):
    script = workdir / "migrate.sh"
    script.write_text(rendered_script(cs.render(), "exam-results-migrations", "migrate.sh"))
    files = sorted(p.name for p in (cs.REPO / "sql" / "migrations").glob("*.sql"))
    first = run_migrate(script, sandbox, workdir)
    assert first.returncode == 0, first.stdout + first.stderr
    for name in files:
        assert f"migrate: applying {name}" in first.stdout
    assert f"migrate: done, {len(files)} file(s) applied" in first.stdout
    owner = {"user": "exam_owner", "password": sandbox["EXAM_OWNER_PASSWORD"]}
    tables = psql(postgres, JOB_DB, "SELECT count(*) FROM pg_class WHERE relname = 'student_results'", **owner)
    assert tables.stdout.strip() == "1"
    second = run_migrate(script, sandbox, workdir)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"migrate: done, 0 file(s) applied, {len(files)} already applied" in second.stdout
    broken = workdir / "broken"
    broken.mkdir()
    (broken / "0001_bad.sql").write_text("SELECT * FROM no_such_table;\n")
    env_fail = run_migrate_dir(script, sandbox, workdir, broken)
    assert env_fail.returncode != 0 and "no_such_table" in env_fail.stderr


def run_migrate_dir(script, sandbox, workdir, directory):
    env = clean_env(PGHOST="127.0.0.1", PGPORT=sandbox["PRIMARY_PORT"], PGDATABASE=JOB_DB, PGUSER="exam_owner",
                    PGPASSWORD=sandbox["EXAM_OWNER_PASSWORD"], MIGRATIONS_DIR=str(directory), TMPDIR=str(workdir))
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=120)


def test_migrate_script_names_a_missing_secret_key(workdir):
    script = workdir / "migrate-missing.sh"
    script.write_text(rendered_script(cs.render(), "exam-results-migrations", "migrate.sh"))
    secret = workdir / "partial-secret"
    write_secret(secret, 5432)
    (secret / "password").unlink()
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30,
                            env=clean_env(DATABASE_SECRET_DIR=str(secret), DATABASE_SECRET_NAME="exam-results-db"))
    assert result.returncode == 1
    assert f"PGPASSWORD is not set and {secret}/password is missing or empty (Secret exam-results-db)" in result.stderr


def pgbouncer_bin() -> str:
    """Debian installs PgBouncer in /usr/sbin, which a non-login PATH may lack."""
    found = shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None)
    assert found, "pgbouncer not found: install the Debian package pgbouncer (.ci/apt-knative.txt)"
    return found


def pgbouncer_version() -> tuple[int, int]:
    out = subprocess.run([pgbouncer_bin(), "--version"], capture_output=True, text=True).stdout
    major, minor = re.search(r"PgBouncer (\d+)\.(\d+)", out).groups()
    return int(major), int(minor)


@pytest.fixture(scope="module")
def pgbouncer(postgres, workdir):
    port = free_port()
    # the sandbox serves no TLS (test_tls_live.py covers verify-full)
    rendered = cs.render(sets=(f"pgbouncer.port={port}", "database.tls.sslmode=disable"))
    script = workdir / "render-config.sh"
    script.write_text(rendered_script(rendered, "pgbouncer-config", "render-config.sh"))
    runtime = workdir / "runtime"
    runtime.mkdir()
    if os.geteuid() == 0:
        shutil.chown(runtime, "postgres")
    secret = write_secret(workdir / "pgbouncer-secret", postgres)
    env = clean_env(PGBOUNCER_SECRET_DIR=str(secret), PGBOUNCER_RUNTIME_DIR=str(runtime))
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=30, **service_user())
    assert result.returncode == 0, result.stderr
    ini = runtime / "pgbouncer.ini"
    config = ini.read_text()
    if pgbouncer_version() < (1, 21):
        print(f"local PgBouncer {pgbouncer_version()} predates max_prepared_statements; dropping it for this test")
        config = re.sub(r"(?m)^max_prepared_statements.*\n", "", config)
        subprocess.run(["sh", "-c", f"cat > {ini}"], input=config, text=True, check=True, **service_user())
    log = open(workdir / "pgbouncer.log", "w")
    proc = subprocess.Popen([pgbouncer_bin(), str(ini)], stdout=log, stderr=subprocess.STDOUT, **service_user())
    try:
        assert wait_for(lambda: psql(port, "exam_results", "SELECT 1", check=False).returncode == 0), (workdir / "pgbouncer.log").read_text()
        yield port, proc, runtime
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def test_render_config_writes_a_private_userlist_with_escaped_quotes(pgbouncer):
    _, _, runtime = pgbouncer
    userlist = runtime / "userlist.txt"
    assert oct(userlist.stat().st_mode & 0o777) == "0o600"
    app, reader, exporter = userlist.read_text().splitlines()
    assert app == f'"{APP_USER}" "pa""ss\'w0rd$x"'
    assert reader == f'"{READER_USER}" "pa""ss\'w0rd$x"'
    assert re.fullmatch(r'"pgbouncer_exporter" "[0-9a-f]{48}"', exporter)
    pgpass = runtime / "exporter.pgpass"
    assert oct(pgpass.stat().st_mode & 0o777) == "0o600"
    assert pgpass.read_text().rsplit(":", 1)[1].strip() == exporter.split('"')[3]


def test_pgbouncer_serves_both_logical_databases_with_scram(pgbouncer, postgres):
    port, _, _ = pgbouncer
    assert psql(port, "exam_results", "SELECT current_database()").stdout.strip() == "exam_results"
    assert psql(port, "exam_results_ro", "SELECT current_database()").stdout.strip() == "exam_results"
    # the server-side statement_timeout backstop (connect_query) is in force on pooled connections
    assert psql(port, "exam_results", "SHOW statement_timeout").stdout.strip() == "10s"
    assert psql(port, "exam_results_ro", "SHOW statement_timeout").stdout.strip() == "10s"
    wrong = psql(port, "exam_results", "SELECT 1", password="wrong", check=False)
    assert wrong.returncode != 0 and "authentication failed" in wrong.stderr


def test_the_exporter_logs_in_with_its_password_file_and_only_it_reads_the_console(pgbouncer):
    port, _, runtime = pgbouncer
    # what the exporter does: user pgbouncer_exporter, password from PGPASSFILE
    env = clean_env(PGPASSFILE=str(runtime / "exporter.pgpass"), PGCONNECT_TIMEOUT="3")
    argv = ["psql", "-X", "-Atq", f"postgres://pgbouncer_exporter@127.0.0.1:{port}/pgbouncer?sslmode=disable", "-c", "SHOW POOLS"]
    pools = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, **service_user())
    assert pools.returncode == 0, pools.stderr
    assert "exam_results_ro" in pools.stdout
    config = subprocess.run(argv[:-1] + ["SHOW CONFIG"], capture_output=True, text=True, env=env, timeout=30, **service_user())
    assert re.search(r"(?m)^pool_mode\|transaction\|", config.stdout), config.stdout + config.stderr
    # the application's credentials do not open the console
    denied = psql(port, "pgbouncer", "SHOW POOLS", check=False)
    assert denied.returncode != 0 and "not allowed" in denied.stderr


def test_sigint_lets_an_in_flight_transaction_finish_then_exits(pgbouncer):
    port, proc, _ = pgbouncer
    env = dict(os.environ, PGPASSWORD=PASSWORD)
    slow = subprocess.Popen(["psql", "-X", "-Atq", "-h", "127.0.0.1", "-p", str(port), "-U", APP_USER, "-d", "exam_results",
                             "-c", "BEGIN; SELECT pg_sleep(1.5); SELECT 'finished'; COMMIT;"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # what the preStop hook sends (kill -INT 1)
    out, err = slow.communicate(timeout=30)
    assert slow.returncode == 0, err
    assert "finished" in out
    assert proc.wait(timeout=30) is not None  # PgBouncer exited once the transaction was done


@pytest.mark.parametrize("override, message", [
    ({"ro-host": ""}, "key ro-host of Secret exam-results-db is missing or empty"),
    ({"rw-host": "db host"}, "contains whitespace, a quote, '=' or ';'"),
    ({"dbname": "exam_results sslmode=disable"}, "contains whitespace, a quote, '=' or ';'"),
    ({"app-username": "app;drop"}, "contains whitespace, a quote, '=' or ';'"),
])
def test_render_config_refuses_unusable_secret_values(tmp_path, override, message):
    script = tmp_path / "render-config.sh"
    script.write_text(rendered_script(cs.render(), "pgbouncer-config", "render-config.sh"))
    secret = tmp_path / "secret"
    secret.mkdir()
    values = {"rw-host": "rw", "ro-host": "ro", "port": "5432", "dbname": "exam_results", "app-username": "exam_app",
              "app-password": "x", "reader-username": "exam_reader", "reader-password": "x"}
    values.update(override)
    for key, value in values.items():
        (secret / key).write_text(value)
    env = clean_env(PGBOUNCER_SECRET_DIR=str(secret), PGBOUNCER_RUNTIME_DIR=str(tmp_path))
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "pgbouncer.ini").exists()
