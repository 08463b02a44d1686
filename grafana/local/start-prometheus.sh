#!/usr/bin/env bash
# Start the local observability stack for `make up`: Prometheus (Debian's `prometheus`), the
# PostgreSQL exporters (Debian's `prometheus-postgres-exporter`, one per instance) and the local
# PgBouncer exporter (grafana/local/pgbouncer_exporter.py), all on 127.0.0.1. Prints the URL.
#
# Usage: grafana/local/start-prometheus.sh STATE_DIR
#   STATE_DIR: the stack's state directory (make up's .local); files go to STATE_DIR/observability.
#
# Environment (defaults match the local stack's ports in the contract):
#   PROMETHEUS_PORT=9090
#   PGBOUNCER_PORT=6432        PGBOUNCER_EXPORTER_PORT=9127
#   POSTGRES_PRIMARY_PORT=55432  POSTGRES_PRIMARY_EXPORTER_PORT=9187
#   POSTGRES_REPLICA_PORT=55433  POSTGRES_REPLICA_EXPORTER_PORT=9188
#   OBS_POSTGRES_DB=exam_results
#   SANDBOX_DIR=STATE_DIR      the database sandbox (.ci/sandbox.sh): the exporters log in
#                              with its monitoring roles, exam_monitor (pg_monitor, not a
#                              superuser) and pgbouncer_stats (PgBouncer's stats_users), whose
#                              passwords it reads from SANDBOX_DIR/secrets.env.
#   OBS_POSTGRES_USER / OBS_POSTGRES_PASSWORD, OBS_PGBOUNCER_USER / OBS_PGBOUNCER_PASSWORD
#                              override those roles (environment only).
# Credentials reach the exporters only through password files in STATE_DIR/observability
# (mode 600): never on a command line, never in a connection string an exporter could log.
# Stop everything with grafana/local/stop-prometheus.sh STATE_DIR.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GRAFANA="$(dirname "$HERE")"
STATE="$(mkdir -p "$1" && cd "$1" && pwd)"
OBS="$STATE/observability"
mkdir -p "$OBS"

PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
PGBOUNCER_PORT="${PGBOUNCER_PORT:-6432}"
PGBOUNCER_EXPORTER_PORT="${PGBOUNCER_EXPORTER_PORT:-9127}"
POSTGRES_PRIMARY_PORT="${POSTGRES_PRIMARY_PORT:-55432}"
POSTGRES_REPLICA_PORT="${POSTGRES_REPLICA_PORT:-55433}"
POSTGRES_PRIMARY_EXPORTER_PORT="${POSTGRES_PRIMARY_EXPORTER_PORT:-9187}"
POSTGRES_REPLICA_EXPORTER_PORT="${POSTGRES_REPLICA_EXPORTER_PORT:-9188}"
OBS_POSTGRES_DB="${OBS_POSTGRES_DB:-exam_results}"

# The monitoring roles' passwords, from the sandbox's secrets file unless given.
SANDBOX_DIR="${SANDBOX_DIR:-$STATE}"
secret() { [ -r "$SANDBOX_DIR/secrets.env" ] && sed -n "s/^$1=//p" "$SANDBOX_DIR/secrets.env" | tail -n1; }
OBS_POSTGRES_USER="${OBS_POSTGRES_USER:-exam_monitor}"
OBS_POSTGRES_PASSWORD="${OBS_POSTGRES_PASSWORD:-$(secret EXAM_MONITOR_PASSWORD || true)}"
OBS_PGBOUNCER_USER="${OBS_PGBOUNCER_USER:-pgbouncer_stats}"
OBS_PGBOUNCER_PASSWORD="${OBS_PGBOUNCER_PASSWORD:-$(secret PGBOUNCER_STATS_PASSWORD || true)}"
(umask 077
 printf '%s' "$OBS_POSTGRES_PASSWORD" >"$OBS/postgres-exporter.password"
 printf '127.0.0.1:%s:pgbouncer:%s:%s\n' "$PGBOUNCER_PORT" "$OBS_PGBOUNCER_USER" \
   "$(printf '%s' "$OBS_PGBOUNCER_PASSWORD" | sed 's/[\\:]/\\&/g')" >"$OBS/pgbouncer-exporter.pgpass")
unset OBS_POSTGRES_PASSWORD OBS_PGBOUNCER_PASSWORD PGPASSWORD

# Stop what a previous run left, so the script can be run again.
"$HERE/stop-prometheus.sh" "$STATE" >/dev/null

# start NAME CMD...: run CMD detached in its own session, log to OBS/NAME.log, pid to OBS/NAME.pid
start() {
  local name="$1"; shift
  setsid "$@" >"$OBS/$name.log" 2>&1 < /dev/null &
  echo $! >"$OBS/$name.pid"
}

# PostgreSQL exporters: CloudNativePG-compatible queries plus the project's custom queries.
if command -v prometheus-postgres-exporter >/dev/null; then
  cat "$HERE/cnpg-compat-queries.yaml" "$GRAFANA/postgres/queries.yaml" >"$OBS/postgres-queries.yaml"
  for role in primary replica; do
    if [ "$role" = primary ]; then pg_port=$POSTGRES_PRIMARY_PORT; exp_port=$POSTGRES_PRIMARY_EXPORTER_PORT
    else pg_port=$POSTGRES_REPLICA_PORT; exp_port=$POSTGRES_REPLICA_EXPORTER_PORT; fi
    # URI, user and password file apart: the exporter then logs the address only.
    (
      unset DATA_SOURCE_NAME
      export DATA_SOURCE_URI="127.0.0.1:$pg_port/$OBS_POSTGRES_DB?sslmode=disable" \
        DATA_SOURCE_USER="$OBS_POSTGRES_USER" DATA_SOURCE_PASS_FILE="$OBS/postgres-exporter.password"
      start "postgres-exporter-$role" prometheus-postgres-exporter \
        --web.listen-address="127.0.0.1:$exp_port" \
        --disable-default-metrics --disable-settings-metrics \
        --no-collector.database --no-collector.bgwriter \
        --extend.query-path="$OBS/postgres-queries.yaml"
    )
  done
else
  echo "warning: prometheus-postgres-exporter not installed (apt-get install prometheus-postgres-exporter): no PostgreSQL metrics" >&2
fi

# PgBouncer exporter.
PGPASSFILE="$OBS/pgbouncer-exporter.pgpass" start pgbouncer-exporter \
  python3 "$HERE/pgbouncer_exporter.py" --listen "127.0.0.1:$PGBOUNCER_EXPORTER_PORT" \
    --dsn "host=127.0.0.1 port=$PGBOUNCER_PORT dbname=pgbouncer user=$OBS_PGBOUNCER_USER sslmode=disable"

# Prometheus. One scrape target per function of functions.yaml, at the ports `make up` uses.
targets="$OBS/function-targets.yaml"
"$HERE/../../.ci/stack.sh" functions | while read -r name _ _ _ port; do
  printf '      - targets: ["127.0.0.1:%s"]\n        labels: {namespace: local, pod: %s-local}\n' \
    "$((port + 1000))" "$name"
done >"$targets"
sed -e "/@FUNCTION_TARGETS@/{r $targets
d;}" \
    -e "s|@RULES_FILE@|$GRAFANA/alerts/exam-results.rules.yml|" \
    -e "s|@PROMETHEUS_PORT@|$PROMETHEUS_PORT|" \
    -e "s|@PGBOUNCER_EXPORTER_PORT@|$PGBOUNCER_EXPORTER_PORT|" \
    -e "s|@POSTGRES_PRIMARY_EXPORTER_PORT@|$POSTGRES_PRIMARY_EXPORTER_PORT|" \
    -e "s|@POSTGRES_REPLICA_EXPORTER_PORT@|$POSTGRES_REPLICA_EXPORTER_PORT|" \
    "$GRAFANA/prometheus/prometheus.yml.tmpl" >"$OBS/prometheus.yml"
promtool check config "$OBS/prometheus.yml" >"$OBS/promtool-check.log" 2>&1 || {
  cat "$OBS/promtool-check.log" >&2; exit 1; }
start prometheus prometheus \
  --config.file="$OBS/prometheus.yml" \
  --storage.tsdb.path="$OBS/prometheus-data" \
  --storage.tsdb.retention.time=2d \
  --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
  --web.enable-lifecycle

URL="http://127.0.0.1:$PROMETHEUS_PORT"
for _ in $(seq 1 60); do
  if python3 - "$URL/-/ready" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1)
PY
  if ! kill -0 "$(cat "$OBS/prometheus.pid")" 2>/dev/null; then
    echo "prometheus exited; see $OBS/prometheus.log" >&2
    tail -n 20 "$OBS/prometheus.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "Prometheus: $URL (targets: $URL/targets, alerts: $URL/alerts; logs in $OBS)"
