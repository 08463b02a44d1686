#!/usr/bin/env bash
# The local exam-results system: a PostgreSQL primary, a streaming replica
# (pg_basebackup), PgBouncer in transaction pooling mode, the schema, the
# 1M-row seed, the five functions (release builds) and Prometheus.
#
#   .ci/stack.sh up | down | clean | status | env
#
# Everything listens on 127.0.0.1 only. All state lives in $STATE_DIR
# (default .local/, git-ignored). `up` twice reuses the data and does not
# reseed; `down` keeps the data; `clean` removes it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${STATE_DIR:-$ROOT/.local}"
PRIMARY_PORT="${PRIMARY_PORT:-55432}"
REPLICA_PORT="${REPLICA_PORT:-55433}"
PGBOUNCER_PORT="${PGBOUNCER_PORT:-6432}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
SEED_ROWS="${SEED_ROWS:-1000000}"
CARGO_PROFILE="${CARGO_PROFILE:-release}"
# name:port (metrics port = port + 1000)
FUNCTIONS="create-result:${CREATE_RESULT_PORT:-8081} get-result:${GET_RESULT_PORT:-8082} list-results:${LIST_RESULTS_PORT:-8083} update-result:${UPDATE_RESULT_PORT:-8084} delete-result:${DELETE_RESULT_PORT:-8085} results-page:${RESULTS_PAGE_PORT:-8086}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

pg_bindir() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  [ -n "$dir" ] && echo "$dir" || dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)"
}

# as_pg CMD...: run as the unprivileged postgres user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_tools() {
  local missing=()
  [ -x "$(pg_bindir)/initdb" ] || missing+=(postgresql)
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  command -v psql >/dev/null || missing+=(postgresql-client)
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
  command -v cargo >/dev/null || die "cargo is required: install Rust from https://rustup.rs"
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      say "installing ${missing[*]} (apt)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      die "missing: ${missing[*]}. On Debian/Ubuntu: sudo apt-get install ${missing[*]}; on macOS: brew install postgresql@15 pgbouncer prometheus"
    fi
  fi
  export PATH="$(pg_bindir):/usr/sbin:$PATH"
}

secrets() {
  mkdir -p "$STATE_DIR"
  if [ ! -f "$STATE_DIR/secrets.env" ]; then
    umask 077
    {
      echo "POSTGRES_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
      echo "EXAM_APP_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
      echo "WRITE_TOKEN=local-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
    } > "$STATE_DIR/secrets.env"
  fi
  # shellcheck disable=SC1091
  . "$STATE_DIR/secrets.env"
}

is_up() { pg_isready -q -h 127.0.0.1 -p "$1" 2>/dev/null; }

wait_up() {
  for _ in $(seq 1 100); do is_up "$1" && return 0; sleep 0.2; done
  die "PostgreSQL on port $1 did not start; see $2"
}

prepare_dirs() {
  mkdir -p "$STATE_DIR"/{logs,run}
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$STATE_DIR" "$STATE_DIR/logs" "$STATE_DIR/run"; fi
}

start_primary() {
  local data="$STATE_DIR/primary"
  if [ ! -f "$data/PG_VERSION" ]; then
    say "initialising the primary in $data"
    local pwfile="$STATE_DIR/run/pwfile"
    echo "$POSTGRES_PASSWORD" > "$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
    as_pg initdb -D "$data" -U postgres --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=peer -E UTF8 >/dev/null
    rm -f "$pwfile"
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PRIMARY_PORT
unix_socket_directories = '$STATE_DIR/run'
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
max_connections = 200
shared_buffers = 256MB
log_min_duration_statement = 250
CONF
    echo "host replication postgres 127.0.0.1/32 scram-sha-256" >> "$data/pg_hba.conf"
  fi
  if ! is_up "$PRIMARY_PORT"; then
    say "starting the primary on 127.0.0.1:$PRIMARY_PORT"
    as_pg pg_ctl -D "$data" -l "$STATE_DIR/logs/primary.log" -w start >/dev/null
  fi
  wait_up "$PRIMARY_PORT" "$STATE_DIR/logs/primary.log"
}

psql_primary() { PGPASSWORD="$POSTGRES_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres "$@"; }

create_app_role() {
  psql_primary -d postgres <<SQL >/dev/null
SELECT 'CREATE ROLE exam_app LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'exam_app')\gexec
ALTER ROLE exam_app PASSWORD '$EXAM_APP_PASSWORD';
-- Server-side backstop behind the functions' own statement timeout.
ALTER ROLE exam_app SET statement_timeout = '5s';
SELECT 'CREATE DATABASE exam_results OWNER exam_app' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'exam_results')\gexec
SQL
}

migrate() {
  say "applying sql/migrations (idempotent)"
  for file in "$ROOT"/sql/migrations/*.sql; do
    PGOPTIONS="-c statement_timeout=0 -c client_min_messages=warning" PGPASSWORD="$EXAM_APP_PASSWORD" \
      psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PRIMARY_PORT" -U exam_app -d exam_results -f "$file" >/dev/null
  done
}

seed() {
  local count
  count="$(PGPASSWORD="$EXAM_APP_PASSWORD" psql -X -tA -h 127.0.0.1 -p "$PRIMARY_PORT" -U exam_app -d exam_results -c 'SELECT count(*) FROM student_results')"
  if [ "$count" -gt 0 ]; then
    say "student_results already holds $count rows: not reseeding"
    return
  fi
  say "seeding $SEED_ROWS rows with psql (sql/seed.sql)"
  PGPASSWORD="$EXAM_APP_PASSWORD" psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PRIMARY_PORT" -U exam_app -d exam_results \
    -v rows="$SEED_ROWS" -f "$ROOT/sql/seed.sql"
}

start_replica() {
  local data="$STATE_DIR/replica"
  if [ ! -f "$data/PG_VERSION" ]; then
    say "cloning the replica with pg_basebackup"
    # Clone into a scratch directory and move it into place only when complete,
    # so an interrupted clone is simply redone; a stale slot from one is dropped.
    rm -rf "$data.partial"
    psql_primary -d postgres -c "SELECT pg_drop_replication_slot('replica1') FROM pg_replication_slots WHERE slot_name = 'replica1'" >/dev/null
    as_pg env PGPASSWORD="$POSTGRES_PASSWORD" pg_basebackup -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres \
      -D "$data.partial" -R -X stream -c fast -C -S replica1 >/dev/null
    mv "$data.partial" "$data"
    sed -i "s/^port = .*/port = $REPLICA_PORT/" "$data/postgresql.conf"
    echo "hot_standby_feedback = on" >> "$data/postgresql.conf"
  fi
  if ! is_up "$REPLICA_PORT"; then
    say "starting the replica on 127.0.0.1:$REPLICA_PORT"
    as_pg pg_ctl -D "$data" -l "$STATE_DIR/logs/replica.log" -w start >/dev/null
  fi
  wait_up "$REPLICA_PORT" "$STATE_DIR/logs/replica.log"
}

start_pgbouncer() {
  local dir="$STATE_DIR/pgbouncer"
  mkdir -p "$dir"
  local secret
  secret="$(psql_primary -d postgres -tA -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'exam_app'")"
  printf '"exam_app" "%s"\n' "$secret" > "$dir/userlist.txt"
  cat > "$dir/pgbouncer.ini" <<INI
;; Local PgBouncer: transaction pooling, read-write and read-only databases.
[databases]
exam_results = host=127.0.0.1 port=$PRIMARY_PORT dbname=exam_results
exam_results_ro = host=127.0.0.1 port=$REPLICA_PORT dbname=exam_results

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
; 5 functions x DATABASE_POOL_SIZE (16 locally) = 80 client connections, plus benchmarks.
max_client_conn = 1000
default_pool_size = 40
min_pool_size = 5
reserve_pool_size = 5
server_login_retry = 1
query_wait_timeout = 10
ignore_startup_parameters = extra_float_digits,options
stats_users = exam_app
admin_users = exam_app
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$dir"; fi
  if [ -f "$dir/pgbouncer.pid" ] && kill -0 "$(cat "$dir/pgbouncer.pid")" 2>/dev/null; then
    as_pg pgbouncer -R -d "$dir/pgbouncer.ini" >/dev/null 2>&1 || kill -HUP "$(cat "$dir/pgbouncer.pid")"
  else
    say "starting PgBouncer on 127.0.0.1:$PGBOUNCER_PORT"
    as_pg pgbouncer -d "$dir/pgbouncer.ini"
  fi
  for _ in $(seq 1 50); do (echo > "/dev/tcp/127.0.0.1/$PGBOUNCER_PORT") 2>/dev/null && return 0; sleep 0.1; done
  die "PgBouncer did not start; see $dir/pgbouncer.log"
}

build_functions() {
  say "building the functions ($CARGO_PROFILE)"
  (cd "$ROOT" && GIT_REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" cargo build --profile "$CARGO_PROFILE" --workspace --bins -q)
}

function_env() {
  local name="$1" port="$2" database
  case "$name" in get-result|list-results|results-page) database=exam_results_ro ;; *) database=exam_results ;; esac
  echo "PORT=$port"
  echo "METRICS_PORT=$((port + 1000))"
  echo "BIND_ADDRESS=127.0.0.1"
  echo "DATABASE_URL=postgres://exam_app@127.0.0.1:$PGBOUNCER_PORT/$database"
  echo "DATABASE_PASSWORD=$EXAM_APP_PASSWORD"
  echo "DATABASE_POOL_SIZE=${DATABASE_POOL_SIZE:-16}"
  echo "WRITE_TOKENS=$WRITE_TOKEN"
  if [ "$database" = exam_results_ro ]; then
    echo "READ_FALLBACK_DATABASE_URL=postgres://exam_app@127.0.0.1:$PGBOUNCER_PORT/exam_results"
    echo "MAX_REPLICA_LAG_SECONDS=${MAX_REPLICA_LAG_SECONDS:-30}"
  fi
  echo "LOG_LEVEL=${LOG_LEVEL:-info}"
  # The results page's script reads get-result, which lets that page's origin read it.
  case "$name" in
    get-result) echo "CORS_ALLOW_ORIGIN=http://127.0.0.1:${RESULTS_PAGE_PORT:-8086}" ;;
    results-page) echo "RESULTS_API_URL=http://127.0.0.1:${GET_RESULT_PORT:-8082}" ;;
  esac
}

start_functions() {
  local target_dir="$ROOT/target/$([ "$CARGO_PROFILE" = dev ] && echo debug || echo "$CARGO_PROFILE")"
  for spec in $FUNCTIONS; do
    local name="${spec%%:*}" port="${spec##*:}" pidfile="$STATE_DIR/run/${spec%%:*}.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")" 2>/dev/null || true   # restart with the fresh build
      for _ in $(seq 1 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    fi
    (
      set -a
      # shellcheck disable=SC1090
      . <(function_env "$name" "$port")
      set +a
      setsid "$target_dir/$name" >> "$STATE_DIR/logs/$name.log" 2>&1 < /dev/null &
      echo $! > "$pidfile"
    )
  done
  for spec in $FUNCTIONS; do
    local name="${spec%%:*}" port="${spec##*:}" ok=""
    for _ in $(seq 1 100); do
      if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.1
    done
    [ -n "$ok" ] || die "$name did not become ready on port $port; see $STATE_DIR/logs/$name.log"
  done
}

start_prometheus() {
  if [ -x "$ROOT/grafana/local/start-prometheus.sh" ]; then
    PROMETHEUS_PORT="$PROMETHEUS_PORT" PGBOUNCER_PORT="$PGBOUNCER_PORT" \
    POSTGRES_PRIMARY_PORT="$PRIMARY_PORT" POSTGRES_REPLICA_PORT="$REPLICA_PORT" \
    OBS_PGBOUNCER_USER=exam_app OBS_PGBOUNCER_PASSWORD="$EXAM_APP_PASSWORD" \
    OBS_POSTGRES_USER=postgres OBS_POSTGRES_PASSWORD="$POSTGRES_PASSWORD" \
      "$ROOT/grafana/local/start-prometheus.sh" "$STATE_DIR" || say "Prometheus did not start (see $STATE_DIR/observability); the functions are up"
  fi
}

print_endpoints() {
  local t="$WRITE_TOKEN"
  cat <<TXT

exam-results is up (state in $STATE_DIR; logs in $STATE_DIR/logs)

  create-result  POST   http://127.0.0.1:8081/results                      (metrics :9081/metrics)
  get-result     GET    http://127.0.0.1:8082/results/{exam_year}/{roll}   (metrics :9082/metrics)
  list-results   GET    http://127.0.0.1:8083/results?exam_year=Y          (metrics :9083/metrics)
  update-result  PUT    http://127.0.0.1:8084/results/{exam_year}/{roll}   (metrics :9084/metrics)
  delete-result  DELETE http://127.0.0.1:8085/results/{exam_year}/{roll}   (metrics :9085/metrics)
  results-page   GET    http://127.0.0.1:${RESULTS_PAGE_PORT:-8086}/   (the public results page: open it in a browser)
  PgBouncer      127.0.0.1:$PGBOUNCER_PORT  (exam_results -> primary :$PRIMARY_PORT, exam_results_ro -> replica :$REPLICA_PORT)
  Prometheus     http://127.0.0.1:$PROMETHEUS_PORT

Writes need:  Authorization: Bearer $t

  curl -s http://127.0.0.1:8082/results/2024/100000001
  curl -s 'http://127.0.0.1:8083/results?exam_year=2024&limit=3'
  curl -s -X POST http://127.0.0.1:8081/results -H 'Authorization: Bearer $t' -H 'Content-Type: application/json' -d '{"roll_number": 999000001, "exam_year": 2025, "marks": 88}'
  curl -s -X PUT http://127.0.0.1:8084/results/2025/999000001 -H 'Authorization: Bearer $t' -H 'Content-Type: application/json' -d '{"marks": 91}'
  curl -s -X DELETE -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8085/results/2025/999000001 -H 'Authorization: Bearer $t'

Stop with 'make down' (keeps data); remove everything with 'make clean'.
TXT
}

up() {
  ensure_tools
  secrets
  prepare_dirs
  start_primary
  create_app_role
  migrate
  seed
  start_replica
  start_pgbouncer
  build_functions
  start_functions
  start_prometheus
  print_endpoints
}

stop_pidfile() {
  local pidfile="$1"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

down() {
  [ -d "$STATE_DIR" ] || { echo "nothing to stop"; return; }
  export PATH="$(pg_bindir):/usr/sbin:$PATH"
  say "stopping the functions"
  for spec in $FUNCTIONS; do stop_pidfile "$STATE_DIR/run/${spec%%:*}.pid"; done
  [ -x "$ROOT/grafana/local/stop-prometheus.sh" ] && "$ROOT/grafana/local/stop-prometheus.sh" "$STATE_DIR" >/dev/null 2>&1 || true
  say "stopping PgBouncer and PostgreSQL (data kept)"
  stop_pidfile "$STATE_DIR/pgbouncer/pgbouncer.pid"
  for node in replica primary; do
    [ -f "$STATE_DIR/$node/postmaster.pid" ] && as_pg pg_ctl -D "$STATE_DIR/$node" -m fast -w stop >/dev/null || true
  done
}

status() {
  secrets >/dev/null
  for spec in $FUNCTIONS; do
    printf '%-14s %s\n' "${spec%%:*}" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${spec##*:}/readyz" || true)"
  done
  is_up "$PRIMARY_PORT" && echo "primary        up" || echo "primary        down"
  is_up "$REPLICA_PORT" && echo "replica        up" || echo "replica        down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  clean) down; rm -rf "$STATE_DIR"; echo "removed $STATE_DIR" ;;
  status) status ;;
  env) secrets; function_env "${2:?function name}" "${3:-8080}" ;;
  *) echo "usage: $0 up|down|clean|status|env NAME [PORT]" >&2; exit 2 ;;
esac
