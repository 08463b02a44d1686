"""A bounded synthetic load driven at a candidate whose real traffic is too
thin for the gates (the role Flagger's load tester plays).

A write function at 5 % of staff traffic may see no request in a two-minute
gate window, and a gate never passes on missing data, so without help every
quiet rollout would be rolled back on silence. Before each bake step the
rollout asks Prometheus how many requests the function as a whole served in
the gate window; when the candidate's share of that is below twice the
gate's ``min_requests``, it drives requests at the candidate's tag URL for the
length of the bake, at a rate that gives the gate enough to judge, never more
than ``max_rate`` per second and never more than ``max_requests`` in all.

The requests follow the function's manifest entry (method and route) and
are what that function accepts, so a healthy candidate answers every one
with a 2xx. All happen in the smoke-test exam year, whose partition a
migration creates (sql/migrations/0005_smoke_partition.sql):

- ``GET`` of a result (a ``{roll_number}`` route) reads one row that the
  driver creates first through the stable create-result, presenting the
  create's consistency token so a lagging replica never answers 404;
- ``GET /`` (the results page) asks for the page;
- other ``GET`` routes ask for the smoke year itself (a listing of one row,
  its statistics, its publication time);
- ``POST /results`` creates a fresh roll number;
- ``POST /results/batches`` loads the same few rows of the revision's range
  as CSV with ``on_existing=replace``, so every repetition is accepted;
- ``PUT /publications/{exam_year}`` sets the smoke year's publication to a
  fixed past instant (public, as without one): the same request every time;
- ``PUT`` of a result corrects the marks of one row the driver creates first
  through the stable create-result;
- ``DELETE`` deletes rows that the driver creates through the stable create
  function just before.

Every row is deleted again through the stable delete-result.

Every request counts: the driver reports how many it sent and how many got a
5xx or no answer, and the summary shows them beside the gate results.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import requests

from .manifest import Function

log = logging.getLogger("promote")

#: The batch route (create-results-batch): a CSV body, not JSON.
BATCHES_ROUTE = "/results/batches"
#: Rows of the revision's range each synthetic batch loads (the same rows every time).
BATCH_ROWS = 3
#: The publication time the synthetic load sets for the smoke year: in the
#: past, so the year stays public, and the same every time.
SMOKE_PUBLISHED_AT = "2000-01-01T00:00:00Z"
#: The header a write answers with and a read presents to see that write.
CONSISTENCY_TOKEN = "X-Consistency-Token"


@dataclass
class LoadStats:
    """What one bake step's synthetic load did."""

    sent: int = 0
    #: 5xx answers and requests that got no answer at all
    failed: int = 0
    #: 4xx answers: the load sends only what the function accepts, so a
    #: healthy candidate has none
    rejected: int = 0
    rate: float = 0.0
    #: answers by status (0: no answer)
    statuses: collections.Counter = field(default_factory=collections.Counter)

    def __str__(self) -> str:
        return (f"{self.sent} synthetic requests at {self.rate:g}/s ({self.failed} failed"
                + (f", {self.rejected} rejected with 4xx" if self.rejected else "") + ")")


class LoadDriver(Protocol):
    """Starts and stops a synthetic load at a candidate's URL."""

    def start(self, url: str, rate: float, seconds: float) -> None: ...

    def wait(self, timeout: float) -> None:
        """Until the load has sent all its requests (or ``timeout`` seconds)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> LoadStats: ...


@dataclass(frozen=True)
class LoadConfig:
    exam_year: int
    #: bearer token the write functions accept
    token: Optional[str] = None
    #: bearer token of the functions whose manifest entry says ``auth: read-token``
    read_token: Optional[str] = None
    max_rate: float = 2.0
    max_requests: int = 2000
    timeout: float = 5.0


def roll_numbers(seed: str) -> itertools.count:
    """Roll numbers of the smoke range, unique to ``seed`` (the revision)."""
    base = int(hashlib.sha256(seed.encode()).hexdigest()[:10], 16) % 900_000_000_000 + 99_000_000_000
    return itertools.count(base)


@dataclass
class HttpLoad:
    """A :class:`LoadDriver` over HTTP for one function's manifest entry.

    ``stable`` maps the other functions' names to their stable URLs (the
    write functions need create-result and delete-result to set up and
    clean up their rows).
    """

    function: Function
    stable: dict[str, str]
    cfg: LoadConfig
    seed: str
    session: requests.Session = field(default_factory=requests.Session)
    sleep: Callable[[float], None] = time.sleep
    _thread: Optional[threading.Thread] = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _stats: LoadStats = field(default_factory=LoadStats)
    _created: list[int] = field(default_factory=list)
    _last_token: Optional[str] = None
    _read_token: Optional[str] = None

    def __post_init__(self) -> None:
        self._rolls = roll_numbers(self.seed)
        # the batch's rows: the first few of the revision's range, the same every time
        self._batch = [next(self._rolls) for _ in range(BATCH_ROWS)]

    # -- LoadDriver ------------------------------------------------------------
    def start(self, url: str, rate: float, seconds: float) -> None:
        rate = min(max(rate, 0.1), self.cfg.max_rate)
        count = min(self.cfg.max_requests, max(1, int(rate * seconds)))
        self._stop.clear()
        self._stats = LoadStats(rate=rate)
        self._thread = threading.Thread(target=self._run, args=(url.rstrip("/"), rate, count),
                                        name="synthetic-load", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> None:
        """Until the load has sent all its requests (or ``timeout`` seconds)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> LoadStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.timeout * 3)
        self._cleanup()
        return self._stats

    # -- the requests ------------------------------------------------------------
    def _headers(self, auth: str) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = {"write-token": self.cfg.token, "read-token": self.cfg.read_token}.get(auth)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _item(self, roll: int) -> str:
        return f"/results/{self.cfg.exam_year}/{roll}"

    def _send(self, method: str, url: str, body: Optional[dict] = None, count: bool = True,
              auth: Optional[str] = None, data: Optional[str] = None,
              headers: Optional[dict[str, str]] = None) -> Optional[int]:
        """One request with a JSON ``body`` or raw ``data``; ``auth`` is the
        token class (default: the candidate's own)."""
        all_headers = {**self._headers(auth or self.function.auth), **(headers or {})}
        try:
            resp = self.session.request(method, url, json=body, data=data, headers=all_headers,
                                        timeout=self.cfg.timeout)
            status: Optional[int] = resp.status_code
            self._last_token = resp.headers.get(CONSISTENCY_TOKEN) or self._last_token
        except requests.RequestException:
            status = None
        if count:
            self._stats.sent += 1
            self._stats.statuses[status or 0] += 1
            if status is None or status >= 500:
                self._stats.failed += 1
            elif status >= 400:
                self._stats.rejected += 1
        return status

    def _create_stable(self) -> Optional[int]:
        roll = next(self._rolls)
        url = self.stable.get("create-result")
        if url is None:
            return None
        body = {"roll_number": roll, "exam_year": self.cfg.exam_year, "marks": 40}
        if self._send("POST", url.rstrip("/") + "/results", body, count=False, auth="write-token") in (200, 201):
            self._created.append(roll)
            self._read_token = self._last_token
            return roll
        return None

    def _one(self, base: str) -> None:
        fn, year = self.function, self.cfg.exam_year
        if fn.method == "GET" and "{roll_number}" in fn.route:
            if not self._created and self._create_stable() is None:
                self._send("GET", base + self._item(999_999_999_999))  # no stable create: a JSON 404
                return
            token = {CONSISTENCY_TOKEN: self._read_token} if self._read_token else {}
            self._send("GET", base + self._item(self._created[0]), headers=token)
        elif fn.method == "GET" and fn.route == "/":
            self._send("GET", base + "/")  # the results page itself
        elif fn.method == "GET":
            path = fn.route.replace("{exam_year}", str(year))
            self._send("GET", base + path + ("" if "{exam_year}" in fn.route else f"?exam_year={year}&limit=1"))
        elif fn.method == "POST" and fn.route == BATCHES_ROUTE:
            rows = "".join(f"{roll},{40 + i}\n" for i, roll in enumerate(self._batch))
            if self._send("POST", f"{base}{fn.route}?exam_year={year}&on_existing=replace",
                          data="roll_number,marks\n" + rows, headers={"Content-Type": "text/csv"}) in (200, 201):
                self._created += [r for r in self._batch if r not in self._created]
        elif fn.method == "POST":
            roll = next(self._rolls)
            if self._send("POST", base + fn.route, {"roll_number": roll, "exam_year": year, "marks": 40}) in (200, 201):
                self._created.append(roll)
        elif fn.method == "PUT" and "{roll_number}" not in fn.route:
            # PUT /publications/{exam_year}: the smoke year public since a fixed past instant
            self._send("PUT", base + fn.route.replace("{exam_year}", str(year)), {"publish_at": SMOKE_PUBLISHED_AT})
        elif fn.method == "PUT":
            if not self._created and self._create_stable() is None:
                self._send("PUT", base + self._item(next(self._rolls)), {"marks": 41})  # a JSON 404
                return
            self._send("PUT", base + self._item(self._created[0]), {"marks": 40 + self._stats.sent % 50})
        elif fn.method == "DELETE":
            roll = self._create_stable()
            if roll is None:
                roll = next(self._rolls)  # a JSON 404 on a missing row
            if self._send("DELETE", base + self._item(roll)) in (200, 204) and roll in self._created:
                self._created.remove(roll)

    def _run(self, base: str, rate: float, count: int) -> None:
        interval = 1.0 / rate
        for _ in range(count):
            if self._stop.is_set():
                return
            started = time.monotonic()
            self._one(base)
            if self._stop.wait(max(0.0, interval - (time.monotonic() - started))):
                return

    def _cleanup(self) -> None:
        url = self.stable.get("delete-result")
        for roll in list(self._created):
            if url and self._send("DELETE", url.rstrip("/") + self._item(roll), count=False,
                                  auth="write-token") in (200, 204, 404):
                self._created.remove(roll)
        if self._created:
            log.warning("%s: synthetic rows left in %s: %s", self.function.name, self.cfg.exam_year, self._created)


def needed_rate(function_requests: Optional[float], percent: int, min_requests: float,
                window_seconds: float) -> float:
    """Requests per second the candidate needs on top of its share of real
    traffic so that a gate window holds twice ``min_requests``; 0 when the
    real share is enough. ``function_requests`` is what the whole function
    served in the last window (None: no data, i.e. nothing)."""
    share = (function_requests or 0.0) * percent / 100
    missing = 2 * min_requests - share
    return 0.0 if missing <= 0 else missing / window_seconds
