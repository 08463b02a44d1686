"""results-day: the crowd's lookups through get-result with its in-process cache off and on.

The keys follow how people look up results on the day: every student's
roll number is requested `repeats` times (the student, family, refreshes)
within `window` seconds of the first lookup, students arriving evenly at
`arrivals` per second. `crowd_order` writes that timeline as a key file in
time order; wrk (lua/key_file.lua) replays it as fast as the function
serves it, which compresses the crowd's time. A cache's time to live is
wall-clock, so each cache-on process gets the stated real TTL scaled by the
same compression (measured by the cache-off run), and the report prints the
hit ratio the timeline implies beside the one the function counted.

Rows of one run: get-result processes of the benchmark's own (cache off,
then on at each TTL), and pgbench through PgBouncer with the same point
query for the same students; each with the database's CPU (both PostgreSQL
servers and PgBouncer) per served request, and ratios to pgbench.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
from pathlib import Path

from ..cpu import cpu_row
from ..report import ratio
from ..stack import http_get, metric_sum, scrape

NAME = "results-day"

#: The processes that are "the database" for a request: PgBouncer and both servers.
DATABASE = ("pgbouncer", "postgres replica", "postgres replica background", "postgres primary",
            "postgres primary background")
CACHE_METRIC = "exam_results_read_cache_lookups_total"
#: The longest warm-up of a cache-on process, seconds.
WARM_MAX = 20.0
OFF = "get-result, cache off"
PGBENCH = "pgbench -> PgBouncer -> replica"


def crowd_order(students: list[int], repeats: int, window: float, arrivals: float,
                seed: int = 1) -> list[tuple[float, int]]:
    """(time, roll) of every lookup, in time order.

    Student i (in a shuffled order) arrives at i / arrivals seconds and looks
    up once then; the other `repeats - 1` lookups fall uniformly within
    `window` seconds after. Times wrap around the span (students / arrivals),
    so the timeline is the same wherever a looping replay starts.
    """
    rng = random.Random(seed)
    order = list(students)
    rng.shuffle(order)
    span = len(order) / arrivals
    out = []
    for i, roll in enumerate(order):
        t0 = i / arrivals
        out.append((t0, roll))
        out += [((t0 + rng.uniform(0, window)) % span, roll) for _ in range(repeats - 1)]
    out.sort()
    return out


def expected_hit_ratio(timeline: list[tuple[float, int]], ttl: float) -> float:
    """Share of lookups a cache holding every key for `ttl` seconds answers:
    those whose key was fetched from the database less than `ttl` before."""
    span = timeline[-1][0] if timeline else 0.0
    times: dict[int, list[float]] = {}
    for t, roll in timeline:
        times.setdefault(roll, []).append(t)
    hits = total = 0
    for ts in times.values():
        # walk twice round the (wrapping) span so the first lookups see the last ones
        seq = ts + [t + span for t in ts]
        fetched = None
        for j, t in enumerate(seq):
            hit = fetched is not None and t - fetched < ttl
            if not hit:
                fetched = t
            if j >= len(ts):
                hits += hit
                total += 1
    return hits / total if total else 0.0


def cache_lookups(port: int) -> dict[str, float]:
    m = scrape(port)
    return {o: metric_sum(m, CACHE_METRIC, cache="result", outcome=o) for o in ("hit", "miss", "coalesced")}


def load_average() -> float:
    """The 1-minute load average now."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def db_cores(cpu: dict) -> float:
    return sum(cpu.get(g, 0.0) for g in DATABASE)


def ensure_published(b, year: int) -> dict | None:
    """Makes `year` public for the run if its publication lies ahead or it is
    withdrawn (through set-publication, audited); returns what to restore."""
    out = b.stack.psql(f"SELECT COALESCE(to_char(publish_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                       f"'infinity'), publish_at <= now() FROM publications WHERE exam_year = {year}",
                       b.s.primary_port, "exam_results").strip()
    if not out or out.endswith("|t"):
        return None
    previous = out.split("|")[0]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    set_publication(b, year, now)
    return {"publish_at": None if previous in ("infinity", "") else previous}


def set_publication(b, year: int, publish_at: str | None) -> None:
    port = b.s.ports["set-publication"]
    status, body = http_get(port, f"/publications/{year}", method="PUT",
                            body=json.dumps({"publish_at": publish_at}),
                            headers={"Authorization": f"Bearer {b.stack.secrets['WRITE_TOKEN']}",
                                     "Content-Type": "application/json"}, timeout=10)
    if status != 200:
        raise RuntimeError(f"set-publication {year} -> {publish_at} answered {status}: {body[:300]!r}")


def run(b) -> None:
    s, r = b.s, b.report
    year, lo, hi = b.seeded
    students = min(s.rd_students, hi - lo + 1)
    timeline = crowd_order(list(range(lo, lo + students)), s.rd_repeats, s.rd_window, s.rd_arrivals)
    keys = b.stack.tmp / "results-day-keys.txt"
    keys.write_text("".join(f"{roll}\n" for _, roll in timeline))
    crowd_rate = s.rd_arrivals * s.rd_repeats
    restore = ensure_published(b, year)
    try:
        rows, data, chosen = measure(b, year, lo, students, keys, timeline, crowd_rate)
    finally:
        if restore is not None:
            set_publication(b, year, restore["publish_at"])
    r.h("Results day: the crowd through get-result's cache")
    r.p(f"{students:,} students of {year} (roll numbers {lo}..{lo + students - 1}), each looking up their result "
        f"{s.rd_repeats} times (the student, family, refreshes): once on arrival and {s.rd_repeats - 1} more within "
        f"{s.rd_window:g} s, students arriving at {s.rd_arrivals:g}/s, so the crowd asks {crowd_rate:g} requests/s "
        f"(BENCH_RD_STUDENTS, BENCH_RD_REPEATS, BENCH_RD_WINDOW, BENCH_RD_ARRIVALS). wrk replays that timeline "
        f"(a key file in time order, lua/key_file.lua) with {s.rd_connections} connections as fast as it is served, "
        f"{s.duration:g} s per run, {s.rd_passes} passes (BENCH_RD_PASSES; each row shows the pass that served "
        "the most, beside the others' rates), against get-result processes of the benchmark's own (pool "
        f"{s.rd_pool}) started with the cache off (`READ_CACHE_CAPACITY=0`) and on (`READ_CACHE_CAPACITY={students}`). "
        "A cache-on row's TTL is the real TTL scaled by the replay's compression (its rate over the crowd's, "
        "from the cache-off row), so the cache sees about as much of the crowd's time as on the day; \"crowd s "
        "the TTL spanned\" is what it spanned at the rate the row reached (a faster row spans less), and the "
        "implied hit ratio is the timeline's at that span. Each cache-on process is first warmed with the "
        f"crowd's preceding moments for one replay TTL (at most {WARM_MAX:g} s), the measured run continuing "
        "where the warm-up stopped. \"load average\" is the machine's 1-minute load average as the row began. "
        "pgbench sends the same point query (`-M extended`) for uniformly random students of the same range "
        "through the same PgBouncer. \"database\" is PgBouncer plus both PostgreSQL servers (client backends and "
        f"background); year {year} " + ("was made public for the run through set-publication and set back after."
                                        if restore is not None else "is published."))
    r.t(["target", "real TTL s", "replay TTL ms", "crowd s the TTL spanned", "load average", "requests/s",
         "requests/s of the other passes", "p50 ms", "p99 ms", "errors",
         "hit ratio implied by the timeline", "hit ratio counted", "database cores", "database CPU µs per request",
         "requests/s ratio to pgbench", "database CPU per request ratio to pgbench"], rows)
    r.p("CPU during each run, in the order they ran (cores, of %d; load average before the scenario: %s):"
        % (os.cpu_count() or 1, b.results.get("machine", {}).get("load average before the run", "?")))
    r.t(["#", "run", "requests/s"] + b.cpu_columns,
        [[i + 1, d["label"], d["rps"]] + cpu_row(d["cpu"], b.cpu_columns) for i, d in enumerate(data)])
    b.results["results_day"] = {
        "year": year, "students": students, "repeats": s.rd_repeats, "window_s": s.rd_window,
        "arrivals_per_s": s.rd_arrivals, "crowd_rps": crowd_rate, "connections": s.rd_connections,
        "published_for_run": restore is not None, "runs": data, "chosen": chosen,
    }


def measure(b, year: int, lo: int, students: int, keys: Path, timeline, crowd_rate: float):
    s = b.s
    args = [f"year={year}", f"keys={keys}", f"threads={min(2, s.rd_connections)}"]
    data = []

    def function_run(label: str, capacity: int, ttl_ms: int, real_ttl: float | None) -> dict:
        proc, port = b.stack.start_function("get-result", s.rd_pool, extra={
            "READ_CACHE_CAPACITY": str(capacity), "READ_CACHE_TTL_MS": str(max(1, ttl_ms)),
            "RATE_LIMIT_PER_SECOND": "0"})
        try:
            start = 0
            if capacity:  # warm: the crowd's moments just before, for one TTL (at most WARM_MAX s)
                start = b.load.run_wrk(port, s.rd_connections, "key_file.lua", args=args + ["start=0"],
                                       duration=min(WARM_MAX, max(1, round(ttl_ms / 1000))))["requests"]
            before, load = cache_lookups(port + 1000), load_average()
            res = b.load.run_wrk(port, s.rd_connections, "key_file.lua", args=args + [f"start={start}"])
            after = cache_lookups(port + 1000)
        finally:
            b.stack.stop(proc)
        counted = {k: after[k] - before[k] for k in after}
        lookups = sum(counted.values())
        # the crowd's seconds the replay TTL spanned at the rate this run reached
        covered = ttl_ms / 1000 * res["rps"] / crowd_rate if capacity else None
        res.update(label=label, real_ttl_s=real_ttl, replay_ttl_ms=ttl_ms if capacity else None,
                   covered_ttl_s=covered, load_average_1m=load, warm_requests=start,
                   hits=counted, hit_ratio=counted["hit"] / lookups if lookups else None,
                   expected_hit_ratio=expected_hit_ratio(timeline, covered) if capacity else None)
        data.append(res)
        return res

    def pgbench_run() -> dict:
        load = load_average()
        pb = b.load.run_pgbench("point_read.sql", s.rd_connections, s.pgbouncer_port, "exam_results_ro",
                                {"year": year, "roll_min": lo, "roll_max": lo + students - 1})
        pb.update(label=PGBENCH, load_average_1m=load)
        data.append(pb)
        return pb

    off = function_run(OFF, 0, 1, None)
    if not off["rps"]:
        raise RuntimeError("get-result with the cache off served nothing: see its log in " + str(b.stack.tmp))
    compression = off["rps"] / crowd_rate  # from the first pass's cache-off row, kept for every pass
    rest = [lambda ttl=ttl: function_run(f"get-result, cache on, TTL {ttl:g} s", students,
                                         round(ttl * 1000 / compression), ttl) for ttl in s.rd_ttls]
    rest.append(pgbench_run)
    for step in rest:
        step()
    whole = [lambda: function_run(OFF, 0, 1, None)] + rest
    for n in range(1, s.rd_passes):  # later passes in reverse order, then forward again: drift cancels
        for step in (whole[::-1] if n % 2 else whole):
            step()
    best: dict[str, dict] = {}
    for d in data:  # per row, the pass that served the most; the others' rates are shown beside it
        if d["label"] not in best or d["rps"] > best[d["label"]]["rps"]:
            best[d["label"]] = d
    pb = best[PGBENCH]
    pb_cpu = db_cores(pb["cpu"]) / pb["rps"] * 1e6 if pb["rps"] else float("nan")
    rows = []
    for d in best.values():
        others = " ".join(f"{x['rps']:,.0f}" for x in data if x["label"] == d["label"] and x is not d) or "-"
        cores = db_cores(d["cpu"])
        per_req = cores / d["rps"] * 1e6 if d["rps"] else float("nan")
        d["database_cores"], d["database_cpu_us_per_request"] = cores, per_req
        d["ratio_rps_to_pgbench"] = d["rps"] / pb["rps"] if pb["rps"] else None
        d["ratio_db_cpu_to_pgbench"] = per_req / pb_cpu if pb_cpu else None
        is_pb = d is pb
        rows.append([d["label"], d.get("real_ttl_s"), d.get("replay_ttl_ms"), d.get("covered_ttl_s"),
                     d["load_average_1m"], d["rps"], others, d["p50_ms"], d["p99_ms"],
                     d["errors"], d.get("expected_hit_ratio"), d.get("hit_ratio"), cores, per_req,
                     None if is_pb else ratio(d["rps"], pb["rps"]), None if is_pb else ratio(per_req, pb_cpu)])
    return rows, data, list(best.values())

