"""The smoke tests against a stand-in of the functions' HTTP API.

The stand-in (no Rust build here) follows the contract: one route per
function, JSON errors ``{"error": {"code", "message"}}``, bearer tokens on
writes, reads served from a "replica" that can lag behind the writes.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from promote.smoke import SmokeConfig, make_smoke_test, smoke_roll_number

TOKEN = "smoke-token"
READ_TOKEN = "smoke-read-token"
ROUTE = {"create-result": "POST", "get-result": "GET", "list-results": "GET", "update-result": "PUT",
         "delete-result": "DELETE"}


class Store:
    def __init__(self, replica_lag_reads: int = 0) -> None:
        self.rows: dict[tuple[int, int], int] = {}
        self.lag = replica_lag_reads
        self.pending = 0
        self.lock = threading.Lock()
        self.log: list[str] = []


def make_server(function: str, store: Store, fault: str = "") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def reply(self, status: int, body=None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, status, code):
            self.reply(status, {"error": {"code": code, "message": code.replace("_", " ")}})

        def handle_any(self):
            store.log.append(f"{function} {self.command} {self.path}")
            if self.path in ("/healthz", "/readyz") and self.command == "GET":
                unready = fault == "unready" and self.path == "/readyz"
                return self.reply(503 if unready else 200, {"status": "unavailable" if unready else "ok"})
            if fault == "500":
                return self.error(500, "internal_error")
            if self.command != ROUTE[function]:
                return self.error(405, "method_not_allowed")
            if function == "list-results":  # read token only, as the real function
                if self.headers.get("Authorization") != f"Bearer {READ_TOKEN}":
                    return self.error(401, "unauthorized")
            elif function != "get-result":
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.error(401, "unauthorized")
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            m = re.fullmatch(r"/results/(\d+)/(\d+)", self.path)
            with store.lock:
                if function == "create-result" and self.path == "/results":
                    key = (body["exam_year"], body["roll_number"])
                    if key in store.rows:
                        return self.error(409, "conflict")
                    store.rows[key] = body["marks"]
                    store.pending = store.lag
                    return self.reply(201, body)
                if function == "list-results" and self.path.startswith("/results?"):
                    return self.reply(200, {"results": [], "next_after": None})
                if not m:
                    return self.error(404, "not_found")
                key = (int(m.group(1)), int(m.group(2)))
                if function == "get-result":
                    if store.pending > 0:  # the replica has not replayed the last write yet
                        store.pending -= 1
                        return self.error(404, "not_found")
                    if key not in store.rows:
                        return self.error(404, "not_found")
                    return self.reply(200, {"exam_year": key[0], "roll_number": key[1], "marks": store.rows[key]})
                if key not in store.rows:
                    return self.error(404, "not_found")
                if function == "update-result":
                    if fault != "lost-update":
                        store.rows[key] = body["marks"]
                    return self.reply(200, {"exam_year": key[0], "roll_number": key[1], "marks": body["marks"]})
                if function == "delete-result":
                    del store.rows[key]
                    return self.reply(204)

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


@pytest.fixture
def api():
    servers = []

    def start(function: str, store: Store, fault: str = "") -> str:
        s = make_server(function, store, fault)
        servers.append(s)
        return f"http://127.0.0.1:{s.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def stable(api, store) -> dict[str, str]:
    return {fn: api(fn, store) for fn in ROUTE}


CFG = SmokeConfig(exam_year=2099, write_token=TOKEN, read_token=READ_TOKEN, timeout=5, read_attempts=5,
                  retry_delay=0)


@pytest.mark.parametrize("function", list(ROUTE))
def test_a_working_candidate_passes_and_leaves_no_record_behind(api, function):
    store = Store(replica_lag_reads=2)
    urls = stable(api, store)
    candidate = api(function, store)
    problems = make_smoke_test(function, f"{function}-abc1234", urls, CFG, sleep=lambda s: None)(candidate)
    assert problems == []
    assert store.rows == {}
    # the candidate itself was exercised for its own operation
    assert any(line.startswith(f"{function} {ROUTE[function]} /results") for line in store.log)


@pytest.mark.parametrize("function", list(ROUTE))
def test_a_candidate_answering_500_fails(api, function):
    store = Store()
    problems = make_smoke_test(function, f"{function}-abc1234", stable(api, store), CFG,
                               sleep=lambda s: None)(api(function, store, fault="500"))
    assert problems and "HTTP 500" in problems[0]
    assert store.rows == {}, "the smoke record is cleaned up even when the candidate fails"


def test_a_candidate_that_is_not_ready_fails_before_touching_data(api):
    store = Store()
    problems = make_smoke_test("create-result", "create-result-abc1234", stable(api, store), CFG)(
        api("create-result", store, fault="unready"))
    assert len(problems) == 1
    assert problems[0].startswith("readiness: GET http://127.0.0.1:") and "-> HTTP 503, expected 200" in problems[0]
    assert not any("POST" in line for line in store.log)


def test_an_update_that_is_acknowledged_but_lost_is_caught_by_the_read_back(api):
    store = Store()
    problems = make_smoke_test("update-result", "update-result-abc1234", stable(api, store), CFG,
                               sleep=lambda s: None)(api("update-result", store, fault="lost-update"))
    assert len(problems) == 1
    assert "read back after update" in problems[0] and "marks 41, expected 42" in problems[0]
    assert store.rows == {}


def test_write_smoke_tests_need_a_token(api):
    store = Store()
    cfg = SmokeConfig(exam_year=2099, write_token=None)
    problems = make_smoke_test("delete-result", "delete-result-abc1234", stable(api, store), cfg)(
        api("delete-result", store))
    assert problems == ["write function smoke test needs a write token (PROMOTE_SMOKE_WRITE_TOKEN)"]


def test_the_list_smoke_test_needs_a_read_token(api):
    store = Store()
    cfg = SmokeConfig(exam_year=2099, write_token=TOKEN, read_token=None)
    problems = make_smoke_test("list-results", "list-results-abc1234", stable(api, store), cfg)(
        api("list-results", store))
    assert problems == ["list-results smoke test needs a read token (PROMOTE_SMOKE_READ_TOKEN)"]


def test_the_smoke_roll_number_is_stable_per_revision_and_valid():
    a, b = smoke_roll_number("get-result-abc1234"), smoke_roll_number("get-result-def5678")
    assert a == smoke_roll_number("get-result-abc1234") and a != b
    assert 1 <= a <= 999_999_999_999
