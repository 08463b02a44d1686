"""profile: where the time goes at 64 connections (round trips, pool wait, log level, syscalls, perf)."""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time

from ..stack import metric_sum, scrape

NAME = "profile"


def run(b) -> None:
    profile(b, *b.seeded)


def profile(b, year: int, lo: int, hi: int) -> None:
    """Where the time goes at 64 connections (issue item 3)."""
    r = b.report
    r.h("Where the time goes at 64 connections")
    args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}"]
    rows = []
    configs = (("stack settings (pool 16, LOG_LEVEL=info)", 16, "info", {}),
               ("pool 16, LOG_LEVEL=warn (no per-request log line)", 16, "warn", {}),
               ("pool 16, TOKIO_WORKER_THREADS=1", 16, "info", {"TOKIO_WORKER_THREADS": "1"}),
               ("pool 64, LOG_LEVEL=info", 64, "info", {}))
    for label, pool_size, level, extra in configs:
        proc, port = b.stack.start_function("get-result", pool_size, level, extra)
        try:
            m0, b0 = scrape(port + 1000), b.stack.pgbouncer_stats("exam_results_ro")
            res = b.load.run_wrk(port, 64, "point_read.lua", args=args)
            m1, b1 = scrape(port + 1000), b.stack.pgbouncer_stats("exam_results_ro")
        finally:
            b.stack.stop(proc)

        def delta(name, **labels):
            return metric_sum(m1, name, **labels) - metric_sum(m0, name, **labels)

        n_http = delta("http_server_request_duration_seconds_count", http_route="/results/{exam_year}/{roll_number}")
        http_s = delta("http_server_request_duration_seconds_sum", http_route="/results/{exam_year}/{roll_number}")
        n_q = delta("exam_results_db_query_duration_seconds_count", operation="select_result")
        q_s = delta("exam_results_db_query_duration_seconds_sum", operation="select_result")
        n_w = delta("exam_results_db_pool_wait_duration_seconds_count")
        w_s = delta("exam_results_db_pool_wait_duration_seconds_sum")
        bq = b1.get("total_query_count", 0) - b0.get("total_query_count", 0)
        bx = b1.get("total_xact_count", 0) - b0.get("total_xact_count", 0)
        bqt = b1.get("total_query_time", 0) - b0.get("total_query_time", 0)
        bwt = b1.get("total_wait_time", 0) - b0.get("total_wait_time", 0)
        rows.append([label, res["rps"], res["p50_ms"], res["p99_ms"], res["errors"],
                     bq / n_http if n_http else None,
                     http_s / n_http * 1000 if n_http else None,
                     w_s / n_w * 1000 if n_w else None,
                     q_s / n_q * 1000 if n_q else None,
                     bqt / bq / 1000 if bq else None,
                     bwt / bx / 1000 if bx else None,
                     res["cpu"].get("get-result", 0.0) / res["rps"] * 1e6 if res["rps"] else None,
                     res["cpu"].get("get-result", 0.0), res["cpu"].get("pgbouncer", 0.0),
                     res["cpu"].get("postgres replica", 0.0), res["cpu"].get("load generator", 0.0)])
        b.results.setdefault("profile", []).append({"label": label, "wrk": res, "http": n_http,
                                                       "pgbouncer_queries": bq, "pgbouncer_xacts": bx})
    r.p("One get-result process of our own at 64 wrk connections, four configurations. Round trips: "
        "PgBouncer's `SHOW STATS` query count for `exam_results_ro` over the run divided by the function's "
        "request count (other clients of the replica pool, e.g. the stack's lag probes, add a little). Times "
        "per request from the function's own histograms (`/metrics`: HTTP duration, pool wait, query) and "
        "from PgBouncer (query time = server-side time of a query as PgBouncer sees it; wait = time clients "
        "waited for a server connection).")
    r.t(["configuration", "requests/s", "p50 ms", "p99 ms", "errors", "queries per request",
         "function: request ms", "function: pool wait ms", "function: query ms", "PgBouncer: query ms",
         "PgBouncer: client wait ms", "get-result CPU µs per request", "get-result CPU", "pgbouncer CPU", "replica CPU", "wrk CPU"], rows)
    if shutil.which("strace"):
        syscalls(b, args)
    if b.s.perf and shutil.which("perf"):
        perf_profile(b, args)


def syscalls(b, args: list[str]) -> None:
    """System calls per request of get-result (strace -c), the round trips at the socket level."""
    r = b.report
    proc, port = b.stack.start_function("get-result", 16)
    out = b.stack.tmp / "strace.txt"
    try:
        load = b.load.wrk(port, 16, b.s.duration, "point_read.lua", args=args)
        time.sleep(min(1.0, b.s.duration / 4))
        m0 = scrape(port + 1000)
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(proc.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(max(1.0, b.s.duration / 3))
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        m1 = scrape(port + 1000)
        load.communicate()
    finally:
        b.stack.stop(proc)
    # requests counted around the trace window (the trace is inside it)
    n = (metric_sum(m1, "http_server_request_duration_seconds_count")
         - metric_sum(m0, "http_server_request_duration_seconds_count") - 1)
    rows = []
    if out.exists() and n > 0:
        for line in out.read_text().splitlines():
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)$", line)
            if m and m.group(3) != "total":
                rows.append([m.group(3), int(m.group(1)) / n, (int(m.group(2)) / n) if m.group(2) else 0.0])
    if not rows:
        r.p("strace produced no counts here.")
        return
    rows.sort(key=lambda row: -row[1])
    r.p(f"System calls of get-result per request (`strace -f -c` attached for a part of a 16-connection run; "
        f"{n:,.0f} requests counted from its own metrics around the trace). Strace slows the process; the "
        "counts per request are what matters:")
    r.t(["system call", "calls per request", "failed per request"], [row for row in rows if row[1] >= 0.01])
    b.results["syscalls"] = {"requests": n, "rows": rows}


def perf_profile(b, args: list[str]) -> None:
    r = b.report
    proc, port = b.stack.start_function("get-result", 16)
    data = b.stack.tmp / "perf.data"
    try:
        load = b.load.wrk(port, 64, b.s.duration, "point_read.lua", args=args)
        time.sleep(0.5)
        rec = subprocess.run(["perf", "record", "-F", "997", "-g", "-o", str(data), "-p", str(proc.pid), "--",
                              "sleep", str(max(1.0, b.s.duration - 1.5))], capture_output=True, text=True)
        load.communicate()
    finally:
        b.stack.stop(proc)
    if rec.returncode != 0 or not data.exists():
        r.p(f"perf could not record here: {rec.stderr.strip()[-300:]}")
        return
    samples = re.search(r"\((\d+) samples\)", rec.stderr)
    r.p(f"perf: {samples.group(1) if samples else '?'} samples.")
    rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso",
                          "-g", "none", "--percent-limit", "1"], capture_output=True, text=True)
    sym = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "sym",
                          "-g", "none", "--percent-limit", "1.5"], capture_output=True, text=True)

    def rows_of(text: str) -> list[list]:
        out = []
        for line in text.splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(.+)$", line)
            if m:
                out.append([float(m.group(1)), m.group(2).strip()])
        return out[:15]

    r.p("`perf record -F 997 -g` of that get-result process (stack settings) under 64 connections; "
        "on-CPU samples by shared object and by symbol (the release binary is stripped, so its own code "
        "shows as addresses; kernel symbols show the system calls):")
    r.t(["% of samples", "shared object"], rows_of(rep.stdout))
    r.t(["% of samples", "symbol"], rows_of(sym.stdout))


