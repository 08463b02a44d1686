"""The synthetic load against a real HTTP server on 127.0.0.1 that answers
as the functions do (a stand-in for the candidate and the stable functions:
what is checked here is which requests the driver sends, how many, and that
it cleans up after itself)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from promote.load import HttpLoad, LoadConfig, needed_rate
from promote.manifest import function


class _Functions(BaseHTTPRequestHandler):
    """Answers create (201), update/delete of an existing row (200/204), any
    other item (404), list (200); records every request."""

    rows: set = set()
    seen: list = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        parts = self.path.split("?")[0].strip("/").split("/")
        if self.command == "POST" and parts == ["results"]:
            self.rows.add(body["roll_number"])
            return self._answer(201, body)
        if self.command == "GET" and parts == ["results"]:
            return self._answer(200, {"items": []})
        roll = int(parts[-1])
        if roll not in self.rows:
            return self._answer(404, {"error": {"code": "not_found", "message": "no result"}})
        if self.command == "DELETE":
            self.rows.discard(roll)
            self.send_response(204)
            self.end_headers()
            return None
        return self._answer(200, {"marks": body["marks"] if body else 0})

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def functions():
    _Functions.rows, _Functions.seen = set(), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Functions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Functions
    server.shutdown()


def _drive(url: str, name: str, rate: float, seconds: float) -> tuple:
    load = HttpLoad(function(name), {"create-result": url, "delete-result": url},
                    LoadConfig(exam_year=2099, token="t0ken", max_rate=20, max_requests=50), seed=f"{name}-abc1234")
    started = time.monotonic()
    load.start(url, rate, seconds)
    time.sleep(seconds + 0.3)
    stats = load.stop()
    return stats, time.monotonic() - started


def _alone(url: str, name: str, max_requests: int, rate: float, seconds: float):
    """A load with no stable functions to lean on, until it has sent ``max_requests`` (at most 20/s)."""
    load = HttpLoad(function(name), {}, LoadConfig(exam_year=2099, max_rate=20, max_requests=max_requests),
                    seed=f"{name}-x")
    load.start(url, rate=rate, seconds=seconds)
    load.wait(timeout=5)
    return load.stop()


def test_an_update_load_corrects_one_row_it_created_and_deletes_it_afterwards(functions):
    url, server = functions
    stats, took = _drive(url, "update-result", rate=20, seconds=0.5)
    assert took < 3
    assert stats.failed == 0 and 5 <= stats.sent <= 10, stats
    methods = [m for m, *_ in server.seen]
    assert methods[0] == "POST" and methods[-1] == "DELETE"
    puts = [p for m, p, *_ in server.seen if m == "PUT"]
    assert len(puts) == stats.sent and len(set(puts)) == 1 and puts[0].startswith("/results/2099/")
    assert all(auth == "Bearer t0ken" for _, _, auth, _ in server.seen)
    assert server.rows == set(), "the synthetic row is deleted again"


def test_a_delete_load_deletes_rows_it_created_just_before(functions):
    url, server = functions
    stats, _ = _drive(url, "delete-result", rate=20, seconds=0.3)
    assert stats.failed == 0 and stats.sent >= 3
    deletes = [p for m, p, *_ in server.seen if m == "DELETE"]
    creates = [b["roll_number"] for m, _, _, b in server.seen if m == "POST"]
    assert [f"/results/2099/{r}" for r in creates] == deletes
    assert server.rows == set()


def test_a_list_load_sends_the_read_token_not_the_write_token(functions):
    url, server = functions
    load = HttpLoad(function("list-results"), {}, LoadConfig(exam_year=2099, token="wr1te", read_token="r3ad",
                                                               max_rate=20, max_requests=3), seed="list-results-x")
    load.start(url, rate=20, seconds=1)
    time.sleep(0.4)
    stats = load.stop()
    assert stats.sent == 3 and stats.failed == 0
    assert {(m, p, a) for m, p, a, _ in server.seen} == {("GET", "/results?exam_year=2099&limit=1", "Bearer r3ad")}


def test_a_result_read_load_reads_a_row_it_created_and_deletes_it_afterwards(functions):
    url, server = functions
    stats, _ = _drive(url, "get-result", rate=20, seconds=0.3)
    assert stats.failed == 0 and stats.rejected == 0 and stats.sent >= 3
    methods = [m for m, *_ in server.seen]
    assert methods[0] == "POST" and methods[-1] == "DELETE" and set(methods[1:-1]) == {"GET"}
    assert len({p for m, p, *_ in server.seen if m == "GET"}) == 1
    assert server.rows == set()


def test_without_a_stable_create_a_result_read_load_looks_up_a_missing_roll_number(functions):
    url, server = functions
    stats = _alone(url, "get-result", max_requests=3, rate=20, seconds=1)
    assert stats.sent == 3 and stats.rejected == 3
    assert {(m, p) for m, p, *_ in server.seen} == {("GET", "/results/2099/999999999999")}


def test_the_load_is_bounded_by_max_rate_and_max_requests(functions):
    url, server = functions
    stats = _alone(url, "get-result", max_requests=4, rate=1000, seconds=60)
    assert stats.rate == 20 and stats.sent == 4


def test_unanswered_requests_count_as_failures():
    load = HttpLoad(function("get-result"), {}, LoadConfig(exam_year=2099, max_rate=20, timeout=0.5),
                    seed="get-result-x")
    load.start("http://127.0.0.1:9", rate=20, seconds=0.2)  # discard port: refused
    time.sleep(0.5)
    stats = load.stop()
    assert stats.sent >= 1 and stats.failed == stats.sent


@pytest.mark.parametrize("served,percent,rate", [
    (None, 5, 20 / 120),  # no data: all of 2 x min_requests is synthetic
    (2, 5, (20 - 0.1) / 120),
    (400, 5, 0.0),  # 5 % of 400 = 20 real requests: enough
    (400, 4, (20 - 16) / 120),
])
def test_the_needed_rate_makes_up_what_the_real_share_lacks(served, percent, rate):
    assert needed_rate(served, percent, min_requests=10, window_seconds=120) == pytest.approx(rate)
