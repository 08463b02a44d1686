"""`make up` (.ci/stack.sh) takes the functions, their roles and ports from
functions.yaml, and `<NAME>_PORT` overrides reach what it starts, checks and
prints (it used to print 8081-8085 whatever the overrides)."""

from __future__ import annotations

import os
import re
import subprocess

import yaml

import chart_support as cs

STACK = cs.REPO / ".ci" / "stack.sh"
MANIFEST = yaml.safe_load((cs.CHART / "functions.yaml").read_text())["functions"]


def stack(*args, **env):
    base = {k: v for k, v in os.environ.items() if not k.endswith("_PORT")}
    return subprocess.run([str(STACK), *args], env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_the_function_list_is_the_manifest():
    out = stack("functions").stdout.splitlines()
    assert out == [f"{f['name']} {f['access']} {f['method']} {f['route']} {f['port']}" for f in MANIFEST]


def test_port_overrides_reach_the_list_and_status(tmp_path):
    overrides = {f"{f['name'].upper().replace('-', '_')}_PORT": str(20400 + i) for i, f in enumerate(MANIFEST)}
    out = stack("functions", **overrides).stdout.splitlines()
    assert [line.split()[-1] for line in out] == list(overrides.values())
    status = stack("status", STATE_DIR=str(tmp_path), **overrides).stdout
    for f, port in zip(MANIFEST, overrides.values()):
        assert f"http://127.0.0.1:{port}" in status, status
        assert f":{f['port']} " not in status


def test_each_function_gets_its_roles_credentials_and_token(tmp_path):
    (tmp_path / "sandbox.env").write_text("PG_BIN=/nonexistent\nPGBOUNCER_PORT=6999\n")
    (tmp_path / "secrets.env").write_text("EXAM_APP_PASSWORD=app-pw\nEXAM_READER_PASSWORD=reader-pw\n"
                                          "WRITE_TOKEN=w-token\nREAD_TOKEN=r-token\n")
    for f in MANIFEST:
        result = stack("env", f["name"], "7000", STATE_DIR=str(tmp_path))
        assert result.returncode == 0, result.stderr
        env = dict(line.split("=", 1) for line in result.stdout.splitlines())
        if f["access"] == "write":
            assert env["DATABASE_URL"] == "postgres://exam_app@127.0.0.1:6999/exam_results"
            assert env["DATABASE_PASSWORD"] == "app-pw" and env["WRITE_TOKENS"] == "w-token"
            assert "READ_FALLBACK_DATABASE_URL" not in env
        else:
            assert env["DATABASE_URL"] == "postgres://exam_reader@127.0.0.1:6999/exam_results_ro"
            assert env["READ_FALLBACK_DATABASE_URL"] == "postgres://exam_reader@127.0.0.1:6999/exam_results"
            assert env["DATABASE_PASSWORD"] == "reader-pw" and env["READ_TOKENS"] == "r-token"
            assert "WRITE_TOKENS" not in env


def _default_ports(script):
    """The `NAME_PORT="${NAME_PORT:-N}"` defaults a script of the local system listens on."""
    text = (cs.REPO / script).read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r'^(?:export )?(\w+_PORT)="\$\{\w+:-(\d+)\}"', text, re.M)}


def test_every_default_port_of_make_up_is_its_own(tmp_path):
    """Each function and its metrics port (port + 1000), PostgreSQL, PgBouncer, Prometheus and
    the exporters: no two on one port (a function at 8090 had its metrics on Prometheus's 9090)."""
    (tmp_path / "sandbox.env").write_text("PG_BIN=/nonexistent\nPGBOUNCER_PORT=6999\n")
    (tmp_path / "secrets.env").write_text("WRITE_TOKEN=w\nREAD_TOKEN=r\n")

    def owner(name):
        # start-prometheus.sh's POSTGRES_PRIMARY_PORT is the stack's PRIMARY_PORT (and the replica's)
        return name.removeprefix("POSTGRES_")

    ports = {}
    for script in (".ci/stack.sh", "grafana/local/start-prometheus.sh"):
        for name, port in _default_ports(script).items():
            ports.setdefault(port, set()).add(owner(name))
    for line in stack("functions").stdout.splitlines():
        name, port = line.split()[0], line.split()[-1]
        env = dict(row.split("=", 1) for row in stack("env", name, port, STATE_DIR=str(tmp_path)).stdout.splitlines())
        ports.setdefault(int(env["PORT"]), set()).add(name)
        ports.setdefault(int(env["METRICS_PORT"]), set()).add(f"{name} metrics")
    clashes = {port: names for port, names in ports.items() if len(names) > 1}
    assert len(ports) >= len(MANIFEST) * 2 + 4 and not clashes, clashes
