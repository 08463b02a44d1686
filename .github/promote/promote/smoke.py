"""Smoke tests run against a candidate revision through its tag URL.

Each function serves one route, so a write function's smoke test drives the
candidate for its own operation and the *stable* URLs of the other functions
for the rest of the round trip (e.g. update-result: create through the stable
create-result, PUT through the candidate, read back through the stable
get-result, delete through the stable delete-result). Everything happens in a
dedicated smoke-test exam year, on a roll number derived from the revision
name, and the record is deleted again whatever happens.

Read functions are smoke-tested read-only: probes, a lookup of a roll number
that does not exist (expects the JSON 404, which proves the database path
works: an unreachable database gives 503), and a one-row list.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Callable, Optional

import requests

from . import FUNCTIONS

#: The exam year no real result uses, reserved for smoke tests and synthetic
#: load; sql/migrations/0005_smoke_partition.sql creates its partition.
SMOKE_EXAM_YEAR = 2099
#: Where each non-candidate function is reached (its ksvc ``status.url``).
StableUrls = dict[str, str]


@dataclass(frozen=True)
class SmokeConfig:
    exam_year: int = SMOKE_EXAM_YEAR
    write_token: Optional[str] = None
    #: the token of functions whose manifest entry says ``auth: read-token`` (list-results)
    read_token: Optional[str] = None
    timeout: float = 10.0
    #: Reads go to a streaming replica: a read-back retries this often, one
    #: ``retry_delay`` apart, before it counts as failed.
    read_attempts: int = 5
    retry_delay: float = 1.0


def smoke_roll_number(revision: str) -> int:
    """A roll number (1..999999999999) unique to the revision."""
    return int(hashlib.sha256(revision.encode()).hexdigest()[:12], 16) % 999_999_999_999 + 1


class _Checker:
    def __init__(self, session: requests.Session, cfg: SmokeConfig, sleep: Callable[[float], None]) -> None:
        self.s = session
        self.cfg = cfg
        self.sleep = sleep
        self.problems: list[str] = []

    def read_back(self, what: str, url: str, expect: int, check: Callable[[requests.Response], Optional[str]]) -> None:
        """GET ``url`` until it answers ``expect`` and ``check`` finds no
        problem (replica lag), at most ``read_attempts`` times."""
        last = ""
        for attempt in range(self.cfg.read_attempts):
            if attempt:
                self.sleep(self.cfg.retry_delay)
            try:
                resp = self.s.get(url, headers={"Accept": "application/json"}, timeout=self.cfg.timeout)
            except requests.RequestException as exc:
                last = f"{exc.__class__.__name__}: {exc}"
                continue
            if resp.status_code != expect:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            problem = check(resp)
            if problem is None:
                return
            last = problem
        self.problems.append(f"{what}: GET {url} after {self.cfg.read_attempts} attempts: {last}")

    def call(self, what: str, method: str, url: str, expect: tuple[int, ...], *, json_body=None,
             auth: bool = False, read_auth: bool = False,
             expect_code: Optional[str] = None) -> Optional[requests.Response]:
        headers = {"Accept": "application/json"}
        token = self.cfg.write_token if auth else self.cfg.read_token if read_auth else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            resp = self.s.request(method, url, json=json_body, headers=headers, timeout=self.cfg.timeout)
        except requests.RequestException as exc:
            self.problems.append(f"{what}: {method} {url}: {exc.__class__.__name__}: {exc}")
            return None
        if resp.status_code not in expect:
            self.problems.append(f"{what}: {method} {url} -> HTTP {resp.status_code}, expected "
                                 f"{'/'.join(map(str, expect))}: {resp.text[:200]}")
            return None
        if expect_code is not None:
            try:
                code = resp.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = None
            if code != expect_code:
                self.problems.append(f"{what}: expected error code {expect_code!r}, got body {resp.text[:200]}")
                return None
        return resp


def _json_field(resp: requests.Response, name: str):
    try:
        return resp.json().get(name)
    except (ValueError, AttributeError):
        return None


def make_smoke_test(function: str, revision: str, stable: StableUrls, cfg: SmokeConfig,
                    session: Optional[requests.Session] = None,
                    sleep: Callable[[float], None] = time.sleep) -> Callable[[str], list[str]]:
    """The smoke test for ``function``; call it with the candidate's URL."""
    if function not in FUNCTIONS:
        raise ValueError(f"unknown function {function!r}")
    year, roll = cfg.exam_year, smoke_roll_number(revision)
    key_path = f"/results/{year}/{roll}"

    def run(candidate: str) -> list[str]:
        c = _Checker(session or requests.Session(), cfg, sleep)
        cand = candidate.rstrip("/")

        def url(fn: str, path: str) -> str:
            return (cand if fn == function else stable[fn].rstrip("/")) + path

        c.call("liveness", "GET", cand + "/healthz", (200,))
        c.call("readiness", "GET", cand + "/readyz", (200,))
        if c.problems:
            return c.problems
        if function == "get-result":
            c.call("lookup of a missing result", "GET", url("get-result", f"/results/{year}/999999999999"), (404,),
                   expect_code="not_found")
            return c.problems
        if function == "list-results":
            if not cfg.read_token:
                return ["list-results smoke test needs a read token (PROMOTE_SMOKE_READ_TOKEN)"]
            resp = c.call("list", "GET", url("list-results", f"/results?exam_year={year}&limit=1"), (200,),
                          read_auth=True)
            if resp is not None:
                try:
                    resp.json()
                except ValueError:
                    c.problems.append("list: body is not JSON")
            return c.problems
        if function not in ("create-result", "update-result", "delete-result"):
            # a function without checks of its own is smoke-tested by its probes
            return c.problems
        if not cfg.write_token:
            return ["write function smoke test needs a write token (PROMOTE_SMOKE_WRITE_TOKEN)"]
        missing = [fn for fn in ("create-result", "get-result", "delete-result") if fn != function and fn not in stable]
        if missing:
            return [f"no stable URL for {', '.join(missing)}"]
        body = {"roll_number": roll, "exam_year": year, "marks": 41}
        # a leftover from an interrupted earlier run must not fail the test
        c.call("cleanup before", "DELETE", url("delete-result", key_path), (200, 204, 404), auth=True)
        if c.problems:
            return c.problems
        try:
            if function == "create-result":
                c.call("unauthenticated create is refused", "POST", url("create-result", "/results"), (401,),
                       json_body=body, expect_code="unauthorized")
            created = c.call("create", "POST", url("create-result", "/results"), (200, 201), json_body=body, auth=True)
            if created is None:
                return c.problems
            if function == "update-result":
                c.call("update", "PUT", url("update-result", key_path), (200, 204), json_body={"marks": 42},
                       auth=True)
                c.read_back("read back after update", url("get-result", key_path), 200,
                            lambda r: None if _json_field(r, "marks") == 42
                            else f"marks {_json_field(r, 'marks')!r}, expected 42")
            elif function == "delete-result":
                c.call("delete", "DELETE", url("delete-result", key_path), (200, 204), auth=True)
                c.read_back("read back after delete", url("get-result", key_path), 404,
                            lambda r: None if (_json_field(r, "error") or {}).get("code") == "not_found"
                            else f"expected error code not_found: {r.text[:200]}")
            else:
                c.read_back("read back after create", url("get-result", key_path), 200,
                            lambda r: None if _json_field(r, "marks") == body["marks"]
                            and _json_field(r, "roll_number") == roll
                            else f"got {r.text[:200]}, expected {body}")
        finally:
            if function != "delete-result" or c.problems:
                c.call("cleanup", "DELETE", url("delete-result", key_path), (200, 204, 404), auth=True)
        return c.problems

    return run
