#!/bin/sh
# The one migration runner: `make up`, every test suite and the chart's
# migration Job (templates/migrations-job.yaml embeds this file) run it.
#
#   sql/migrate.sh                      # connection from the libpq variables
#
# Applies $MIGRATIONS_DIR/NNNN_name.sql (default: the migrations/ directory
# beside this script) in file-name order, in one session that holds a session
# advisory lock, so concurrent runs wait for each other. Each applied file is
# recorded with its sha256 in public.exam_results_schema_migrations and is not
# run again; a recorded file whose content has changed stops the run before
# anything is applied, with an error naming the file. Re-running changes
# nothing. The files manage their own transaction (BEGIN ... COMMIT) and are
# idempotent themselves, so a database migrated before the ledger existed is
# simply recorded on the first run.
#
# Run it as the database owner (exam_owner): it owns what the files create.
#
# Environment:
#   PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD (or PGPASSFILE)  the primary.
#   DATABASE_SECRET_DIR   read each unset PG* variable from the connection
#                         Secret's keys mounted as files (rw-host, port, dbname,
#                         username, password); DATABASE_SECRET_NAME names the
#                         Secret in errors.
#   MIGRATIONS_WAIT_SECONDS  how long to wait for the database to accept
#                         connections (default 0: try once).
#   EXAM_APP_PASSWORD, EXAM_READER_PASSWORD  when set (or *_FILE naming a file
#                         holding it), create or update the login roles
#                         exam_app (member of exam_results_writer) and
#                         exam_reader (member of exam_results_reader) with that
#                         password; needs CREATEROLE. A value that is already a
#                         SCRAM-SHA-256 verifier is stored as is, so the
#                         plaintext never reaches the server. Passwords travel
#                         only through the environment (psql's \getenv), never
#                         on a command line or in a file this script writes.
set -eu

say() { printf 'migrate: %s\n' "$*"; }
die() { printf 'migrate: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
dir=${MIGRATIONS_DIR:-$here/migrations}

if [ -n "${DATABASE_SECRET_DIR:-}" ]; then
  for pair in PGHOST:rw-host PGPORT:port PGDATABASE:dbname PGUSER:username PGPASSWORD:password; do
    var=${pair%%:*}
    file=$DATABASE_SECRET_DIR/${pair#*:}
    eval "current=\${$var:-}"
    if [ -z "$current" ]; then
      [ -s "$file" ] || die "$var is not set and $file is missing or empty (Secret ${DATABASE_SECRET_NAME:-of the database connection})"
      eval "$var=\$(cat \"\$file\"); export $var"
    fi
  done
fi
for role in APP READER; do
  eval "file=\${EXAM_${role}_PASSWORD_FILE:-}"
  if [ -n "$file" ]; then
    [ -s "$file" ] || die "EXAM_${role}_PASSWORD_FILE names $file, which is missing or empty"
    eval "EXAM_${role}_PASSWORD=\$(cat \"\$file\"); export EXAM_${role}_PASSWORD"
  fi
done
[ -d "$dir" ] || die "migrations directory $dir does not exist"
export PGAPPNAME="${PGAPPNAME:-exam-results-migrations}" PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"
# Migrations are not requests: no statement timeout, no NOTICE chatter.
export PGOPTIONS="${PGOPTIONS:--c statement_timeout=0 -c client_min_messages=warning}"
where="${PGHOST:-local socket}:${PGPORT:-5432}/${PGDATABASE:-${PGUSER:-}}"

deadline=$(( $(date +%s) + ${MIGRATIONS_WAIT_SECONDS:-0} ))
until psql -X -Atqc 'SELECT 1' >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "migrate: database $where not reachable after ${MIGRATIONS_WAIT_SECONDS:-0}s:" >&2
    psql -X -Atqc 'SELECT 1' >/dev/null || true
    exit 1
  fi
  sleep 2
done

# The files, checked before anything runs: only NNNN_name.sql, so every
# name is safe to quote in SQL.
files=$(cd "$dir" && ls -- *.sql 2>/dev/null | LC_ALL=C sort) || true
[ -n "$files" ] || die "no .sql files in $dir"
values=""
for name in $files; do
  case "$name" in
    [0-9][0-9][0-9][0-9]_*.sql) ;;
    *) die "$dir/$name: migration files are named NNNN_name.sql" ;;
  esac
  case "${name#????_}" in *[!a-z0-9_.]*) die "$dir/$name: use only a-z, 0-9 and _ in the name" ;; esac
  sum=$(sha256sum "$dir/$name" | cut -d' ' -f1)
  values="$values${values:+, }('$name', '$sum')"
done

driver=$(mktemp "${TMPDIR:-/tmp}/migrate.XXXXXX")
trap 'rm -f "$driver"' EXIT
{
  cat <<'SQL'
\set ON_ERROR_STOP on
\set QUIET on
SELECT pg_try_advisory_lock(hashtext('exam-results-migrations')) AS locked \gset
\if :locked
\else
\echo migrate: another run holds the migration lock; waiting for it
SELECT pg_advisory_lock(hashtext('exam-results-migrations')) \gset
\endif
CREATE TABLE IF NOT EXISTS public.exam_results_schema_migrations (
    filename   text        PRIMARY KEY,
    sha256     text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text        NOT NULL DEFAULT current_user
);
SQL
  cat <<SQL
DO \$\$
DECLARE r record;
BEGIN
    FOR r IN SELECT l.filename, l.sha256 AS recorded, f.sha256 AS now
             FROM public.exam_results_schema_migrations l
             JOIN (VALUES $values) AS f(filename, sha256) USING (filename)
             WHERE l.sha256 <> f.sha256 ORDER BY l.filename LOOP
        RAISE EXCEPTION 'migrate: % was applied with sha256 % and has been edited since (sha256 now %); nothing was applied', r.filename, r.recorded, r.now
            USING HINT = 'An applied migration is never changed: restore the file and put the change in a new NNNN_name.sql.';
    END LOOP;
END
\$\$;
\set applied 0
\set skipped 0
SQL
  for name in $files; do
    sum=$(sha256sum "$dir/$name" | cut -d' ' -f1)
    cat <<SQL
SELECT NOT EXISTS (SELECT 1 FROM public.exam_results_schema_migrations WHERE filename = '$name') AS pending \gset
\if :pending
\echo migrate: applying $name
\i $dir/$name
INSERT INTO public.exam_results_schema_migrations (filename, sha256) VALUES ('$name', '$sum');
SELECT :applied + 1 AS applied \gset
\else
SELECT :skipped + 1 AS skipped \gset
\endif
SQL
  done
  # Login roles, when their passwords are given (RDS and local; CloudNativePG
  # creates them itself as managed roles).
  for pair in exam_app:APP:exam_results_writer exam_reader:READER:exam_results_reader; do
    role=${pair%%:*}; rest=${pair#*:}; var=EXAM_${rest%%:*}_PASSWORD; group=${rest#*:}
    eval "given=\${$var:-}"
    [ -n "$given" ] || continue
    cat <<SQL
\getenv password $var
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role') AS missing \gset
\if :missing
CREATE ROLE $role LOGIN PASSWORD :'password' IN ROLE $group;
\echo migrate: created login role $role (member of $group)
\else
ALTER ROLE $role LOGIN PASSWORD :'password';
GRANT $group TO $role;
\echo migrate: login role $role: password set, member of $group
\endif
\unset password
SQL
  done
  cat <<'SQL'
SELECT pg_advisory_unlock(hashtext('exam-results-migrations')) \gset
\echo migrate: done, :applied file(s) applied, :skipped already applied
SQL
} > "$driver"
psql -X -q -f "$driver"
