"""verify-full for real: a throw-away PostgreSQL on 127.0.0.1 serving TLS with
a certificate from a test CA. PgBouncer configured by the chart's
render-config.sh (its default database.tls) and libpq with the migration
Job's environment (PGSSLMODE, PGSSLROOTCERT) connect when given that CA and
refuse the server when given another CA, which `prefer` never did.

The PostgreSQL/PgBouncer helpers are test_live_database.py's.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

import chart_support as cs
from test_live_database import (APP_USER, PASSWORD, clean_env, free_port, pgbouncer_bin, pgbouncer_version, psql, rendered_script,
                                sandboxed_postgres, service_user, wait_for, write_secret)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=directory)
    return directory / f"{name}.crt"


def private_dir(prefix):
    """A directory the postgres user (when we are root) can use."""
    path = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


@pytest.fixture(scope="module")
def tls():
    """A test CA, a server certificate it signed for 127.0.0.1/localhost, and an unrelated CA."""
    d = private_dir("exam-results-tls-")
    make_ca(d, "ca")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.cnf", "-out", "server.crt", cwd=d)
    other = make_ca(d, "other")
    for path in [d, *d.iterdir()]:
        path.chmod(0o700 if path.is_dir() else 0o600 if path.suffix == ".key" else 0o644)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
    yield d / "ca.crt", other, d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_postgres(tls):
    _, _, certs = tls
    workdir = private_dir("exam-results-tls-pg-")
    try:
        tls_conf = f"ssl = on\nssl_cert_file = '{certs / 'server.crt'}'\nssl_key_file = '{certs / 'server.key'}'\n"
        with sandboxed_postgres(workdir / "sandbox", tls_conf) as facts:
            yield int(facts["PRIMARY_PORT"]), workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def listening(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_pgbouncer(pg_port, workdir, ca_file, name):
    """PgBouncer configured by render-config.sh with the chart's default TLS settings and the given CA."""
    port = free_port()
    script = workdir / f"render-config-{name}.sh"
    script.write_text(rendered_script(cs.render(sets=(f"pgbouncer.port={port}",)), "pgbouncer-config", "render-config.sh"))
    runtime = workdir / f"runtime-{name}"
    runtime.mkdir()
    if os.geteuid() == 0:
        shutil.chown(runtime, "postgres")
    secret = write_secret(workdir / f"secret-{name}", pg_port)
    env = clean_env(PGBOUNCER_SECRET_DIR=str(secret), PGBOUNCER_RUNTIME_DIR=str(runtime), PGBOUNCER_CA_FILE=str(ca_file))
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=30, **service_user())
    assert result.returncode == 0, result.stderr
    ini = runtime / "pgbouncer.ini"
    config = ini.read_text()
    assert "server_tls_sslmode = verify-full" in config and f"server_tls_ca_file = {ca_file}" in config
    if pgbouncer_version() < (1, 21):
        config = re.sub(r"(?m)^max_prepared_statements.*\n", "", config)
        subprocess.run(["sh", "-c", f"cat > {ini}"], input=config, text=True, check=True, **service_user())
    log = workdir / f"pgbouncer-{name}.log"
    proc = subprocess.Popen([pgbouncer_bin(), str(ini)], stdout=open(log, "w"), stderr=subprocess.STDOUT, **service_user())
    assert wait_for(lambda: listening(port), timeout=20), log.read_text()
    return port, proc, log


@pytest.mark.parametrize("ca, connects", [("ca", True), ("other", False)])
def test_pgbouncer_connects_only_to_a_server_whose_certificate_the_ca_signed(tls, tls_postgres, ca, connects):
    ca_file = tls[0] if ca == "ca" else tls[1]
    pg_port, workdir = tls_postgres
    port, proc, log = start_pgbouncer(pg_port, workdir, ca_file, ca)
    try:
        result = psql(port, "exam_results", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", check=False)
        if connects:
            assert result.returncode == 0, result.stderr + log.read_text()
            assert result.stdout.strip() == "t"  # the server side of the pooled connection is TLS
        else:
            assert result.returncode != 0
            assert re.search(r"certificate verify failed|verify failed|TLS", log.read_text() + result.stderr, re.I)
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize("ca, connects", [("ca", True), ("other", False)])
def test_the_migration_jobs_libpq_settings_verify_the_server(tls, tls_postgres, ca, connects):
    (job,) = cs.render().all("Job")
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    assert env["PGSSLMODE"] == "verify-full"
    pg_port, _ = tls_postgres
    ca_file = tls[0] if ca == "ca" else tls[1]
    result = subprocess.run(["psql", "-X", "-Atq", "-h", "127.0.0.1", "-p", str(pg_port), "-U", APP_USER, "-d", "exam_results",
                             "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
                            env=clean_env(PGPASSWORD=PASSWORD, PGSSLMODE=env["PGSSLMODE"], PGSSLROOTCERT=str(ca_file)),
                            capture_output=True, text=True, timeout=30)
    if connects:
        assert result.returncode == 0 and result.stdout.strip() == "t", result.stderr
    else:
        assert result.returncode != 0 and "certificate verify failed" in result.stderr
