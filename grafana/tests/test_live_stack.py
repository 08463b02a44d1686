"""Against the running local stack (`make up`): after a short burst of requests, every panel
query over the functions', PgBouncer's and PostgreSQL's own metrics returns data from the local
Prometheus. Queries over Kubernetes-only metrics (kubelet, kube-state-metrics, Knative) are
listed, not run: the local stack has no cluster.

Skipped unless LIVE_STACK=1. Settings:
  LIVE_PROMETHEUS_URL  (default http://127.0.0.1:9090)
  LIVE_FUNCTIONS_HOST  (default 127.0.0.1; each function's port as `make up` uses it: its
                       port in knative/exam-results/functions.yaml unless <NAME>_PORT overrides it,
                       e.g. GET_RESULT_PORT, as in .ci/stack.sh)
  LIVE_WRITE_TOKEN     (default: WRITE_TOKEN from $STATE_DIR/secrets.env, STATE_DIR default .local)
"""
from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

import generate
from conftest import CHART, REPO, RULES, substitute

pytestmark = pytest.mark.skipif(os.environ.get("LIVE_STACK") != "1",
                                reason="needs the local stack: make up, then LIVE_STACK=1")

PROM = os.environ.get("LIVE_PROMETHEUS_URL", "http://127.0.0.1:9090")
HOST = os.environ.get("LIVE_FUNCTIONS_HOST", "127.0.0.1")


def manifest() -> list[dict]:
    """The functions, from the one list of them (the chart's functions.yaml)."""
    return yaml.safe_load((CHART / "functions.yaml").read_text())["functions"]


def local_port(function: dict) -> int:
    """The port `make up` gives a function: <NAME>_PORT (get-result: GET_RESULT_PORT), else
    its port in functions.yaml (.ci/stack.sh's rule)."""
    return int(os.environ.get(function["name"].upper().replace("-", "_") + "_PORT") or function["port"])


PORTS = {f["name"]: local_port(f) for f in manifest()}
BURST_SECONDS = 10
BURST_MAX_REQUESTS = 600


def write_token() -> str | None:
    if os.environ.get("LIVE_WRITE_TOKEN"):
        return os.environ["LIVE_WRITE_TOKEN"]
    secrets = Path(os.environ.get("STATE_DIR", REPO / ".local")) / "secrets.env"
    if secrets.exists():
        for line in secrets.read_text().splitlines():
            if line.startswith("WRITE_TOKEN="):
                return line.split("=", 1)[1]
    return None


def call(function: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> int:
    req = urllib.request.Request(f"http://{HOST}:{PORTS[function]}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def prom_query(expr: str) -> list:
    url = f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        data = json.load(r)
    assert data["status"] == "success", data
    return data["data"]["result"]


def burst() -> dict[str, set[int]]:
    """A bounded burst touching every function: reads, writes with and without a token, and
    requests that fail validation, so that error counters and every histogram move."""
    token = write_token()
    seen: dict[str, set[int]] = {f: set() for f in PORTS}
    year = 2026
    deadline = time.monotonic() + BURST_SECONDS
    sent = 0
    while time.monotonic() < deadline and sent < BURST_MAX_REQUESTS:
        roll = random.randint(900_000_000_000, 999_999_999_999)
        steps = [
            ("get-result", "GET", f"/results/{year}/{random.randint(1, 1_000_000)}", None, None),
            ("list-results", "GET", f"/results?exam_year={year}&limit=20", None, None),
            ("get-result", "GET", "/results/not-a-year/1", None, None),
            ("create-result", "POST", "/results", {"roll_number": roll, "exam_year": year, "marks": 50}, None),
            ("create-result", "POST", "/results", {"roll_number": roll, "exam_year": year, "marks": 50}, token),
            ("update-result", "PUT", f"/results/{year}/{roll}", {"marks": 75}, token),
            ("delete-result", "DELETE", f"/results/{year}/{roll}", None, token),
        ]
        # Every other function: its method on its route, without a body (a client error that
        # changes nothing), with the token its kind of access takes.
        covered = {step[0] for step in steps}
        for f in manifest():
            if f["name"] not in covered:
                path = f["route"].replace("{exam_year}", str(year)).replace("{roll_number}", str(roll))
                steps.append((f["name"], f["method"], path, None, token if f["auth"] == "write-token" else None))
        for function, method, path, body, tok in steps:
            seen[function].add(call(function, method, path, body, tok))
            sent += 1
    return seen


def test_every_local_panel_query_returns_data_after_a_burst():
    assert prom_query("up"), f"no Prometheus at {PROM}"
    before = prom_query("sum(http_server_request_duration_seconds_count)")
    statuses = burst()
    assert all(statuses.values()), statuses
    # two scrapes (5 s apart) after the burst so that rate() sees the increase
    time.sleep(12)
    after = prom_query("sum(http_server_request_duration_seconds_count)")
    assert after and (not before or float(after[0]["value"][1]) > float(before[0]["value"][1]))

    queries = generate.panel_queries()
    local = [q for q in queries if q["scope"] == "local"]
    kubernetes_only = [q for q in queries if q["scope"] == "kubernetes"]
    # The in-process read cache is off unless READ_CACHE_CAPACITY is set (make up leaves it
    # off): its panels can only have data where a function exports the cache's metrics.
    cache_on = bool(prom_query("exam_results_read_cache_entries"))
    empty, cache_off = [], []
    for q in local:
        name = f"{q['dashboard']}: {q['panel']} ({q['refId']})"
        if not cache_on and "exam_results_read_cache_" in q["expr"]:
            cache_off.append(name)
        elif not prom_query(substitute(q["expr"])):
            empty.append(name)
    print(f"\n{len(local) - len(cache_off)} local queries returned data; read cache off, not run: {cache_off}")
    print(f"{len(kubernetes_only)} Kubernetes-only queries not run:")
    for q in kubernetes_only:
        print(f"  {q['dashboard']}: {q['panel']} ({q['refId']})")
    assert empty == [], "no data for:\n" + "\n".join(empty)


def test_every_function_and_the_pooler_are_scraped():
    up = {r["metric"]["pod"]: r["value"][1] for r in prom_query('up{job=~"exam-results-functions|pgbouncer|postgres"}')}
    for function in PORTS:
        assert up.get(f"{function}-local") == "1", up
    assert up.get("pgbouncer-local") == "1", up
    assert prom_query("pgbouncer_up == 1"), "the PgBouncer exporter cannot reach PgBouncer"
    assert up.get("postgres-primary") == "1" and up.get("postgres-replica") == "1", up
    functions = {r["metric"]["function"] for r in prom_query("exam_results_build_info")}
    assert functions == set(PORTS)


def test_every_rule_evaluates_without_error():
    url = f"{PROM}/api/v1/rules"
    with urllib.request.urlopen(url, timeout=10) as r:
        groups = json.load(r)["data"]["groups"]
    rules = [rule for g in groups for rule in g["rules"]]
    source = yaml.safe_load(RULES.read_text())["groups"]
    assert len(rules) == sum(len(g["rules"]) for g in source)
    assert {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"} == {}
