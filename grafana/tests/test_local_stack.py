"""The local observability stack (grafana/local/start-prometheus.sh and stop-prometheus.sh):
a real Prometheus and real exporters on 127.0.0.1, on free ports, in a temporary state dir.

The tests with a database start the database sandbox (.ci/sandbox.sh: PostgreSQL and PgBouncer
with the production roles): every data-tier panel query over PostgreSQL and PgBouncer metrics
returns data, and with the database gone no generated secret reaches a log or a command line."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

import generate
from conftest import GRAFANA, REPO, RULES, require_tool, substitute

START = GRAFANA / "local" / "start-prometheus.sh"
STOP = GRAFANA / "local" / "stop-prometheus.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def query(prom: str, expr: str) -> list:
    data = get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert data["status"] == "success", data
    return data["data"]["result"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as err:  # noqa: BLE001 - keep polling until the deadline
            last = err
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}: {last!r}")


class Stack:
    def __init__(self, state: Path, env: dict) -> None:
        self.state, self.env = state, env
        self.prom = f"http://127.0.0.1:{env['PROMETHEUS_PORT']}"

    def start(self) -> str:
        res = subprocess.run([str(START), str(self.state)], env=self.env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    def stop(self) -> str:
        return subprocess.run([str(STOP), str(self.state)], env=self.env, capture_output=True,
                              text=True, timeout=60).stdout

    def pids(self) -> list[int]:
        return [int(p.read_text()) for p in (self.state / "observability").glob("*.pid")]


#: An override of get-result's port (its metrics: + 1000); nothing needs to listen there.
OVERRIDDEN_GET_RESULT_PORT = 18082


def stack_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({
        "PROMETHEUS_PORT": str(free_port()),
        "PGBOUNCER_EXPORTER_PORT": str(free_port()),
        "POSTGRES_PRIMARY_EXPORTER_PORT": str(free_port()),
        "POSTGRES_REPLICA_EXPORTER_PORT": str(free_port()),
        # nothing listens on these unless a test starts something there
        "PGBOUNCER_PORT": str(free_port()),
        "POSTGRES_PRIMARY_PORT": str(free_port()),
        "POSTGRES_REPLICA_PORT": str(free_port()),
    })
    env.update(extra)
    return env


@pytest.fixture
def stack(tmp_path):
    require_tool("prometheus")
    require_tool("promtool")
    require_tool("prometheus-postgres-exporter")
    # get-result's port overridden as `GET_RESULT_PORT=... make up` would: Prometheus must follow it
    s = Stack(tmp_path / "state", stack_env(GET_RESULT_PORT=str(OVERRIDDEN_GET_RESULT_PORT)))
    yield s
    s.stop()


def test_start_script_runs_prometheus_with_all_targets_and_the_alert_rules(stack):
    out = stack.start()
    assert f"Prometheus: {stack.prom}" in out

    targets = wait_for(lambda: [t for t in get(f"{stack.prom}/api/v1/targets")["data"]["activeTargets"]
                                if len(get(f"{stack.prom}/api/v1/targets")["data"]["activeTargets"]) >= 9],
                       30, "nine scrape targets")
    by_job: dict[str, set] = {}
    for t in targets:
        by_job.setdefault(t["labels"]["job"], set()).add(t["scrapeUrl"])
        assert t["labels"]["namespace"] == "local" and t["labels"]["pod"]
    manifest = yaml.safe_load((REPO / "knative" / "exam-results" / "functions.yaml").read_text())["functions"]
    ports = {f["name"]: OVERRIDDEN_GET_RESULT_PORT if f["name"] == "get-result" else f["port"] for f in manifest}
    assert by_job["exam-results-functions"] == {f"http://127.0.0.1:{p + 1000}/metrics" for p in ports.values()}
    assert by_job["pgbouncer"] == {f"http://127.0.0.1:{stack.env['PGBOUNCER_EXPORTER_PORT']}/metrics"}
    assert len(by_job["postgres"]) == 2

    groups = get(f"{stack.prom}/api/v1/rules")["data"]["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    expected = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert loaded == expected

    # Every rule evaluates without error in a real Prometheus (not only in promtool).
    def evaluated():
        rules = [r for g in get(f"{stack.prom}/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        return rules if all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None
    rules = wait_for(evaluated, 40, "a first evaluation of every rule")
    assert {r["name"]: r["health"] for r in rules if r["health"] != "ok"} == {}

    # The exporters answer while their databases are down, and the relabelling turns
    # postgres_exporter's pg_up into CloudNativePG's cnpg_collector_up.
    wait_for(lambda: query(stack.prom, 'up{job="pgbouncer"} == 1'), 30, "PgBouncer exporter scraped")
    wait_for(lambda: len(query(stack.prom, 'up{job="postgres"} == 1')) == 2, 30, "PostgreSQL exporters scraped")
    assert [r["value"][1] for r in query(stack.prom, "pgbouncer_up")] == ["0"]
    down = wait_for(lambda: query(stack.prom, "cnpg_collector_up"), 30, "cnpg_collector_up")
    assert {r["metric"]["pod"]: r["value"][1] for r in down} == {"postgres-primary": "0", "postgres-replica": "0"}
    assert query(stack.prom, "pg_up") == []

    pids = stack.pids()
    assert len(pids) == 4
    stopped = stack.stop()
    assert stopped.count("stopped ") == 4
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_start_script_can_run_twice(stack):
    stack.start()
    first = stack.pids()
    stack.start()
    second = stack.pids()
    assert set(first).isdisjoint(second)
    for pid in first:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ------------------------------------------------------------------ with PostgreSQL and PgBouncer
SANDBOX = REPO / ".ci" / "sandbox.sh"


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def database():
    """The database sandbox (.ci/sandbox.sh, as make up starts it, without a replica): its
    directory, facts and passwords. The exporters log in with its monitoring roles."""
    if not SANDBOX.exists():
        pytest.fail(f"{SANDBOX} is missing")
    root = Path(tempfile.mkdtemp(prefix="er-obs-"))
    env = {k: v for k, v in os.environ.items() if k not in ("PRIMARY_PORT", "REPLICA_PORT", "PGBOUNCER_PORT")}
    env.update(SANDBOX_FAST="1", SANDBOX_QUIET="1", SANDBOX_REPLICA="0")
    started = subprocess.run([str(SANDBOX), "start", str(root)], env=env, capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield {"dir": root, **read_env_file(root / "sandbox.env"), **read_env_file(root / "secrets.env")}
    finally:
        subprocess.run([str(SANDBOX), "destroy", str(root)], capture_output=True, timeout=120)


DATABASE_METRICS = ("cnpg_", "pgbouncer_")


def test_data_tier_queries_over_postgres_and_pgbouncer_return_data(tmp_path, database):
    require_tool("prometheus")
    require_tool("prometheus-postgres-exporter")
    env = stack_env(PGBOUNCER_PORT=database["PGBOUNCER_PORT"], POSTGRES_PRIMARY_PORT=database["PRIMARY_PORT"],
                    SANDBOX_DIR=str(database["dir"]))
    s = Stack(tmp_path / "state", env)
    try:
        s.start()
        # some traffic through the pooler, so pools and counters move
        for _ in range(5):
            subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", database["PGBOUNCER_PORT"], "-U", "exam_reader",
                            "exam_results", "-c", "SELECT count(*) FROM student_results"],
                           check=True, capture_output=True, env=dict(os.environ, PGPASSWORD=database["EXAM_READER_PASSWORD"]))
        wait_for(lambda: query(s.prom, 'pgbouncer_up == 1'), 30, "pgbouncer_up == 1")
        queries = [q for q in generate.panel_queries()
                   if q["scope"] == "local" and any(m in q["expr"] for m in DATABASE_METRICS)]
        assert len(queries) >= 10
        time.sleep(12)  # at least two scrapes inside every rate() window
        empty = [f"{q['panel']} {q['refId']}" for q in queries if not query(s.prom, substitute(q["expr"]))]
        assert empty == [], f"no data for: {empty}"
        up = {r["metric"]["pod"]: r["value"][1] for r in query(s.prom, "cnpg_collector_up")}
        assert up == {"postgres-primary": "1", "postgres-replica": "0"}
        sizes = query(s.prom, 'cnpg_exam_results_partition_size_bytes{parent="student_results"}')
        assert {r["metric"]["partition"] for r in sizes} >= {"student_results_2026"}
    finally:
        s.stop()


def test_no_secret_reaches_a_log_or_a_command_line_when_connections_fail(tmp_path, database):
    """The exporters and the migration runner fail to connect (the primary is stopped, the replica
    never existed); every log they and the servers wrote is searched for every generated secret."""
    require_tool("prometheus")
    require_tool("prometheus-postgres-exporter")
    secrets = {k: v for k, v in read_env_file(database["dir"] / "secrets.env").items()}
    env = stack_env(PGBOUNCER_PORT=database["PGBOUNCER_PORT"], POSTGRES_PRIMARY_PORT=database["PRIMARY_PORT"],
                    SANDBOX_DIR=str(database["dir"]))
    s = Stack(tmp_path / "state", env)
    try:
        s.start()
        pids = s.pids()
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            leaked = [name for name, value in secrets.items() if value in cmdline]
            assert leaked == [], f"process {pid} carries {leaked} on its command line"
        subprocess.run([str(SANDBOX), "kill", str(database["dir"]), "primary"], check=True, capture_output=True)
        exporters = [env["POSTGRES_PRIMARY_EXPORTER_PORT"], env["POSTGRES_REPLICA_EXPORTER_PORT"],
                     env["PGBOUNCER_EXPORTER_PORT"]]
        for _ in range(3):  # every scrape is a failing connection attempt
            for port in exporters:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    r.read()
            time.sleep(1)
        wait_for(lambda: query(s.prom, "cnpg_collector_up == 0"), 30, "the exporters report the database down")
        migrate_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        migrate_env.update(PGHOST="127.0.0.1", PGPORT=database["PRIMARY_PORT"], PGDATABASE="exam_results",
                           PGUSER="exam_owner", PGPASSWORD=secrets["EXAM_OWNER_PASSWORD"],
                           EXAM_APP_PASSWORD=secrets["EXAM_APP_PASSWORD"],
                           EXAM_READER_PASSWORD=secrets["EXAM_READER_PASSWORD"])
        migrate = subprocess.run([str(REPO / "sql" / "migrate.sh")], env=migrate_env, capture_output=True, text=True,
                                 timeout=60)
        assert migrate.returncode != 0 and "not reachable" in migrate.stderr
        (tmp_path / "migrate.log").write_text(migrate.stdout + migrate.stderr)
    finally:
        s.stop()
        subprocess.run([str(SANDBOX), "start", str(database["dir"])], capture_output=True, timeout=120)

    logs = [p for root in (database["dir"], tmp_path) for p in root.rglob("*.log") if p.is_file()]
    assert {p.name for p in logs} >= {"primary.log", "pgbouncer.log", "postgres-exporter-primary.log",
                                     "postgres-exporter-replica.log", "pgbouncer-exporter.log", "migrate.log"}
    errors = "".join(p.read_text(errors="replace") for p in logs if "exporter" in p.name)
    assert "error" in errors.lower(), "the exporters logged no failure: the test proved nothing"
    found = {f"{p.name}: {name}" for p in logs for name, value in secrets.items()
             if value in p.read_text(errors="replace")}
    assert found == set()
