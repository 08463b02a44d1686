"""What the numbers say about the goals, computed from them (always reported last)."""
from __future__ import annotations

import os


def run(b) -> None:
    """What the numbers above say about the 0.7 / 10 ms goals, computed from them."""
    r = b.report
    point = {p["connections"]: p for p in b.results.get("point", [])}
    at = point.get(64) or (point[max(point)] if point else None)
    if not at:
        return
    r.h("Findings (computed from the tables above)")
    c = at["connections"]
    comps = [("load generator (wrk / pgbench)", "load generator"), ("get-result", "get-result"),
             ("PgBouncer", "pgbouncer"), ("PostgreSQL replica", "postgres replica")]
    rows, totals = [], {}
    for label, key in comps:
        row = [label]
        for name in ("function", "pgbouncer", "direct"):
            res = at[name]
            row.append(res["cpu"].get(key, 0.0) / res["rps"] * 1e6 if res["rps"] else None)
        rows.append(row)
    for i, name in enumerate(("function", "pgbouncer", "direct")):
        totals[name] = sum(row[i + 1] or 0.0 for row in rows)
    rows.append(["sum", totals["function"], totals["pgbouncer"], totals["direct"]])
    r.p(f"CPU microseconds per request at {c} clients, by process (cores used / requests per second, "
        "from the point-read runs):")
    r.t(["process", "get-result via wrk", "pgbench via PgBouncer", "pgbench direct"], rows)
    busy = {n: at[n]["cpu"]["machine busy"] - at[n]["cpu"]["other"] for n in ("function", "pgbouncer")}
    predicted = totals["pgbouncer"] / totals["function"] if totals["function"] else float("nan")
    lines = [
        f"- Measured ratio get-result / pgbench-through-PgBouncer at {c} clients: "
        f"**{at['ratio_pgbouncer']:.2f}**; the ratio of their CPU costs per request above predicts "
        f"{predicted:.2f}. The machine was {at['function']['cpu']['machine busy']:.2f} and "
        f"{at['pgbouncer']['cpu']['machine busy']:.2f} of {os.cpu_count()} cores busy during the two runs "
        f"(benchmark processes {busy['function']:.2f} and {busy['pgbouncer']:.2f}, everything else "
        f"{at['function']['cpu']['other']:.2f} and {at['pgbouncer']['cpu']['other']:.2f}); where it is "
        "saturated, each path's throughput is the CPU it gets divided by its CPU per request.",
        f"- The same SQL's own p99 at {c} clients: {at['pgbouncer']['p99_ms']:.1f} ms through PgBouncer, "
        f"{at['direct']['p99_ms']:.1f} ms directly; get-result's p99 {at['function']['p99_ms']:.1f} ms. "
        f"With {c} requests always in flight, mean latency = {c} / throughput (Little's law).",
    ]
    pgb = at["pgbouncer"]["cpu"].get("pgbouncer", 0.0)
    groups = {k: v for k, v in at["function"]["cpu"].items() if k not in ("machine busy", "other", "steal")}
    top = max(groups, key=groups.get)
    lines.append(f"- PgBouncer runs on one thread: it used {pgb:.2f} of its one core in the pgbench run at "
                 f"{c} clients and {at['function']['cpu'].get('pgbouncer', 0.0):.2f} in the get-result run ("
                 + ("well below a saturated core" if max(pgb, at['function']['cpu'].get('pgbouncer', 0.0)) < 0.8
                    else "close to a saturated core") +
                 f"). The largest consumer in the get-result run: {top} ({groups[top]:.2f} cores).")
    prof = {p["label"]: p for p in b.results.get("profile", [])}
    base = prof.get("stack settings (pool 16, LOG_LEVEL=info)")
    warn = prof.get("pool 16, LOG_LEVEL=warn (no per-request log line)")
    one = prof.get("pool 16, TOKIO_WORKER_THREADS=1")
    def fn_us(p):
        return p["wrk"]["cpu"].get("get-result", 0.0) / p["wrk"]["rps"] * 1e6 if p["wrk"]["rps"] else float("nan")
    if base and warn:
        lines.append(f"- The per-request JSON log line: get-result used {fn_us(base):.1f} µs CPU per request "
                     f"with LOG_LEVEL=info and {fn_us(warn):.1f} µs with LOG_LEVEL=warn.")
    if base and one:
        lines.append(f"- One tokio worker thread instead of one per core: {fn_us(one):.1f} µs per request "
                     f"({one['wrk']['rps']:,.0f} requests/s against {base['wrk']['rps']:,.0f}).")
    if base:
        lines.append(f"- Queries per HTTP request through PgBouncer: {base['pgbouncer_queries'] / base['http']:.2f} "
                     "(one round trip: Parse/Bind/Execute/Sync in one message).")
    sc = b.results.get("syscalls")
    if sc:
        per = {row[0]: row[1] for row in sc["rows"]}
        total = sum(per.values())
        lines.append(f"- System calls per request: {total:.1f} in all; " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.1) + ".")
    r.p("\n".join(lines))


