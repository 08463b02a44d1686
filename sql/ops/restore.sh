#!/usr/bin/env bash
# Restores a backup from backup.sh into a fresh database and proves it whole.
#
#   sql/ops/restore.sh FILE                   into a new database exam_results_restored_<UTC timestamp>
#   sql/ops/restore.sh FILE --dbname NAME     into a new database NAME (must not exist)
#   sql/ops/restore.sh FILE --replace         restore into a new database, verify it, then swap it in
#                                             as $PGDATABASE; the old one is kept, renamed to
#                                             <name>_replaced_<UTC timestamp>
#
# The restore runs in one transaction (pg_restore --single-transaction): it
# lands whole or the new database stays empty. Afterwards each partition's
# row count and md5 over its rows are printed and, when FILE.census (written
# by backup.sh) exists, compared with it: any difference is an error (exit 1)
# and --replace does not swap. Creating databases needs the admin role
# (ADMIN_PGUSER, default postgres locally). Connection settings: see lib.sh.
set -euo pipefail
# shellcheck source=sql/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_env
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

file="${1:-}"; [ -n "$file" ] || usage; shift
stamp="$(utc_stamp)"
target="" replace=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dbname) target="${2:-}"; [ -n "$target" ] || usage; shift 2 ;;
    --replace) replace=1; shift ;;
    *) usage ;;
  esac
done
[ -r "$file" ] && [ -f "$file" ] || die "cannot read backup file '$file'"
[[ "${target:-x}" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "--dbname must be a plain lower-case identifier, got '$target'"
source_db="$PGDATABASE"
target="${target:-${source_db}_restored_$(echo "$stamp" | tr '[:upper:]' '[:lower:]')}"
[ "$target" != "$source_db" ] || die "refusing to restore over $source_db in place; use --replace"

toc="$(pg_restore --list "$file")" || die "$file is not a pg_dump custom-format archive"
owner="$(awk '$4 == "TABLE" && $5 == "public" && $6 == "student_results" { print $7; exit }' <<< "$toc")"
[ -n "$owner" ] || die "$file has no table public.student_results"
exists="$(admin_psql -At -d postgres -c "SELECT count(*) FROM pg_roles WHERE rolname = '$owner'")"
[ "$exists" = 1 ] || die "role $owner (owner of the dumped tables) does not exist here: create it first (CREATE ROLE $owner LOGIN)"
[ "$(admin_psql -At -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$target'")" = 0 ] \
  || die "database $target already exists"

started=$(date +%s%N)
say "creating database $target (owner $owner)"
admin_psql -d postgres -c "CREATE DATABASE \"$target\" OWNER \"$owner\" TEMPLATE template0 ENCODING 'UTF8'"
say "restoring $file into $target (one transaction)"
if ! PGUSER="$ADMIN_PGUSER" PGPASSWORD="$ADMIN_PGPASSWORD" \
     pg_restore --exit-on-error --single-transaction --dbname="$target" "$file"; then
  admin_psql -d postgres -c "DROP DATABASE IF EXISTS \"$target\""
  die "pg_restore failed; $target was dropped and nothing else changed"
fi
# The dumped database's own settings (ALTER DATABASE ... SET, such as 0008's
# idle_in_transaction_session_timeout): pg_restore applies them only with
# --create, which would restore under the dumped name, so here, to $target.
pg_restore --create --schema-only --file=- "$file" \
  | sed -nE "s/^ALTER DATABASE (\"[^\"]+\"|[^ ]+) SET /ALTER DATABASE \"$target\" SET /p" \
  | admin_psql -d postgres
# Database-wide, as the owner when ADMIN_PGUSER is the owner: quiet about the
# shared catalogs only a superuser may analyse.
PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=error" admin_psql -d "$target" -c "ANALYZE"
elapsed=$(awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')

census="$(PGUSER="$ADMIN_PGUSER" PGPASSWORD="$ADMIN_PGPASSWORD" q -d "$target" -c "$CENSUS_SQL")"
say "restored in ${elapsed}s; per-partition rows and md5 in $target:"
printf 'partition|rows|md5\n%s\n' "$census" | { column -t -s '|' 2>/dev/null || cat; }

verdict="no census file beside the backup: nothing to compare with"
if [ -f "$file.census" ]; then
  if diff <(grep -v '^#' "$file.census") <(echo "$census") > /dev/null; then
    verdict="MATCHES the backup's census ($file.census): every partition has the same rows and checksum"
  else
    say "MISMATCH against $file.census:"
    diff <(grep -v '^#' "$file.census") <(echo "$census") || true
    die "the restored database $target differs from the backup; it is kept for inspection"
  fi
fi
say "$verdict"

if [ -n "$replace" ]; then
  old="${source_db}_replaced_$(echo "$stamp" | tr '[:upper:]' '[:lower:]')"
  say "replacing $source_db: closing its connections, renaming it to $old, renaming $target to $source_db"
  admin_psql -At -d postgres <<SQL
ALTER DATABASE "$source_db" ALLOW_CONNECTIONS false;
SELECT 'closed ' || count(pg_terminate_backend(pid, 10000)) || ' connection(s) to $source_db' AS closed FROM pg_stat_activity WHERE datname = '$source_db' AND pid <> pg_backend_pid();
ALTER DATABASE "$source_db" RENAME TO "$old";
ALTER DATABASE "$old" ALLOW_CONNECTIONS true;
ALTER DATABASE "$target" RENAME TO "$source_db";
SQL
  say "done: $source_db is the restored copy; the previous database is $old (drop it when no longer needed)"
else
  say "the restored copy is $target; point a client at it (PGDATABASE=$target) or swap it in with --replace"
fi
