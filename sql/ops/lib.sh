# Shared by the sql/ops scripts: connection settings and small helpers.
#
# Connection settings come from the standard libpq variables, so the scripts
# work against any PostgreSQL:
#
#   PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE   the primary (default: the local
#                                               stack, 127.0.0.1:55432 exam_results)
#   REPLICA_PGHOST REPLICA_PGPORT                the streaming replica (replica-lag.sh;
#                                               default 127.0.0.1:55433)
#   ADMIN_PGUSER ADMIN_PGPASSWORD                a role that may CREATE DATABASE and read
#                                               pg_stat_replication (restore.sh, replica-lag.sh)
#
# When PGUSER is not set the scripts use the local stack's roles and read
# their passwords from .local/secrets.env (written by `make up`): the table
# owner `exam_owner` for table work, the superuser `postgres` for admin work.
# shellcheck shell=bash

OPS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${STATE_DIR:-$OPS_ROOT/.local}"

die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 2; }
say() { printf '%s\n' "$*"; }

# Reads POSTGRES_PASSWORD / EXAM_OWNER_PASSWORD from the local stack, if present.
_ops_local_secrets() {
  if [ -r "$STATE_DIR/secrets.env" ]; then
    # shellcheck disable=SC1091
    . "$STATE_DIR/secrets.env"
  fi
}

# ops_env: fills in the connection defaults (call once, before any psql).
ops_env() {
  export PGHOST="${PGHOST:-127.0.0.1}"
  export PGPORT="${PGPORT:-55432}"
  export PGDATABASE="${PGDATABASE:-exam_results}"
  export REPLICA_PGHOST="${REPLICA_PGHOST:-$PGHOST}"
  export REPLICA_PGPORT="${REPLICA_PGPORT:-55433}"
  if [ -z "${PGUSER:-}" ]; then
    _ops_local_secrets
    export PGUSER=exam_owner
    export PGPASSWORD="${PGPASSWORD:-${EXAM_OWNER_PASSWORD:-}}"
    export ADMIN_PGUSER="${ADMIN_PGUSER:-postgres}"
    export ADMIN_PGPASSWORD="${ADMIN_PGPASSWORD:-${POSTGRES_PASSWORD:-}}"
  else
    export ADMIN_PGUSER="${ADMIN_PGUSER:-$PGUSER}"
    export ADMIN_PGPASSWORD="${ADMIN_PGPASSWORD:-${PGPASSWORD:-}}"
  fi
  # Operations are not requests: lift any statement timeout, keep quiet
  # about NOTICEs.
  export PGOPTIONS="${PGOPTIONS:--c statement_timeout=0 -c client_min_messages=warning}"
  export PGAPPNAME="${PGAPPNAME:-exam-results-ops}"
  command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"
}

# q SQL...: runs SQL as the table owner, unaligned, tuples only.
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# admin_psql ARGS...: psql as the admin role (same host/port).
admin_psql() { PGUSER="$ADMIN_PGUSER" PGPASSWORD="$ADMIN_PGPASSWORD" psql -X -q -v ON_ERROR_STOP=1 "$@"; }

utc_stamp() { date -u +%Y%m%dT%H%M%SZ; }

check_year() {
  [[ "${1:-}" =~ ^[0-9]{4}$ ]] || die "YEAR must be a four-digit exam year, got '${1:-}'"
  [ "$1" -ge 2000 ] && [ "$1" -le 2100 ] || die "exam year $1 is outside 2000..2100"
}

# The per-partition census used by backup, restore and the tests: row count
# and an md5 over every row in key order, for each partition of
# student_results (empty partitions included), then a total line.
# shellcheck disable=SC2034  # used by the scripts that source this file
CENSUS_SQL="
WITH parts AS (
    SELECT c.oid, c.relname
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'student_results'::regclass
), sums AS (
    SELECT tableoid, count(*) AS n,
           md5(string_agg(exam_year || ',' || roll_number || ',' || marks, E'\n' ORDER BY roll_number)) AS md5
    FROM student_results GROUP BY tableoid
)
SELECT partition, rows, checksum FROM (
    SELECT p.relname::text AS partition, coalesce(s.n, 0) AS rows, coalesce(s.md5, md5('')) AS checksum, 0 AS last
    FROM parts p LEFT JOIN sums s ON s.tableoid = p.oid
    UNION ALL
    SELECT 'TOTAL', (SELECT count(*) FROM student_results),
           md5(coalesce((SELECT string_agg(s.md5, '' ORDER BY p.relname) FROM parts p JOIN sums s ON s.tableoid = p.oid), '')), 1
) census ORDER BY last, partition"
