#!/usr/bin/env bash
# Stop what grafana/local/start-prometheus.sh started for STATE_DIR: only the processes whose
# ids it recorded in STATE_DIR/observability/*.pid.
# Usage: grafana/local/stop-prometheus.sh STATE_DIR
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
OBS="$1/observability"
[ -d "$OBS" ] || exit 0
shopt -s nullglob
for pidfile in "$OBS"/*.pid; do
  pid="$(cat "$pidfile")"
  name="$(basename "$pidfile" .pid)"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "stopped $name ($pid)"
  fi
  rm -f "$pidfile"
done
