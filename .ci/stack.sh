#!/usr/bin/env bash
# The local exam-results system: the database sandbox (.ci/sandbox.sh: a
# PostgreSQL primary, a streaming replica, PgBouncer in transaction pooling
# mode, the production roles, sql/migrate.sh), the 1M-row seed, the functions
# of knative/exam-results/functions.yaml (release builds) and Prometheus.
#
#   .ci/stack.sh up | down | clean | status | functions | env NAME [PORT]
#
# Everything listens on 127.0.0.1 only. All state lives in $STATE_DIR
# (default .local/, git-ignored). `up` twice reuses the data and does not
# reseed; `down` keeps the data; `clean` removes it. Ports: PRIMARY_PORT,
# REPLICA_PORT, PGBOUNCER_PORT, PROMETHEUS_PORT, and <NAME>_PORT for each
# function (e.g. GET_RESULT_PORT; default: its port in functions.yaml).
# The write functions log in as exam_app, the read functions as exam_reader
# (replica and primary fallback); write and read tokens are generated into
# $STATE_DIR/secrets.env beside the database passwords.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${STATE_DIR:-$ROOT/.local}"
SANDBOX="$ROOT/.ci/sandbox.sh"
MANIFEST="$ROOT/knative/exam-results/functions.yaml"
export PRIMARY_PORT="${PRIMARY_PORT:-55432}"
export REPLICA_PORT="${REPLICA_PORT:-55433}"
export PGBOUNCER_PORT="${PGBOUNCER_PORT:-6432}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
SEED_ROWS="${SEED_ROWS:-1000000}"
CARGO_PROFILE="${CARGO_PROFILE:-release}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The functions, from the one list (knative/exam-results/functions.yaml): one
# "name access method route port" line each; <NAME>_PORT overrides the port.
functions() {
  awk '
    function flush() { if (name != "") print name, access, method, route, port; name = "" }
    /^  - name:/ { flush(); name = $3; next }
    name != "" && /^    access:/ { access = $2 }
    name != "" && /^    method:/ { method = $2 }
    name != "" && /^    route:/  { route = $2 }
    name != "" && /^    port:/   { port = $2 }
    END { flush() }
  ' "$MANIFEST" | while read -r name access method route port; do
    local var; var="$(echo "$name" | tr 'a-z-' 'A-Z_')_PORT"
    echo "$name $access $method $route ${!var:-$port}"
  done
}

# manifest_field NAME FIELD: one field of a function's entry in the manifest.
manifest_field() {
  awk -v n="$1" -v f="$2:" '
    /^  - name:/ { current = $3; next }
    current == n && $1 == f { print $2; exit }
  ' "$MANIFEST"
}

# port_of NAME: the function's local port (after <NAME>_PORT).
port_of() { functions | awk -v n="$1" '$1 == n { print $5 }'; }

# The results page's URL (its origin: the page is served at /).
page_url() { echo "http://127.0.0.1:$(port_of results-page)"; }

ensure_tools() {
  local missing=()
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || [ -n "${PG_BIN:-}" ] || missing+=(postgresql)
  command -v psql >/dev/null || missing+=(postgresql-client)
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
  command -v cargo >/dev/null || die "cargo is required: install Rust from https://rustup.rs"
  [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (run .ci/install-deps.sh, or: sudo apt-get install ${missing[*]})"
}

# The sandbox's facts and passwords, and the local tokens.
load_state() {
  # shellcheck disable=SC1091
  . "$STATE_DIR/sandbox.env"
  # shellcheck disable=SC1091
  . "$STATE_DIR/secrets.env"
  export PATH="$PG_BIN:$PATH"
}

tokens() {
  local file="$STATE_DIR/secrets.env"
  (umask 077
   grep -q '^WRITE_TOKEN=' "$file" || echo "WRITE_TOKEN=local-write-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >> "$file"
   grep -q '^READ_TOKEN=' "$file" || echo "READ_TOKEN=local-read-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >> "$file")
}

start_database() {
  # The same sandbox the tests use, kept in STATE_DIR with fixed ports:
  # primary + replica + PgBouncer, the roles and the migrated exam_results.
  SANDBOX_REPLICA=1 SANDBOX_SHARED_BUFFERS=256MB "$SANDBOX" start "$STATE_DIR" | sed 's/^sandbox: /==> /'
  load_state
  tokens
  load_state
  # Every run: new migrations (sql/migrate.sh, as the owner).
  (export PGHOST=127.0.0.1 PGPORT="$PRIMARY_PORT" PGDATABASE=exam_results PGUSER=exam_owner PGPASSWORD="$EXAM_OWNER_PASSWORD"
   "$ROOT/sql/migrate.sh" | grep -v 'already applied$' | sed 's/^migrate: /==> migrate: /' || true)
  # Server-side backstop behind the functions' own statement timeout.
  PGPASSWORD="$POSTGRES_PASSWORD" psql -X -q -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres \
    -c "ALTER ROLE exam_app SET statement_timeout = '5s'" -c "ALTER ROLE exam_reader SET statement_timeout = '5s'"
}

seed() {
  local count
  count="$(PGPASSWORD="$EXAM_OWNER_PASSWORD" psql -X -tA -h 127.0.0.1 -p "$PRIMARY_PORT" -U exam_owner -d exam_results -c 'SELECT count(*) FROM student_results')"
  if [ "$count" -gt 0 ]; then
    say "student_results already holds $count rows: not reseeding"
    return
  fi
  say "seeding $SEED_ROWS rows with psql (sql/seed.sql)"
  PGPASSWORD="$EXAM_OWNER_PASSWORD" psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PRIMARY_PORT" -U exam_owner -d exam_results \
    -v rows="$SEED_ROWS" -f "$ROOT/sql/seed.sql"
}

build_functions() {
  say "building the functions ($CARGO_PROFILE)"
  (cd "$ROOT" && GIT_REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" cargo build --profile "$CARGO_PROFILE" --workspace --bins -q)
}

# function_env NAME PORT: the environment of one function under make up.
function_env() {
  local name="$1" port="$2" access
  access="$(functions | awk -v n="$name" '$1 == n { print $2 }')"
  [ -n "$access" ] || die "unknown function $name (see $MANIFEST)"
  echo "PORT=$port"
  echo "METRICS_PORT=$((port + 1000))"
  echo "BIND_ADDRESS=127.0.0.1"
  echo "DATABASE_POOL_SIZE=${DATABASE_POOL_SIZE:-16}"
  if [ "$access" = read ]; then
    # Read-only credentials on the replica and on the primary fallback alike.
    echo "DATABASE_URL=postgres://exam_reader@127.0.0.1:$PGBOUNCER_PORT/exam_results_ro"
    echo "READ_FALLBACK_DATABASE_URL=postgres://exam_reader@127.0.0.1:$PGBOUNCER_PORT/exam_results"
    echo "DATABASE_PASSWORD=$EXAM_READER_PASSWORD"
    echo "MAX_REPLICA_LAG_SECONDS=${MAX_REPLICA_LAG_SECONDS:-30}"
    echo "READ_TOKENS=$READ_TOKEN"
  else
    echo "DATABASE_URL=postgres://exam_app@127.0.0.1:$PGBOUNCER_PORT/exam_results"
    echo "DATABASE_PASSWORD=$EXAM_APP_PASSWORD"
    echo "WRITE_TOKENS=$WRITE_TOKEN"
  fi
  echo "LOG_LEVEL=${LOG_LEVEL:-info}"
  # The public functions' per-client limit (docs/serving-limits.md); 0 turns it off, as
  # `make bench` needs: RATE_LIMIT_PER_SECOND=0 make up
  echo "RATE_LIMIT_PER_SECOND=${RATE_LIMIT_PER_SECOND:-20}"
  # Public functions (auth: public in the manifest) let the results page's
  # origin read their replies from its script; the page reads get-result.
  [ "$(manifest_field "$name" auth)" = public ] && echo "CORS_ALLOW_ORIGIN=$(page_url)"
  [ "$name" = results-page ] && echo "RESULTS_API_URL=http://127.0.0.1:$(port_of get-result)"
  return 0
}

start_functions() {
  local target_dir
  target_dir="$ROOT/target/$([ "$CARGO_PROFILE" = dev ] && echo debug || echo "$CARGO_PROFILE")"
  local name access method route port
  while read -r name access method route port; do
    local pidfile="$STATE_DIR/run/$name.pid"
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
  done < <(functions)
  while read -r name access method route port; do
    local ok=""
    for _ in $(seq 1 100); do
      if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.1
    done
    [ -n "$ok" ] || die "$name did not become ready on port $port; see $STATE_DIR/logs/$name.log"
  done < <(functions)
}

start_prometheus() {
  if [ -x "$ROOT/grafana/local/start-prometheus.sh" ]; then
    # Credentials from the sandbox's files, never on a command line.
    PROMETHEUS_PORT="$PROMETHEUS_PORT" PGBOUNCER_PORT="$PGBOUNCER_PORT" \
    POSTGRES_PRIMARY_PORT="$PRIMARY_PORT" POSTGRES_REPLICA_PORT="$REPLICA_PORT" \
    SANDBOX_DIR="$STATE_DIR" \
      "$ROOT/grafana/local/start-prometheus.sh" "$STATE_DIR" || say "Prometheus did not start (see $STATE_DIR/observability); the functions are up"
  fi
}

# example_path ROUTE ACCESS: a URL path with sample values (a seeded, published
# row for reads; a roll number outside the seed for writes).
example_path() {
  local route="$1" access="$2" year=2025 roll=999000001
  [ "$access" = read ] && { year=2024; roll=100000001; }
  route="${route//\{exam_year\}/$year}"; route="${route//\{roll_number\}/$roll}"
  case "$route" in
    /results) [ "$access" = read ] && route="$route?exam_year=$year&limit=3" ;;
    /results/batches) route="$route?exam_year=$year" ;;
  esac
  echo "$route"
}

print_endpoints() {
  local name access method route port
  printf '\nexam-results is up (state in %s; logs in %s/logs)\n\n' "$STATE_DIR" "$STATE_DIR"
  while read -r name access method route port; do
    printf '  %-14s %-6s http://127.0.0.1:%s%-36s (%s, metrics :%s/metrics)\n' "$name" "$method" "$port" "$route" "$access" "$((port + 1000))"
  done < <(functions)
  cat <<TXT
  PgBouncer      127.0.0.1:$PGBOUNCER_PORT  (exam_results -> primary :$PRIMARY_PORT, exam_results_ro -> replica :$REPLICA_PORT)
  Prometheus     http://127.0.0.1:$PROMETHEUS_PORT

Results page:  $(page_url)/  (open it in a browser; try exam year 2024, roll number 100000001)

Writes need:   Authorization: Bearer $WRITE_TOKEN
Listings need: Authorization: Bearer $READ_TOKEN
Database roles: exam_owner (migrations), exam_app (writes), exam_reader (reads); passwords in $STATE_DIR/secrets.env

TXT
  while read -r name access method route port; do
    local url auth
    [ "$route" = / ] && continue   # the results page, above
    url="http://127.0.0.1:$port$(example_path "$route" "$access")"
    auth="$(manifest_field "$name" auth)"
    case "$method $route" in
      "GET "*) if [ "$auth" = public ]; then echo "  curl -s $url"; else echo "  curl -s '$url' -H 'Authorization: Bearer $READ_TOKEN'"; fi ;;
      "POST /results/batches") printf '%s\n' "  printf 'roll_number,marks\\n999000002,75\\n999000003,64\\n' | curl -s -X POST '$url' -H 'Authorization: Bearer $WRITE_TOKEN' -H 'Content-Type: text/csv' --data-binary @-" ;;
      "POST "*) echo "  curl -s -X POST $url -H 'Authorization: Bearer $WRITE_TOKEN' -H 'Content-Type: application/json' -d '{\"roll_number\": 999000001, \"exam_year\": 2025, \"marks\": 88}'" ;;
      "PUT /publications/"*) echo "  curl -s -X PUT $url -H 'Authorization: Bearer $WRITE_TOKEN' -H 'Content-Type: application/json' -d '{\"publish_at\": \"$(date -u -d '+1 hour' +%Y-%m-%dT%H:00:00Z)\"}'" ;;
      "PUT "*) echo "  curl -s -X PUT $url -H 'Authorization: Bearer $WRITE_TOKEN' -H 'Content-Type: application/json' -d '{\"marks\": 91}'" ;;
      "DELETE "*) printf '%s\n' "  curl -s -X DELETE -o /dev/null -w '%{http_code}\\n' $url -H 'Authorization: Bearer $WRITE_TOKEN'" ;;
    esac
  done < <(functions)
  printf "\nStop with 'make down' (keeps data); remove everything with 'make clean'.\n"
}

up() {
  ensure_tools
  start_database
  seed
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
  say "stopping the functions"
  local name rest
  while read -r name rest; do stop_pidfile "$STATE_DIR/run/$name.pid"; done < <(functions)
  [ -x "$ROOT/grafana/local/stop-prometheus.sh" ] && "$ROOT/grafana/local/stop-prometheus.sh" "$STATE_DIR" >/dev/null 2>&1 || true
  say "stopping PgBouncer and PostgreSQL (data kept)"
  "$SANDBOX" stop "$STATE_DIR"
}

status() {
  local name access method route port
  while read -r name access method route port; do
    printf '%-14s %-4s http://127.0.0.1:%-5s %s\n' "$name" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)" "$port" "/readyz"
  done < <(functions)
  if [ -f "$STATE_DIR/sandbox.env" ]; then
    load_state
    local node p
    for node in primary:$PRIMARY_PORT replica:$REPLICA_PORT pgbouncer:$PGBOUNCER_PORT; do
      p="${node#*:}"
      if (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; then printf '%-14s up   127.0.0.1:%s\n' "${node%%:*}" "$p"
      else printf '%-14s down 127.0.0.1:%s\n' "${node%%:*}" "$p"; fi
    done
  else
    echo "database       not initialised (make up)"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  clean) down; "$SANDBOX" destroy "$STATE_DIR"; rm -rf "$STATE_DIR"; echo "removed $STATE_DIR" ;;
  status) status ;;
  functions) functions ;;
  env) load_state; function_env "${2:?function name}" "${3:-8080}" ;;
  *) echo "usage: $0 up|down|clean|status|functions|env NAME [PORT]" >&2; exit 2 ;;
esac
