"""growth: 1M / 10M (/ 50M) rows in a scratch database: bulk load, point reads, planning time."""
from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import time
from typing import Optional

from ..settings import ROOT, SCRATCH_DB
from ..stack import metric_sum, scrape
from ..stats import percentile

NAME = "growth"


def run(b) -> None:
    growth(b)


def growth(b) -> None:
    r = b.report
    r.h("Data growth and bulk load (scratch database)")
    rows_list = sorted(b.s.growth_rows)
    if not rows_list:
        r.p("Skipped (quick mode; set BENCH_GROWTH_ROWS, e.g. `BENCH_GROWTH_ROWS=\"1000000 10000000\"`).")
        return
    need = max(rows_list) * 300  # table + index + WAL on the primary, again on the replica
    free = shutil.disk_usage(b.s.state_dir).free
    if free < need:
        r.p(f"Skipped: {free / 1e9:.1f} GB free, about {need / 1e9:.1f} GB needed for {max(rows_list):,} rows.")
        return
    P = b.s.primary_port
    b.stack.psql(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)", P, "postgres", superuser=True)
    b.stack.psql(f"CREATE DATABASE {SCRATCH_DB} OWNER exam_owner", P, "postgres", superuser=True)
    opts = "-c statement_timeout=0 -c client_min_messages=warning"
    seed_rows, copy_rows, growth_rows, plan_rows = [], [], [], []
    try:
        for f in sorted((ROOT / "sql" / "migrations").glob("*.sql")):
            b.stack.psql("", P, SCRATCH_DB, options=opts, file=f)
        years = 5
        first_year = 2021
        year = first_year + years - 1
        for n in rows_list:
            b.stack.psql("TRUNCATE student_results", P, SCRATCH_DB, options=opts)
            t0 = time.perf_counter()
            out = b.stack.psql("", P, SCRATCH_DB, options=opts, file=ROOT / "sql" / "seed.sql",
                            variables={"rows": n, "first_year": first_year, "years": years})
            total = time.perf_counter() - t0
            insert_ms = [float(m) for m in re.findall(r"Time: ([\d.]+) ms", out)]
            ins = insert_ms[0] / 1000 if insert_ms else float("nan")
            size = int(b.stack.psql("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                                 "WHERE inhparent = 'student_results'::regclass", P, SCRATCH_DB).strip())
            seed_rows.append([n, "psql sql/seed.sql (INSERT ... SELECT generate_series)", ins, n / ins,
                              total, size / 1048576])
            per_year = n // years
            pg = {"year": year, "roll_min": 100000001, "roll_max": 100000000 + per_year}
            res = b.load.run_pgbench("point_read.sql", 16, P, SCRATCH_DB, pg)
            plan, execute = plan_times(b, P, year, 100000001, 100000000 + per_year)
            nparts = partition_count(b, P)
            growth_rows.append([n, per_year, res["rps"], res["p50_ms"], res["p99_ms"], res["errors"],
                                statistics.median(plan), percentile(plan, 99), statistics.median(execute)])
            plan_rows.append([n, nparts, statistics.median(plan), percentile(plan, 99)])
        # planning time against partitions in use: one partition per year 2000..2100
        n = rows_list[-1]
        per_year = n // years
        for upto in (2060, 2100):
            b.stack.psql(f"SELECT ensure_exam_year_partition(y) FROM generate_series(2000, {upto}) y", P,
                      SCRATCH_DB, options=opts)
            b.stack.psql("ANALYZE student_results", P, SCRATCH_DB, options=opts)
            plan, _ = plan_times(b, P, year, 100000001, 100000000 + per_year)
            plan_rows.append([n, partition_count(b, P), statistics.median(plan), percentile(plan, 99)])
        during = reads_during_bulk_load(b, P, opts, first_year, years)
        # COPY: the same rows from a CSV file, client-side \copy (what a bulk load job does)
        for n in rows_list:
            csv = b.stack.tmp / f"rows-{n}.csv"
            b.stack.psql(f"\\copy (SELECT 100000000 + ((n - 1) / {years}) + 1, {first_year} + ((n - 1) % {years}), "
                      f"floor(random() * 101)::int FROM generate_series(1, {n}) n) TO '{csv}' WITH (FORMAT csv)",
                      P, SCRATCH_DB, options=opts)
            b.stack.psql("TRUNCATE student_results", P, SCRATCH_DB, options=opts)
            t0 = time.perf_counter()
            b.stack.psql(f"\\copy student_results (roll_number, exam_year, marks) FROM '{csv}' WITH (FORMAT csv)",
                      P, SCRATCH_DB, options=opts)
            copy_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            b.stack.psql("ANALYZE student_results", P, SCRATCH_DB, options=opts)
            analyze_s = time.perf_counter() - t1
            size = int(b.stack.psql("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                                 "WHERE inhparent = 'student_results'::regclass", P, SCRATCH_DB).strip())
            copy_rows.append([n, f"psql \\copy from CSV ({csv.stat().st_size / 1048576:,.0f} MiB)", copy_s,
                              n / copy_s, copy_s + analyze_s, size / 1048576])
            csv.unlink()
    finally:
        b.stack.psql(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)", P, "postgres", superuser=True)
    r.p(f"In a scratch database `{SCRATCH_DB}` on the primary (created from sql/migrations, dropped afterwards; "
        "the stack's 1M rows are not touched; the primary streams the load to the replica as usual). Rows "
        "spread over 5 years like the seed. Point reads: pgbench, 16 clients, directly on the primary "
        "(PgBouncer only knows the stack's databases), random existing rolls of the newest year; planning "
        "and execution time from `EXPLAIN (ANALYZE, SUMMARY)` of the same query, 200 random rolls.")
    r.t(["rows", "rows per year", "reads/s", "p50 ms", "p99 ms", "errors", "planning median ms",
         "planning p99 ms", "execution median ms"], growth_rows)
    r.p("Planning time against partitions in use (`ensure_exam_year_partition` for more years; the "
        "query names one year, so the planner prunes to one partition):")
    r.t(["rows", "partitions", "planning median ms", "planning p99 ms"], plan_rows)
    r.p("Bulk load into an empty table (indexes in place, as in production), seconds; \"total\" "
        "includes `ANALYZE`:")
    r.t(["rows", "method", "load seconds", "rows/s", "total seconds", "table+index MiB"], seed_rows + copy_rows)
    b.results["growth"] = {"growth": growth_rows, "plan": plan_rows, "seed": seed_rows, "copy": copy_rows,
                              "during": during}
    if during:
        r.p(f"Results-day reads during a bulk load: `sql/seed.sql` loads {during['rows']:,} rows into the scratch "
            f"database on the primary (one transaction, {during['load_seconds']:.0f} s here) while an own get-result "
            f"process with `MAX_REPLICA_LAG_SECONDS={during['limit']}` serves point reads (16 connections, "
            f"{during['seconds']:g} s, starting {during['lead']:g} s into the load). \"served by the primary\" = the "
            "share of queries PgBouncer counted on `exam_results` (the read fallback) rather than "
            "`exam_results_ro`; \"lag reported\" = the function's `exam_results_replica_lag_seconds`, \"replay "
            "lag\" = `pg_stat_replication.replay_lag` on the primary, both sampled every 0.5 s through the load:")
        r.t(["reads/s", "p50 ms", "p99 ms", "errors", "served by the primary", "lag reported by get-result, max s",
             "replay lag on the primary, max s"],
            [[during["rps"], during["p50_ms"], during["p99_ms"], during["errors"], f"{during['primary_share']:.0%}",
              during["lag_max"], during["replay_lag_max"]]])
        if not during["load_outlasted_reads"]:
            r.p("(The load finished before the reads did: part of the run saw no bulk load.)")


def reads_during_bulk_load(b, port: int, opts: str, first_year: int, years: int) -> Optional[dict]:
    """One own get-result under read load while the primary runs one long bulk-load transaction.

    The process runs with MAX_REPLICA_LAG_SECONDS=5 so that a load of
    a few tens of seconds shows what a longer one does with the stack's
    (30 s) or the chart's limit.
    """
    rows, limit, lead = 3_000_000, 5, 8.0
    seeded = b.results["seeded"]
    args = [f"year={seeded['year']}", f"roll_min={seeded['roll_min']}", f"roll_max={seeded['roll_max']}"]
    b.stack.psql("TRUNCATE student_results", port, SCRATCH_DB, options=opts)
    proc, fport = b.stack.start_function("get-result", 16, extra={"MAX_REPLICA_LAG_SECONDS": str(limit)})
    user, password = b.stack.login(port, SCRATCH_DB)
    env = b.stack.pg_env(password)
    env["PGOPTIONS"] = opts
    lags, replay = [], []

    def sample():
        try:
            m = scrape(fport + 1000)
            lags.append(metric_sum(m, "exam_results_replica_lag_seconds"))
            out = b.stack.psql("SELECT COALESCE(max(EXTRACT(EPOCH FROM replay_lag)), 0) FROM pg_stat_replication",
                            port, "postgres", superuser=True)
            replay.append(float(out.strip() or 0))
        except (OSError, RuntimeError, ValueError):
            pass

    t0 = time.monotonic()
    seed = subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", user,
         "-d", SCRATCH_DB, "-v", f"rows={rows}", "-v", f"first_year={first_year}", "-v", f"years={years}",
         "-f", str(ROOT / "sql" / "seed.sql")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        while time.monotonic() - t0 < lead and seed.poll() is None:
            sample()
            time.sleep(0.5)
        b0 = {db: b.stack.pgbouncer_stats(db).get("total_query_count", 0) for db in ("exam_results", "exam_results_ro")}
        d = min(b.s.duration, 6)
        res = b.load.run_wrk(fport, 16, "point_read.lua", args=args, sampler=sample, duration=d)
        b1 = {db: b.stack.pgbouncer_stats(db).get("total_query_count", 0) for db in ("exam_results", "exam_results_ro")}
        still_loading = seed.poll() is None
        while seed.poll() is None:
            sample()
            time.sleep(0.5)
        load_s = time.monotonic() - t0
    finally:
        _, err = seed.communicate()
        b.stack.stop(proc)
    if seed.returncode != 0:
        raise RuntimeError(f"seed during reads failed: {err}")
    rw = b1["exam_results"] - b0["exam_results"]
    ro = b1["exam_results_ro"] - b0["exam_results_ro"]
    return {**res, "rows": rows, "seconds": d, "lead": lead, "limit": limit, "load_seconds": load_s,
            "primary_share": rw / (rw + ro) if rw + ro else 0.0,
            "lag_max": max(lags) if lags else float("nan"), "replay_lag_max": max(replay) if replay else float("nan"),
            "load_outlasted_reads": still_loading}


def partition_count(b, port: int) -> int:
    return int(b.stack.psql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'student_results'::regclass",
                         port, SCRATCH_DB).strip())


def plan_times(b, port: int, year: int, lo: int, hi: int, n: int = 200) -> tuple[list[float], list[float]]:
    import random

    rnd = random.Random(42)
    sql = "\n".join(
        f"EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) SELECT roll_number, exam_year, marks FROM student_results "
        f"WHERE exam_year = {year} AND roll_number = {rnd.randint(lo, hi)};" for _ in range(n))
    path = b.stack.tmp / "plan.sql"
    path.write_text(sql)
    out = b.stack.psql("", port, SCRATCH_DB, file=path)
    plan = [float(v) for v in re.findall(r'"Planning Time": ([\d.]+)', out)]
    execute = [float(v) for v in re.findall(r'"Execution Time": ([\d.]+)', out)]
    return plan[1:], execute[1:]  # the first one warms the catalog caches


