#!/usr/bin/env bash
# The one throwaway database sandbox: a PostgreSQL primary (+ optional
# streaming replica) and PgBouncer in transaction pooling mode, on 127.0.0.1,
# with the production roles. `make up` (.ci/stack.sh), the Rust integration
# tests, sql/tests, and the knative and grafana live tests all start it here.
#
#   .ci/sandbox.sh start DIR       initialise on first use, then start whatever is down
#   .ci/sandbox.sh stop DIR        stop PgBouncer, the replica and the primary (data kept)
#   .ci/sandbox.sh kill DIR NODE   stop one of primary|replica|pgbouncer at once (a crash)
#   .ci/sandbox.sh createdb DIR NAME   a database owned by exam_owner, migrated (sql/migrate.sh)
#   .ci/sandbox.sh destroy DIR     stop everything and remove DIR
#   .ci/sandbox.sh watch DIR PID   in the background: destroy DIR once process PID has exited
#
# Settings (environment, read on the first start and kept in DIR/sandbox.env):
#   PRIMARY_PORT REPLICA_PORT PGBOUNCER_PORT   default: free ports
#   SANDBOX_REPLICA=1        also run a streaming replica (pg_basebackup)
#   SANDBOX_FAST=1           fsync off: for tests, never for data you keep
#   SANDBOX_SHARED_BUFFERS   default 128MB
#   SANDBOX_DATABASE         the database created and migrated at initialisation
#                            (default exam_results)
#   DIR/<node>/local.conf    extra postgresql.conf settings of that node (e.g. TLS), kept
#                            across starts: write it, then stop and start
#   PG_BIN                   PostgreSQL's server binaries (default: newest in /usr/lib/postgresql)
#
# What it writes (the connection facts):
#   DIR/sandbox.env  ports, directories and role names; no secrets, safe to print.
#   DIR/secrets.env  (mode 600) the generated passwords, one VAR=value a line.
#
# Roles (docs/database.md, "Roles"):
#   postgres             superuser; only for setup, tests' direct checks and admin ops.
#   exam_owner           owns the databases and tables; runs sql/migrate.sh.
#   exam_app             write functions (member of exam_results_writer).
#   exam_reader          read functions (member of exam_results_reader).
#   exam_monitor         the PostgreSQL exporters (pg_monitor, not a superuser).
#   replicator           streaming replication only.
#   pgbouncer_admin      PgBouncer's admin console (admin_users); exists only in PgBouncer.
#   pgbouncer_stats      PgBouncer's SHOW commands (stats_users); exists only in PgBouncer.
# PgBouncer knows only exam_app, exam_reader and its own two users; those two
# roles can log in only through PgBouncer (pg_hba.conf refuses them over TCP). Its
# databases: exam_results -> primary, exam_results_ro -> replica (the primary
# when there is no replica), and any other name -> that database on the primary.
#
# Passwords go to servers through files and the environment only (initdb
# --pwfile, PGPASSFILE, psql's \getenv): never on a command line, never in a log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() { printf 'sandbox: %s\n' "$*" >&2; exit 1; }
say() { [ -n "${SANDBOX_QUIET:-}" ] || printf 'sandbox: %s\n' "$*"; }

pg_bindir() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  if [ -n "$dir" ]; then echo "$dir"; return; fi
  dir="$(command -v initdb 2>/dev/null)" || die "PostgreSQL server binaries not found: apt-get install postgresql (or set PG_BIN)"
  dirname "$dir"
}

pgbouncer_bin() {
  command -v pgbouncer 2>/dev/null && return
  [ -x /usr/sbin/pgbouncer ] && { echo /usr/sbin/pgbouncer; return; }
  die "pgbouncer not found: apt-get install pgbouncer"
}

# as_pg CMD...: the servers refuse to run as root; run them as the postgres user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
own() { if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$@"; fi; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

new_password() { head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 28; }

# scram PASSWORD-VAR: a SCRAM-SHA-256 verifier of the password in that
# variable, so the plaintext never reaches the server (nor its log). PgBouncer
# gets the same verifiers, so it checks clients and logs in to PostgreSQL
# without ever holding a plaintext password. A fast (test) sandbox uses 16
# iterations instead of 4096: logins through it cost next to no CPU.
scram() {
  local iterations=4096
  # The exporter's driver (lib/pq) refuses fewer than 4096 iterations.
  [ "$SANDBOX_FAST" = 1 ] && [ "$1" != EXAM_MONITOR_PASSWORD ] && iterations=16
  SCRAM_INPUT="${!1}" SCRAM_ITERATIONS="$iterations" python3 - <<'PY'
import base64, hashlib, hmac, os
password = os.environ["SCRAM_INPUT"].encode()
salt, iterations = os.urandom(16), int(os.environ["SCRAM_ITERATIONS"])
salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
client = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
stored = hashlib.sha256(client).digest()
server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
b64 = lambda b: base64.b64encode(b).decode()
print(f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}")
PY
}

load() {
  DIR="$(cd "$1" 2>/dev/null && pwd)" || die "no sandbox in $1"
  [ -f "$DIR/sandbox.env" ] || die "no sandbox in $DIR (run: $0 start $DIR)"
  # shellcheck disable=SC1091
  . "$DIR/sandbox.env"
  # shellcheck disable=SC1091
  . "$DIR/secrets.env"
  PATH="$PG_BIN:$PATH"
}

# psql_as ROLE DATABASE ARGS...: psql over TCP to the primary, password from the environment.
psql_as() {
  local role="$1" database="$2" var; shift 2
  case "$role" in
    postgres) var=POSTGRES_PASSWORD ;;
    exam_owner) var=EXAM_OWNER_PASSWORD ;;
    *) die "psql_as: unknown role $role" ;;
  esac
  PGPASSWORD="${!var}" PGOPTIONS="-c client_min_messages=warning" \
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PRIMARY_PORT" -U "$role" -d "$database" "$@"
}

is_up() { pg_isready -q -h 127.0.0.1 -p "$1" 2>/dev/null; }

init() {
  local dir="$1"
  mkdir -p "$dir"
  DIR="$(cd "$dir" && pwd)"
  [ ${#DIR} -lt 80 ] || die "$DIR is too long for PostgreSQL's socket path; use a shorter directory"
  PG_BIN="$(pg_bindir)"
  PATH="$PG_BIN:$PATH"
  umask 077
  if [ ! -f "$DIR/secrets.env" ]; then
    local var
    for var in POSTGRES_PASSWORD EXAM_OWNER_PASSWORD EXAM_APP_PASSWORD EXAM_READER_PASSWORD \
               EXAM_MONITOR_PASSWORD REPLICATOR_PASSWORD PGBOUNCER_ADMIN_PASSWORD PGBOUNCER_STATS_PASSWORD; do
      echo "$var=$(new_password)"
    done > "$DIR/secrets.env.partial"
    mv "$DIR/secrets.env.partial" "$DIR/secrets.env"
  fi
  umask 022
  local replica=""
  [ "${SANDBOX_REPLICA:-0}" = 1 ] && replica="${REPLICA_PORT:-$(free_port)}"
  cat > "$DIR/sandbox.env" <<ENV
# Written by .ci/sandbox.sh: the sandbox's connection facts (passwords are in secrets.env).
SANDBOX_DIR=$DIR
PG_BIN=$PG_BIN
PGHOST=127.0.0.1
PRIMARY_PORT=${PRIMARY_PORT:-$(free_port)}
REPLICA_PORT=$replica
PGBOUNCER_PORT=${PGBOUNCER_PORT:-$(free_port)}
DATABASE=${SANDBOX_DATABASE:-exam_results}
SANDBOX_FAST=${SANDBOX_FAST:-0}
SANDBOX_SHARED_BUFFERS=${SANDBOX_SHARED_BUFFERS:-128MB}
LOG_DIR=$DIR/logs
PGBOUNCER_LOG=$DIR/pgbouncer/pgbouncer.log
PGBOUNCER_PIDFILE=$DIR/pgbouncer/pgbouncer.pid
OWNER_USER=exam_owner
APP_USER=exam_app
READER_USER=exam_reader
MONITOR_USER=exam_monitor
PGBOUNCER_ADMIN_USER=pgbouncer_admin
PGBOUNCER_STATS_USER=pgbouncer_stats
ENV
  mkdir -p "$DIR/logs" "$DIR/run" "$DIR/pgbouncer"
  chmod 755 "$DIR"
  chmod 700 "$DIR/run"
  own "$DIR/logs" "$DIR/run" "$DIR/pgbouncer"
  load "$DIR"
}

# The node's settings, rewritten on every start (ports may be overridden again).
node_conf() {
  local data="$1" port="$2"
  {
    echo "# Written by .ci/sandbox.sh on every start."
    echo "port = $port"
    if [ "$SANDBOX_FAST" = 1 ]; then
      echo "fsync = off"; echo "full_page_writes = off"   # commits still reach the OS: a killed server loses nothing
    fi
    if [ "$data" = "$DIR/replica" ]; then
      echo "primary_conninfo = 'host=127.0.0.1 port=$PRIMARY_PORT user=replicator passfile=$DIR/run/replication.pgpass application_name=replica1'"
      echo "primary_slot_name = 'replica1'"
      echo "hot_standby = on"
      echo "hot_standby_feedback = on"
    fi
    # Extra settings a caller keeps in DIR/<node>/local.conf (e.g. TLS for a test); read on each start.
    echo "include_if_exists = 'local.conf'"
  } > "$data/sandbox.conf"
  own "$data/sandbox.conf"
}

start_node() {
  local node="$1" port="$2" data="$DIR/$1"
  node_conf "$data" "$port"
  if ! is_up "$port"; then
    say "starting the $node on 127.0.0.1:$port"
    rm -f "$data/postmaster.pid.stale"
    as_pg pg_ctl -D "$data" -l "$DIR/logs/$node.log" -w -t 60 start >/dev/null \
      || { tail -n 20 "$DIR/logs/$node.log" >&2; die "the $node did not start; see $DIR/logs/$node.log"; }
  fi
}

init_primary() {
  local data="$DIR/primary"
  [ -f "$data/PG_VERSION" ] && return
  say "initialising the primary in $data"
  rm -rf "$data"
  mkdir -m 700 "$data"
  own "$data"
  local pwfile="$DIR/run/pwfile"
  (umask 077; printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile")
  own "$pwfile"
  as_pg initdb -D "$data" -U postgres --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=scram-sha-256 \
    -E UTF8 --no-sync >/dev/null
  rm -f "$pwfile"
  cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/run'
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
max_connections = 200
shared_buffers = $SANDBOX_SHARED_BUFFERS
log_min_duration_statement = 250
include_if_exists = 'sandbox.conf'
CONF
  # The functions' roles log in only through PgBouncer, which reaches the
  # servers over the Unix socket in DIR/run (mode 700, the server's user):
  # over TCP they are refused, as the cluster's NetworkPolicies refuse them.
  cat > "$data/pg_hba.conf" <<HBA
# Written by .ci/sandbox.sh.
# TYPE  DATABASE     USER                  ADDRESS        METHOD
local   all          all                                  scram-sha-256
host    all          exam_app,exam_reader  all            reject
host    all          all                   127.0.0.1/32   scram-sha-256
host    replication  replicator            127.0.0.1/32   scram-sha-256
HBA
  own "$data/pg_hba.conf"
}

# Roles and the first database, on a fresh primary. The login roles of the
# functions are created by the migration runner, as on RDS.
init_roles() {
  [ -f "$DIR/run/roles.done" ] && return
  say "creating roles and database $DATABASE"
  local var
  for var in EXAM_OWNER_PASSWORD EXAM_MONITOR_PASSWORD REPLICATOR_PASSWORD EXAM_APP_PASSWORD EXAM_READER_PASSWORD; do
    export "${var}_VERIFIER=$(scram "$var")"
  done
  psql_as postgres postgres <<'SQL'
\getenv owner_password EXAM_OWNER_PASSWORD_VERIFIER
\getenv monitor_password EXAM_MONITOR_PASSWORD_VERIFIER
\getenv replicator_password REPLICATOR_PASSWORD_VERIFIER
CREATE ROLE exam_owner LOGIN CREATEDB CREATEROLE PASSWORD :'owner_password';
CREATE ROLE exam_monitor LOGIN PASSWORD :'monitor_password' IN ROLE pg_monitor;
CREATE ROLE replicator LOGIN REPLICATION PASSWORD :'replicator_password';
SQL
  psql_as postgres postgres -c "CREATE DATABASE $DATABASE OWNER exam_owner"
  migrate "$DATABASE" with-login-roles
  touch "$DIR/run/roles.done"
}

# migrate DATABASE [with-login-roles]: sql/migrate.sh as the owner.
migrate() {
  local database="$1" roles="${2:-}"
  (
    unset PGPASSFILE PGSERVICE EXAM_APP_PASSWORD_FILE EXAM_READER_PASSWORD_FILE
    export PGHOST=127.0.0.1 PGPORT="$PRIMARY_PORT" PGDATABASE="$database" PGUSER=exam_owner
    export PGPASSWORD="$EXAM_OWNER_PASSWORD"
    if [ -n "$roles" ]; then
      export EXAM_APP_PASSWORD="$EXAM_APP_PASSWORD_VERIFIER" EXAM_READER_PASSWORD="$EXAM_READER_PASSWORD_VERIFIER"
    else
      unset EXAM_APP_PASSWORD EXAM_READER_PASSWORD
    fi
    "$ROOT/sql/migrate.sh" >/dev/null
  )
}

init_replica() {
  local data="$DIR/replica"
  [ -f "$data/PG_VERSION" ] && return
  say "cloning the replica with pg_basebackup"
  rm -rf "$data" "$data.partial"
  mkdir -m 700 "$data.partial"
  own "$data.partial"
  psql_as postgres postgres -Atc \
    "SELECT pg_drop_replication_slot('replica1') FROM pg_replication_slots WHERE slot_name = 'replica1'" >/dev/null
  (umask 077; printf '127.0.0.1:%s:*:replicator:%s\n' "$PRIMARY_PORT" "$REPLICATOR_PASSWORD" > "$DIR/run/replication.pgpass")
  own "$DIR/run/replication.pgpass"
  as_pg env PGPASSFILE="$DIR/run/replication.pgpass" pg_basebackup -h 127.0.0.1 -p "$PRIMARY_PORT" -U replicator \
    -D "$data.partial" -X stream -c fast -C -S replica1 --no-sync >/dev/null
  as_pg touch "$data.partial/standby.signal"
  mv "$data.partial" "$data"
}

write_pgbouncer() {
  local dir="$DIR/pgbouncer" ro_port="${REPLICA_PORT:-$PRIMARY_PORT}"
  if [ ! -s "$dir/own-users.txt" ]; then
    # PgBouncer's own two users exist only in its auth file.
    (umask 077
     printf '"%s" "%s"\n' pgbouncer_admin "$(scram PGBOUNCER_ADMIN_PASSWORD)" \
       pgbouncer_stats "$(scram PGBOUNCER_STATS_PASSWORD)" > "$dir/own-users.txt")
  fi
  # The auth file (mode 600): the SCRAM verifiers PostgreSQL holds for the
  # functions' roles, read afresh on every start (so a password changed by
  # sql/migrate.sh is picked up), and PgBouncer's own two users. PgBouncer
  # checks clients against them and logs in to PostgreSQL with the client's
  # proof, never holding a plaintext password.
  (umask 077
   psql_as postgres postgres -At -c "SELECT '\"' || rolname || '\" \"' || rolpassword || '\"' FROM pg_authid
       WHERE rolname IN ('exam_app', 'exam_reader') AND rolpassword IS NOT NULL ORDER BY rolname" > "$dir/userlist.txt.new"
   cat "$dir/own-users.txt" >> "$dir/userlist.txt.new"
   mv "$dir/userlist.txt.new" "$dir/userlist.txt")
  cat > "$dir/pgbouncer.ini" <<INI
;; Written by .ci/sandbox.sh: transaction pooling, read-write and read-only databases.
[databases]
exam_results = host=$DIR/run port=$PRIMARY_PORT dbname=exam_results
exam_results_ro = host=$DIR/run port=$ro_port dbname=exam_results
* = host=$DIR/run port=$PRIMARY_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
; each function of functions.yaml x DATABASE_POOL_SIZE (16 under make up) client connections, plus benchmarks.
max_client_conn = 1000
default_pool_size = 40
reserve_pool_size = 5
server_login_retry = 1
query_wait_timeout = 10
ignore_startup_parameters = extra_float_digits,options
admin_users = pgbouncer_admin
stats_users = pgbouncer_stats
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  own "$dir"
}

pgbouncer_running() { [ -f "$PGBOUNCER_PIDFILE" ] && kill -0 "$(cat "$PGBOUNCER_PIDFILE")" 2>/dev/null; }

start_pgbouncer() {
  write_pgbouncer
  if pgbouncer_running; then
    kill -HUP "$(cat "$PGBOUNCER_PIDFILE")"   # reload the configuration
    return
  fi
  say "starting PgBouncer on 127.0.0.1:$PGBOUNCER_PORT"
  as_pg "$(pgbouncer_bin)" -d -q "$DIR/pgbouncer/pgbouncer.ini" \
    || die "PgBouncer did not start; see $PGBOUNCER_LOG"
  for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$PGBOUNCER_PORT") 2>/dev/null && return 0; sleep 0.05; done
  die "PgBouncer did not listen on $PGBOUNCER_PORT; see $PGBOUNCER_LOG"
}

cmd_start() {
  local dir="$1"
  if [ -f "$dir/sandbox.env" ]; then
    load "$dir"
    # Ports given again override the recorded ones (make up with new ports):
    # stop what runs on the old ones first.
    local var changed=()
    for var in PRIMARY_PORT PGBOUNCER_PORT REPLICA_PORT; do
      local given="${SANDBOX_OVERRIDE[$var]:-}"
      if [ -n "$given" ] && [ -n "${!var}" ] && [ "$given" != "${!var}" ]; then changed+=("$var=$given"); fi
    done
    if [ ${#changed[@]} -gt 0 ]; then
      say "moving to ${changed[*]}"
      cmd_stop "$dir"
      for var in "${changed[@]}"; do sed -i "s/^${var%%=*}=.*/$var/" "$DIR/sandbox.env"; done
    fi
    load "$dir"
  else
    init "$dir"
  fi
  init_primary
  start_node primary "$PRIMARY_PORT"
  init_roles
  if [ -n "$REPLICA_PORT" ]; then
    init_replica
    start_node replica "$REPLICA_PORT"
  fi
  start_pgbouncer
  say "up: primary 127.0.0.1:$PRIMARY_PORT${REPLICA_PORT:+, replica 127.0.0.1:$REPLICA_PORT}, PgBouncer 127.0.0.1:$PGBOUNCER_PORT (facts in $DIR/sandbox.env)"
}

stop_node() {
  local node="$1" mode="$2"
  [ -f "$DIR/$node/postmaster.pid" ] || return 0
  as_pg pg_ctl -D "$DIR/$node" -m "$mode" -w -t 60 stop >/dev/null 2>&1 || true
}

stop_pgbouncer() {
  pgbouncer_running || return 0
  local pid; pid="$(cat "$PGBOUNCER_PIDFILE")"
  kill -"${1:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
}

cmd_stop() {
  load "$1"
  stop_pgbouncer
  stop_node replica fast
  stop_node primary fast
}

cmd_kill() {
  load "$1"
  case "$2" in
    primary|replica) stop_node "$2" immediate ;;
    pgbouncer) stop_pgbouncer KILL ;;
    *) die "kill: NODE is primary, replica or pgbouncer" ;;
  esac
}

cmd_createdb() {
  load "$1"
  local name="$2"
  [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || die "createdb: '$name' is not a plain database name"
  psql_as postgres postgres -c "CREATE DATABASE $name OWNER exam_owner"
  migrate "$name"
}

cmd_destroy() {
  local dir="$1"
  [ -d "$dir" ] || return 0
  if [ -f "$dir/sandbox.env" ]; then
    (cmd_stop "$dir") || true
  fi
  rm -rf "$dir"
}

cmd_watch() {
  local dir="$1" pid="$2"
  [ -d "$dir" ] || die "watch: no directory $dir"
  dir="$(cd "$dir" && pwd)"
  # Detached: it outlives the caller by design.
  setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; exec "$2" destroy "$3"' \
    sandbox-watch "$pid" "$ROOT/.ci/sandbox.sh" "$dir" >/dev/null 2>&1 < /dev/null &
}

declare -A SANDBOX_OVERRIDE=(
  [PRIMARY_PORT]="${PRIMARY_PORT:-}" [REPLICA_PORT]="${REPLICA_PORT:-}" [PGBOUNCER_PORT]="${PGBOUNCER_PORT:-}"
)

usage() { sed -n '7,12p' "${BASH_SOURCE[0]}" | sed 's/^#//' >&2; exit 2; }
case "${1:-}" in
  start) [ $# -eq 2 ] || usage; cmd_start "$2" ;;
  stop) [ $# -eq 2 ] || usage; [ -f "$2/sandbox.env" ] || exit 0; cmd_stop "$2" ;;
  kill) [ $# -eq 3 ] || usage; cmd_kill "$2" "$3" ;;
  createdb) [ $# -eq 3 ] || usage; cmd_createdb "$2" "$3" ;;
  destroy) [ $# -eq 2 ] || usage; cmd_destroy "$2" ;;
  watch) [ $# -eq 3 ] || usage; cmd_watch "$2" "$3" ;;
  *) usage ;;
esac
