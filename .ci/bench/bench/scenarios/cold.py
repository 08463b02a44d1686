"""cold: exec to first /readyz and to first served request; RSS; binary sizes."""
from __future__ import annotations

import json
import statistics
import subprocess
import time

from ..settings import BENCH_ROLL_BASE, BENCH_UPDATE_ROWS, FUNCTIONS, NAMES, Function
from ..stack import free_port_pair, http_get, rss_kib

NAME = "cold"


def run(b) -> None:
    year, lo, _ = b.seeded
    cold_start(b, year, lo)


def cold_start(b, year: int, lo: int) -> None:
    r = b.report
    r.h("Cold start and footprint")
    token = b.stack.secrets["WRITE_TOKEN"]
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    b.stack.bench_rows(year, create=True)
    counter = {"n": 0}

    def first_request(fn: Function, port: int) -> tuple[int, bytes]:
        """One typical request, from the function's method and route in the manifest."""
        counter["n"] += 1
        n = counter["n"]
        path = fn.route.replace("{exam_year}", str(year))
        if fn.method == "GET":
            if "{roll_number}" in path:
                return http_get(port, path.replace("{roll_number}", str(lo + n)))
            if path == "/":  # the results page: its form's answer, one point read
                return http_get(port, f"/?exam_year={year}&roll_number={lo + n}")
            return http_get(port, f"{path}?exam_year={year}&limit=100")
        if fn.method == "POST":
            return http_get(port, path, "POST", json.dumps(
                {"roll_number": BENCH_ROLL_BASE + 200_000_000 + n, "exam_year": year, "marks": 1}), auth)
        if fn.method == "PUT":
            return http_get(port, path.replace("{roll_number}", str(BENCH_ROLL_BASE + n)), "PUT",
                            '{"marks": 50}', auth)
        roll = BENCH_ROLL_BASE + BENCH_UPDATE_ROWS - n
        return http_get(port, path.replace("{roll_number}", str(roll)), fn.method, None, auth)

    rows, sizes = [], []
    try:
        for fn in FUNCTIONS:
            name = fn.name
            binary = b.stack.binary(name)
            ready, served, rss = [], [], []
            for _ in range(b.s.cold_runs):
                port = free_port_pair()
                env = b.stack.function_env(name, port, 8)
                t0 = time.perf_counter()
                proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
                b.stack.children.append(proc)
                try:
                    t_ready = None
                    while time.perf_counter() - t0 < 10:
                        try:
                            if http_get(port, "/readyz", timeout=2)[0] == 200:
                                t_ready = time.perf_counter()
                                break
                        except OSError:
                            pass
                        time.sleep(0.001)
                    if t_ready is None:
                        raise RuntimeError(f"{name} not ready within 10 s")
                    status, body = first_request(fn, port)
                    t_served = time.perf_counter()
                    if status not in (200, 201, 204):
                        raise RuntimeError(f"{name} first request: {status} {body[:200]!r}")
                    ready.append((t_ready - t0) * 1000)
                    served.append((t_served - t0) * 1000)
                    rss.append(rss_kib(proc.pid).get("VmRSS", 0))
                finally:
                    b.stack.stop(proc)
            rows.append([name, len(ready), statistics.median(ready), max(ready), statistics.median(served),
                         max(served), statistics.median(rss) / 1024])
            sizes.append([name, binary.stat().st_size / 1048576])
    finally:
        b.stack.bench_rows(year, create=False)
    r.p(f"Process exec (Popen) to the first 200 from `/readyz` (polled every millisecond; readiness runs "
        f"`SELECT 1` through PgBouncer, so it includes the first pooled connection and SCRAM login) and to "
        f"the first served request (get-result: a point read; list-results: a page; writes: one PUT, POST "
        f"or DELETE of the benchmark's own rows), {b.s.cold_runs} runs each, pool size 8. "
        f"RSS right after that first request.")
    r.t(["function", "runs", "to /readyz median ms", "max ms", "to first request median ms", "max ms",
         "RSS after first request MiB"], rows)
    rss_rows = []
    for name in NAMES:  # those the capacity sweep ran
        sweep = b.results.get("sweep", {}).get(name)
        if sweep:
            under = max(sweep, key=lambda p: p["rss_kib"])
            rss_rows.append([name, sweep[0]["idle_rss_kib"] / 1024, under["rss_kib"] / 1024,
                             under["concurrency"], under["hwm_kib"] / 1024])
    if rss_rows:
        r.p("RSS under load (the capacity sweeps above; sampled every 250 ms from /proc/PID/status):")
        r.t(["function", "idle RSS MiB", "highest sampled RSS MiB", "at in flight", "peak (VmHWM) MiB"],
            rss_rows)
    r.t(["release binary (stripped)", "size MiB"], sizes)
    b.results["cold"] = {"rows": rows, "sizes": sizes}


