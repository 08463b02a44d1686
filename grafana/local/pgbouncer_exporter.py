#!/usr/bin/env python3
"""LOCAL ONLY: a small Prometheus exporter for PgBouncer, for `make up`.

In a cluster the chart runs prometheuscommunity/pgbouncer-exporter beside every PgBouncer pod.
Debian ships no build of that exporter (its prometheus-pgbouncer-exporter package is a different
program that reports only active and waiting clients), so the local stack uses this one, which
reads the same admin-console commands and emits the same metric names and labels as
prometheuscommunity/pgbouncer-exporter, so the dashboards and alerts work unchanged:

    pgbouncer_up
    pgbouncer_pools_client_active_connections{database,user}
    pgbouncer_pools_client_waiting_connections{database,user}
    pgbouncer_pools_server_active_connections{database,user}
    pgbouncer_pools_server_idle_connections{database,user}
    pgbouncer_pools_server_used_connections{database,user}
    pgbouncer_pools_server_testing_connections{database,user}
    pgbouncer_pools_server_login_connections{database,user}
    pgbouncer_pools_client_maxwait_seconds{database,user}
    pgbouncer_databases_pool_size{name,database}
    pgbouncer_databases_current_connections{name,database}
    pgbouncer_databases_max_connections{name,database}

It runs `SHOW POOLS` and `SHOW DATABASES` through psql (postgresql-client) on every scrape.
The user must be listed in PgBouncer's stats_users or admin_users; psql takes its password from
PGPASSWORD or PGPASSFILE as usual.

    pgbouncer_exporter.py --listen 127.0.0.1:9127 \
        --dsn 'host=127.0.0.1 port=6432 dbname=pgbouncer user=exam_app'
"""
from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POOL_GAUGES = [
    # (SHOW POOLS column, metric name, help)
    ("cl_active", "pgbouncer_pools_client_active_connections",
     "Client connections linked to server connection and able to process queries"),
    ("cl_waiting", "pgbouncer_pools_client_waiting_connections",
     "Client connections waiting on a server connection"),
    ("sv_active", "pgbouncer_pools_server_active_connections",
     "Server connections linked to a client connection"),
    ("sv_idle", "pgbouncer_pools_server_idle_connections",
     "Server connections idle and ready for a client query"),
    ("sv_used", "pgbouncer_pools_server_used_connections",
     "Server connections idle more than server_check_delay, needing server_check_query"),
    ("sv_tested", "pgbouncer_pools_server_testing_connections",
     "Server connections currently running either server_reset_query or server_check_query"),
    ("sv_login", "pgbouncer_pools_server_login_connections",
     "Server connections currently in logging in process"),
]
DATABASE_GAUGES = [
    ("pool_size", "pgbouncer_databases_pool_size", "Maximum number of server connections"),
    ("current_connections", "pgbouncer_databases_current_connections",
     "Current number of connections for this database"),
    ("max_connections", "pgbouncer_databases_max_connections",
     "Maximum number of allowed connections for this database"),
]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else 0.0
    except ValueError:
        return 0.0


def parse_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def render(pools: list[dict] | None, databases: list[dict] | None) -> str:
    """Prometheus text exposition for one scrape; pools None means PgBouncer was unreachable."""
    out = ["# HELP pgbouncer_up The PgBouncer admin console answered the last scrape.",
           "# TYPE pgbouncer_up gauge",
           f"pgbouncer_up {0 if pools is None else 1}"]
    if pools is None:
        return "\n".join(out) + "\n"
    for column, name, help_text in POOL_GAUGES:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for row in pools:
            labels = f'database="{escape(row["database"])}",user="{escape(row["user"])}"'
            out.append(f"{name}{{{labels}}} {number(row.get(column)):g}")
    name = "pgbouncer_pools_client_maxwait_seconds"
    out += [f"# HELP {name} Age of the oldest unserved client connection, in seconds",
            f"# TYPE {name} gauge"]
    for row in pools:
        labels = f'database="{escape(row["database"])}",user="{escape(row["user"])}"'
        seconds = number(row.get("maxwait")) + number(row.get("maxwait_us")) / 1e6
        out.append(f"{name}{{{labels}}} {seconds:g}")
    for column, name, help_text in DATABASE_GAUGES:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for row in databases or []:
            if column not in row:
                continue
            labels = f'name="{escape(row["name"])}",database="{escape(row.get("database") or "")}"'
            out.append(f"{name}{{{labels}}} {number(row.get(column)):g}")
    return "\n".join(out) + "\n"


class Scraper:
    def __init__(self, dsn: str, psql: str = "psql", timeout: float = 5.0) -> None:
        self.dsn, self.psql, self.timeout = dsn, psql, timeout

    def show(self, what: str) -> list[dict]:
        res = subprocess.run([self.psql, self.dsn, "--csv", "-X", "-c", f"SHOW {what}"],
                             capture_output=True, text=True, timeout=self.timeout)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.strip())
        return parse_csv(res.stdout)

    def scrape(self) -> str:
        try:
            pools = self.show("POOLS")
            databases = self.show("DATABASES")
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as err:
            print(f"pgbouncer_exporter: scrape failed: {err}", file=sys.stderr, flush=True)
            return render(None, None)
        return render(pools, databases)


def serve(listen: str, scraper: Scraper) -> None:
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = scraper.scrape().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    print(f"pgbouncer_exporter: serving http://{host or '127.0.0.1'}:{port}/metrics", flush=True)
    server.serve_forever()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:9127")
    ap.add_argument("--dsn", default="host=127.0.0.1 port=6432 dbname=pgbouncer user=pgbouncer")
    ap.add_argument("--psql", default="psql")
    args = ap.parse_args(argv)
    serve(args.listen, Scraper(args.dsn, args.psql))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
