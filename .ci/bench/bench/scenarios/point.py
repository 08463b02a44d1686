"""point: results-day point reads through get-result, beside pgbench with the same SQL."""
from __future__ import annotations

import os
import sys

from ..cpu import cpu_per_request, cpu_row
from ..report import ratio

NAME = "point"


def run(b) -> None:
    point_reads(b, *b.seeded)


def point_reads(b, year: int, lo: int, hi: int) -> None:
    r = b.report
    r.h("Point reads, results-day style")
    r.p(f"`GET /results/{year}/{{roll}}` for uniformly random existing roll numbers {lo}..{hi} of "
        f"{year} (one of 5 seeded years, 1M rows in all), each client looping for {b.s.duration:g} s. "
        "Compared in the same run with the same SQL through the same PgBouncer (pgbench, "
        "`-M extended`: unnamed statements, as the function sends them), directly against the replica, "
        "and with the function's `/healthz` (no database work).")
    pg = {"year": year, "roll_min": lo, "roll_max": hi}
    wrk_args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}"]
    gport = b.s.ports["get-result"]
    max_direct = direct_client_budget(b)
    rows, cpu_rows, verdict = [], [], {}
    for c in b.s.connections:
        fn = b.load.run_wrk(gport, c, "point_read.lua", args=wrk_args)
        hz = b.load.run_wrk(gport, c, path="/healthz")
        pb = b.load.run_pgbench("point_read.sql", c, b.s.pgbouncer_port, "exam_results_ro", pg)
        dc = min(c, max_direct)
        try:
            dr = b.load.run_pgbench("point_read.sql", dc, b.s.replica_port, "exam_results", pg)
        except RuntimeError as err:  # e.g. out of connection slots: keep the other numbers
            print(f"pgbench direct with {dc} clients failed: {err}", file=sys.stderr)
            dr = {"rps": float("nan"), "p50_ms": float("nan"), "p99_ms": float("nan"), "errors": dc,
                  "cpu": {}}
        ratio_pb = fn["rps"] / pb["rps"] if pb["rps"] else float("nan")
        ratio_hz = fn["rps"] / hz["rps"] if hz["rps"] else float("nan")
        rows.append([c, "get-result (wrk)", fn["rps"], fn["p50_ms"], fn["p99_ms"], fn["errors"],
                     ratio(fn["rps"], pb["rps"]), ratio(fn["rps"], hz["rps"])])
        rows.append([c, "get-result /healthz (wrk)", hz["rps"], hz["p50_ms"], hz["p99_ms"], hz["errors"],
                     None, None])
        rows.append([c, "pgbench -> PgBouncer -> replica", pb["rps"], pb["p50_ms"], pb["p99_ms"],
                     pb["errors"], None, None])
        rows.append([dc, "pgbench -> replica" + (f" ({dc} clients: max_connections)" if dc < c else ""),
                     dr["rps"], dr["p50_ms"], dr["p99_ms"], dr["errors"], None, None])
        for label, res in (("get-result", fn), ("/healthz", hz), ("pgbench PgBouncer", pb),
                           ("pgbench direct", dr)):
            cpu_rows.append([c, label] + cpu_row(res["cpu"], b.cpu_columns) + [cpu_per_request(res)])
        b.results.setdefault("point", []).append(
            {"connections": c, "function": fn, "healthz": hz, "pgbouncer": pb, "direct": dr,
             "ratio_pgbouncer": ratio_pb, "ratio_healthz": ratio_hz})
        if c == 64:
            verdict = {"ratio": ratio_pb, "p99": fn["p99_ms"]}
    r.t(["clients", "target", "requests/s", "p50 ms", "p99 ms", "errors", "ratio to pgbench via PgBouncer",
         "ratio to /healthz"], rows)
    r.p("CPU during each run (cores, of %d):" % (os.cpu_count() or 1))
    r.t(["clients", "run"] + b.cpu_columns + ["path CPU µs per request"], cpu_rows)
    r.p("\"postgres replica\" is the replica's client backends (the benchmark's queries); \"background\" "
        "is its postmaster, WAL replay and other background processes, which also work for whatever else "
        "writes to the primary. \"path CPU µs per request\" = cores used by the processes on the request's "
        "path (load generator, function, PgBouncer, replica backends) divided by the request rate: what one "
        "request costs the machine end to end; on this machine the sum of those costs, not any single "
        "process, sets the ceiling.")
    if verdict:
        ok_ratio = verdict["ratio"] >= 0.7
        ok_p99 = verdict["p99"] < 10
        r.p(f"**At 64 connections:** ratio to pgbench-through-PgBouncer {verdict['ratio']:.2f} "
            f"({'meets' if ok_ratio else 'below'} the 0.7 goal), p99 {verdict['p99']:.1f} ms "
            f"({'meets' if ok_p99 else 'above'} the 10 ms goal).")
        b.results["verdict64"] = {**verdict, "ratio_ok": ok_ratio, "p99_ok": ok_p99}


def direct_client_budget(b) -> int:
    """Clients pgbench may open directly on the replica without running it out of slots.

    Free slots now, minus what PgBouncer may still open to the replica
    (its pool plus reserve, less what it holds now), minus a margin for
    everything else.
    """
    out = b.stack.psql("SELECT current_setting('max_connections')::int - "
                    "current_setting('superuser_reserved_connections')::int - count(*) FROM pg_stat_activity",
                    b.s.replica_port, "exam_results")
    free = int(out.strip())
    pgb_max, pgb_now = 50, 0
    try:
        config = {}
        for line in b.stack.psql("SHOW CONFIG", b.s.pgbouncer_port, "pgbouncer").splitlines():
            cols = line.split("|")
            if len(cols) >= 2:
                config[cols[0]] = cols[1]
        pgb_max = int(config.get("default_pool_size", 40)) + int(config.get("reserve_pool_size", 10))
        for line in b.stack.psql("SHOW POOLS", b.s.pgbouncer_port, "pgbouncer").splitlines():
            cols = line.split("|")
            if cols and cols[0] == "exam_results_ro":
                # database|user|cl_active|cl_waiting|cl_active_cancel_req|cl_waiting_cancel_req|
                # sv_active|sv_active_cancel|sv_being_canceled|sv_idle|sv_used|sv_tested|sv_login|...
                pgb_now += sum(int(c) for c in cols[6:13] if c.isdigit())
    except (RuntimeError, ValueError):
        pass
    return max(1, free - max(0, pgb_max - pgb_now) - 20)


