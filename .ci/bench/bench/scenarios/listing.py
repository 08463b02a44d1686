"""list: random keyset pages under load, and one client walking a whole year."""
from __future__ import annotations

import http.client
import json
import time

from ..cpu import cpu_row
from ..report import ratio
from ..stats import percentile

NAME = "list"


def run(b) -> None:
    listing(b, *b.seeded)


def listing(b, year: int, lo: int, hi: int) -> None:
    r = b.report
    r.h("Listing: keyset pages of 100")
    lport = b.s.ports["list-results"]
    c = 16
    token = b.stack.secrets["READ_TOKEN"]  # listing is for read-token holders only
    args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}", "limit=100", f"token={token}"]
    fn = b.load.run_wrk(lport, c, "list_page.lua", args=args)
    pb = b.load.run_pgbench("list_page.sql", c, b.s.pgbouncer_port, "exam_results_ro",
                          {"year": year, "roll_min": lo, "pages": (hi - lo + 1) // 100, "lim": 101})
    # One client walking the whole year, following next_after.
    conn = http.client.HTTPConnection("127.0.0.1", lport, timeout=10)
    after, pages, rows, lat = 0, 0, 0, []
    t0 = time.perf_counter()
    while True:
        t = time.perf_counter()
        conn.request("GET", f"/results?exam_year={year}&after={after}&limit=100",
                     headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = resp.read()
        lat.append((time.perf_counter() - t) * 1000)
        if resp.status != 200:
            raise RuntimeError(f"list page after {after}: {resp.status} {body[:200]!r}")
        page = json.loads(body)
        pages += 1
        rows += len(page["items"])
        if page["next_after"] is None:
            break
        after = page["next_after"]
    walk_s = time.perf_counter() - t0
    conn.close()
    expected = int(b.stack.psql(f"SELECT count(*) FROM student_results WHERE exam_year = {year}",
                             b.s.pgbouncer_port, "exam_results_ro").strip())
    r.p(f"Random pages of {year} (`after` = the last roll of a random earlier page, `limit=100`; the "
        f"function fetches 101 rows to know whether another page follows, pgbench runs the same "
        f"`LIMIT 101`), {c} clients; then one client walking all of {year} from the start by `next_after`.")
    r.t(["target", "clients", "pages/s", "rows/s", "p50 ms", "p99 ms", "errors", "ratio to pgbench via PgBouncer"], [
        ["list-results (wrk)", c, fn["rps"], fn["rps"] * 100, fn["p50_ms"], fn["p99_ms"], fn["errors"],
         ratio(fn["rps"], pb["rps"])],
        ["pgbench -> PgBouncer -> replica", c, pb["rps"], pb["rps"] * 100, pb["p50_ms"], pb["p99_ms"],
         pb["errors"], None],
    ])
    r.t(["whole-year walk", "pages", "rows", "rows in the year", "seconds", "page p50 ms", "page p99 ms"], [
        [f"{year}, one client, keep-alive", pages, rows, expected, walk_s, percentile(lat, 50),
         percentile(lat, 99)],
    ])
    if rows != expected:
        r.p(f"**The walk returned {rows} rows but the year holds {expected}** (rows written during the walk?).")
    r.t(["run"] + b.cpu_columns + ["list-results"], [
        ["list-results"] + cpu_row(fn["cpu"], b.cpu_columns) + [fn["cpu"].get("list-results", 0.0)],
        ["pgbench"] + cpu_row(pb["cpu"], b.cpu_columns) + [pb["cpu"].get("list-results", 0.0)],
    ])
    b.results["list"] = {"function": fn, "pgbouncer": pb, "walk": {"pages": pages, "rows": rows,
                            "expected": expected, "seconds": walk_s, "p50_ms": percentile(lat, 50),
                            "p99_ms": percentile(lat, 99)}}


