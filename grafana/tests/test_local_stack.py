"""The local observability stack (grafana/local/start-prometheus.sh and stop-prometheus.sh):
a real Prometheus and real exporters on 127.0.0.1, on free ports, in a temporary state dir.

The second test also starts a throw-away PostgreSQL and PgBouncer (Debian's packages) and checks
that every data-tier panel query over PostgreSQL and PgBouncer metrics returns data."""
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
    s = Stack(tmp_path / "state", stack_env())
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
    assert by_job["exam-results-functions"] == {f"http://127.0.0.1:{p}/metrics" for p in range(9081, 9086)}
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
def pg_bindir() -> Path | None:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").exists():
            return d
    return None


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture
def database(tmp_path):
    bindir, pgbouncer = pg_bindir(), shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if bindir is None or not Path(pgbouncer).exists():
        pytest.fail("PostgreSQL and PgBouncer are needed: install the packages in .ci/apt-observability.txt")
    # pytest's tmp_path is private to root; PostgreSQL runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="exam-results-obs-db-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    pg_port, pgb_port = free_port(), free_port()
    data = root / "data"
    subprocess.run(as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True, timeout=120)
    subprocess.run(as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "pg.log"), "-o",
                                f"-p {pg_port} -k {root} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True, timeout=120)
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres"]
    try:
        subprocess.run(psql + ["-c", "CREATE DATABASE exam_results"], check=True, capture_output=True)
        for f in sorted((REPO / "sql" / "migrations").glob("*.sql")):
            subprocess.run(psql + ["-d", "exam_results", "-f", str(f)], check=True, capture_output=True)
        (root / "users.txt").write_text('"postgres" ""\n"stats" ""\n')
        (root / "pgbouncer.ini").write_text(f"""[databases]
exam_results = host=127.0.0.1 port={pg_port} dbname=exam_results
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {pgb_port}
unix_socket_dir =
auth_type = trust
auth_file = {root}/users.txt
pool_mode = transaction
stats_users = stats
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
""")
        if os.geteuid() == 0:
            for p in root.iterdir():
                shutil.chown(p, "postgres")
        subprocess.run(as_postgres([pgbouncer, "-d", str(root / "pgbouncer.ini")]), check=True,
                       capture_output=True, timeout=30)
        wait_for(lambda: subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(pgb_port), "-U", "stats",
                                         "pgbouncer", "-c", "SHOW POOLS"], capture_output=True).returncode == 0,
                 20, "PgBouncer")
        yield {"pg_port": pg_port, "pgb_port": pgb_port}
    finally:
        pid_file = root / "pgbouncer.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), 15)
            except ProcessLookupError:
                pass
        subprocess.run(as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


DATABASE_METRICS = ("cnpg_", "pgbouncer_")


def test_data_tier_queries_over_postgres_and_pgbouncer_return_data(tmp_path, database):
    require_tool("prometheus")
    require_tool("prometheus-postgres-exporter")
    env = stack_env(PGBOUNCER_PORT=str(database["pgb_port"]), OBS_PGBOUNCER_USER="stats",
                    POSTGRES_PRIMARY_PORT=str(database["pg_port"]))
    s = Stack(tmp_path / "state", env)
    try:
        s.start()
        # some traffic through the pooler, so pools and counters move
        for _ in range(5):
            subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(database["pgb_port"]), "-U", "postgres",
                            "exam_results", "-c", "SELECT count(*) FROM student_results"],
                           check=True, capture_output=True)
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
